"""Go duration strings (``2160h``, ``1h30m``, ``1.5h``), parsed and printed exactly as Go does.

cert-manager's ``duration`` and ``renewBefore`` are metav1.Duration, read with Go's
``time.ParseDuration`` and written back with ``Duration.String()``; matching both means a manifest
that cert-manager accepts is accepted here with the same meaning, and what acmebridge writes reads
the way ``kubectl`` users are used to (``2160h0m0s``). Arithmetic is on integer nanoseconds, so
``0.1h`` is exactly six minutes; the only loss is timedelta's microsecond resolution, and values are
truncated toward zero to fit it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

__all__ = ["format_go_duration", "parse_go_duration"]

_NS_PER_US = 1_000
_UNITS_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # MICRO SIGN, as Go accepts and prints
    "\u03bcs": 1_000,  # GREEK SMALL LETTER MU, also accepted by Go
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
# Go's time.Duration is an int64 count of nanoseconds: about 292 years.
_MAX_NS = (1 << 63) - 1
_COMPONENT = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]+)", re.ASCII)


def parse_go_duration(text: str) -> timedelta:
    """Parse a Go duration string; raise ValueError saying what is wrong and what is expected."""
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string such as '2160h' or '90m', got {text!r}")
    original = text
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return timedelta(0)
    if not text:
        raise ValueError(f"invalid duration {original!r}: empty; use e.g. '2160h', '90m', '1h30m'")
    total = Fraction(0)
    pos = 0
    while pos < len(text):
        match = _COMPONENT.match(text, pos)
        if match is None:
            if re.fullmatch(r"[\d.]+", text[pos:], re.ASCII):
                raise ValueError(
                    f"invalid duration {original!r}: {text[pos:]!r} has no unit; "
                    "use h, m, s, ms, us or ns (e.g. '300s')"
                )
            raise ValueError(
                f"invalid duration {original!r}: expected a number and a unit at {text[pos:]!r}"
            )
        whole, fraction, unit = match.groups()
        if not whole and not fraction:
            raise ValueError(f"invalid duration {original!r}: a number is missing before {unit!r}")
        if unit in ("d", "w"):
            hours = 24 if unit == "d" else 168
            raise ValueError(
                f"invalid duration {original!r}: Go durations have no {unit!r} unit; "
                f"write hours instead (1{unit} = {hours}h, so 90d is 2160h)"
            )
        if unit not in _UNITS_NS:
            raise ValueError(
                f"invalid duration {original!r}: unknown unit {unit!r}; use h, m, s, ms, us or ns"
            )
        number = Fraction(int(whole or "0"))
        if fraction:
            number += Fraction(int(fraction), 10 ** len(fraction))
        total += number * _UNITS_NS[unit]
        if total > _MAX_NS + 1:
            raise ValueError(f"invalid duration {original!r}: longer than Go's limit of ~292 years")
        pos = match.end()
    nanoseconds = int(total)  # toward zero, as Go truncates fractional nanoseconds
    if nanoseconds > _MAX_NS + (1 if sign < 0 else 0):
        raise ValueError(f"invalid duration {original!r}: longer than Go's limit of ~292 years")
    microseconds = nanoseconds // _NS_PER_US  # toward zero: the magnitude is still positive here
    return timedelta(microseconds=sign * microseconds)


def format_go_duration(value: timedelta) -> str:
    """Format like Go's ``Duration.String()``: ``2160h0m0s``, ``1m30s``, ``1.5s``, ``500ms``."""
    microseconds = value // timedelta(microseconds=1)
    if microseconds == 0:
        return "0s"
    sign = "-" if microseconds < 0 else ""
    u = abs(microseconds)
    if u < 1_000_000:
        if u < 1_000:
            return f"{sign}{u}\u00b5s"
        return f"{sign}{_with_fraction(u, 1_000)}ms"
    seconds, frac_us = divmod(u, 1_000_000)
    out = f"{_with_fraction(seconds % 60 * 1_000_000 + frac_us, 1_000_000)}s"
    minutes = seconds // 60
    if minutes:
        out = f"{minutes % 60}m{out}"
        hours = minutes // 60
        if hours:
            out = f"{hours}h{out}"
    return f"{sign}{out}"


def _with_fraction(amount: int, per_unit: int) -> str:
    """``1500, 1000`` -> ``1.5``: the whole part and a fraction without trailing zeros."""
    whole, rest = divmod(amount, per_unit)
    if not rest:
        return str(whole)
    digits = len(str(per_unit)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")
