"""When to renew and when to retry: pure time arithmetic, with randomness derived from a seed.

Every function is pure: times come in as arguments (timezone-aware; naive ones are refused) and
"random" spreads are derived from sha256 of a stable seed such as the Certificate's UID. That
matters for correctness, not only for tests: a renewal time recomputed with fresh randomness on
every reconcile can keep moving into the future and never arrive (cert-manager's trigger warns
about this for ARI). Results that are stored in status are truncated to whole seconds, as
cert-manager's RenewalTime does (cert-manager pull request 4399): status keeps seconds only, so an
untruncated time compared with its stored copy would be re-queued a fraction of a second early.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from acmebridge.domain.timefmt import ensure_utc, truncate_to_second

__all__ = [
    "MAX_RETRY_AFTER",
    "backoff_delay",
    "choose_in_window",
    "jitter_for",
    "next_wake",
    "renewal_time",
]

# The longest Retry-After obeyed. See backoff_delay.
MAX_RETRY_AFTER = timedelta(hours=24)
_US = timedelta(microseconds=1)
_ONE = 1 << 64  # unit of the fractions drawn from a seed


def _draw(seed: str) -> int:
    """A uniform integer in [0, 2**64) determined by ``seed``."""
    return int.from_bytes(hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()[:8], "big")


def renewal_time(
    not_before: datetime,
    not_after: datetime,
    *,
    renew_before: timedelta | None,
    renew_before_percentage: int | None,
    jitter: timedelta,
) -> datetime:
    """When to renew a certificate valid from ``not_before`` to ``not_after``. Pure.

    The point before jitter follows cert-manager: ``not_after - renew_before`` when renewBefore is
    set and shorter than the lifetime (a longer one is ignored, as it would renew at once
    forever); else ``not_after - lifetime * pct / 100`` for a percentage in (0, 100); else two
    thirds into the lifetime. The jitter only ever moves renewal *earlier*, and by no more than
    to the middle of the lifetime: that keeps a fleet issued together from renewing together
    without letting the spread shorten the useful life of a certificate by more than half. A
    point the user already asked to be before the middle is left as it is. The result is within
    [not_before, not_after] and truncated to the second; X.509 validity has whole seconds
    (RFC 5280 §4.1.2.5), and so are the inputs after truncation.
    """
    start = truncate_to_second(ensure_utc(not_before, name="not_before"))
    end = truncate_to_second(ensure_utc(not_after, name="not_after"))
    if end <= start:
        raise ValueError(f"not_after ({end.isoformat()}) must be after not_before")
    if jitter < timedelta(0):
        raise ValueError("jitter must not be negative")
    lifetime = end - start
    if renew_before is not None and timedelta(0) < renew_before < lifetime:
        before = renew_before
    elif renew_before_percentage is not None and 0 < renew_before_percentage < 100:
        before = lifetime * renew_before_percentage / 100
    else:
        before = lifetime / 3
    base = truncate_to_second(end - before)
    floor = min(base, start + lifetime / 2)
    return truncate_to_second(max(base - jitter, floor))


def jitter_for(
    uid: str,
    lifetime: timedelta,
    *,
    max_fraction: float = 0.05,
    cap: timedelta = timedelta(hours=6),
) -> timedelta:
    """A whole-second jitter in [0, min(cap, lifetime * max_fraction)], fixed by ``uid``. Pure.

    The same uid always gets the same fraction of its span, so a Certificate keeps its place in
    the fleet's spread across renewals; store the result in status rather than recomputing it
    when the inputs could change.
    """
    if lifetime < timedelta(0) or cap < timedelta(0) or not 0 <= max_fraction <= 1:
        raise ValueError("lifetime and cap must be >= 0 and max_fraction within [0, 1]")
    span = int(min(cap, lifetime * max_fraction).total_seconds())
    return timedelta(seconds=_draw(uid) * (span + 1) // _ONE)


def choose_in_window(start: datetime, end: datetime, *, seed: str) -> datetime:
    """A whole-second point in the ARI window [start, end), fixed by ``seed``. Pure.

    RFC 9773 asks clients to pick a uniformly random time in the suggested window; deriving
    it from a seed (the Certificate UID plus the certificate serial, say) makes every reconcile
    pick the same time. A window that is empty or inverted, which RFC 9773 forbids, yields
    ``start``.
    """
    start = ensure_utc(start, name="start")
    end = ensure_utc(end, name="end")
    first = truncate_to_second(start)
    if first < start:
        first += timedelta(seconds=1)
    if first >= end:
        return start
    seconds = -((first - end) // timedelta(seconds=1))  # ceil: whole seconds that fit
    return first + timedelta(seconds=_draw(seed) * seconds // _ONE)


def backoff_delay(
    failures: int,
    *,
    base: timedelta = timedelta(minutes=1),
    cap: timedelta = timedelta(hours=1),
    retry_after: timedelta | None = None,
    seed: str = "",
) -> timedelta:
    """How long to wait after ``failures`` consecutive failures: 1m, 2m, 4m ... up to ``cap``. Pure.

    ``seed`` fixes a jitter of ±10 % on the exponential part and of up to -10 % on the cap, so
    certificates that failed together (a CA outage) retry at different times even once they
    all reach the cap. For a fixed seed the delay never decreases as failures grow.

    A server's Retry-After (RFC 8555 §6.6, RFC 9110 §10.2.3) wins when it is longer, even above
    ``cap``: asking earlier only spends rate limit and is refused again. It is honoured up to
    ``MAX_RETRY_AFTER`` (24 h), so that a misconfigured or hostile value cannot park a
    certificate until it expires. Zero failures and no Retry-After mean no delay.
    """
    if failures < 0:
        raise ValueError(f"failures must be >= 0, got {failures}")
    delay = timedelta(0)
    if failures > 0:
        u = _draw(seed)
        base_us = max(base // _US, 0)
        cap_us = max(cap // _US, 0)
        # Integer arithmetic: a thousand failures must not overflow a timedelta.
        raw_us = base_us << min(failures - 1, 128)
        jittered_us = raw_us * (9 * _ONE + 2 * u) // (10 * _ONE)  # x [0.9, 1.1)
        cap_jittered_us = cap_us * (10 * _ONE - u) // (10 * _ONE)  # x (0.9, 1.0]
        delay = timedelta(microseconds=min(jittered_us, cap_jittered_us))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def next_wake(now: datetime, when: datetime) -> timedelta:
    """How long from ``now`` until ``when``; zero when it has passed. Pure."""
    return max(ensure_utc(when, name="when") - ensure_utc(now, name="now"), timedelta(0))
