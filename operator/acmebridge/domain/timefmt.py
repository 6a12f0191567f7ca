"""RFC 3339 timestamps as Kubernetes writes them, since status times round-trip through metav1.Time.

metav1.Time serialises as UTC with whole seconds and a ``Z`` suffix, so every time this package
stores in status is truncated to the second first; comparing a stored time with a freshly computed
one then never differs by a fraction of a second (cert-manager's RenewalTime truncates for the same
reason, cert-manager pull request 4399). Naive datetimes are refused everywhere: a naive time read
as local time is the classic way a renewal fires hours early or late.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime

__all__ = ["ensure_utc", "format_time", "parse_time", "truncate_to_second"]

# RFC 3339 §5.6 date-time: full-date "T" full-time, with a mandatory offset. `fromisoformat` alone
# also accepts date-only and basic-format strings that Kubernetes would never write.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def ensure_utc(dt: datetime, *, name: str = "time") -> datetime:
    """Return ``dt`` converted to UTC; raise ValueError when it is naive."""
    if dt.tzinfo is None or dt.tzinfo.utcoffset(dt) is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {dt.isoformat()}")
    return dt.astimezone(UTC)


def truncate_to_second(dt: datetime) -> datetime:
    """Drop the microseconds, as metav1.Time does when it is serialised."""
    return dt.replace(microsecond=0)


def format_time(dt: datetime) -> str:
    """Format as ``2024-05-01T12:00:00Z`` (UTC, whole seconds), the metav1.Time wire form."""
    return truncate_to_second(ensure_utc(dt)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime; ValueError names the bad input."""
    if not isinstance(value, str):
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    return _parse_time(value)


# Cached: every reconcile reads the same few stored times again (conditions, the journal);
# parsing them was 2-3% of the operator's CPU in a burst. datetimes are immutable.
@functools.lru_cache(maxsize=4096)
def _parse_time(value: str) -> datetime:
    if _RFC3339.fullmatch(value) is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    text = value.upper()
    date_part, _, rest = text.partition("T")
    # datetime has microsecond precision; Go may write nanoseconds. Cut the fraction to six digits.
    match = re.match(r"(\d{2}:\d{2}:\d{2})(?:\.(\d+))?(.*)", rest)
    assert match is not None  # guaranteed by _RFC3339
    clock, fraction, offset = match.groups()
    fraction = f".{fraction[:6]}" if fraction else ""
    offset = "+00:00" if offset == "Z" else offset
    try:
        parsed = datetime.fromisoformat(f"{date_part}T{clock}{fraction}{offset}")
    except ValueError as e:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r} ({e})") from e
    return parsed.astimezone(UTC)
