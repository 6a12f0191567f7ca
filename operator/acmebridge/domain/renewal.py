"""When to renew: one rule, with or without the CA's renewal information (RFC 9773). Pure.

- Without a renewal window from the CA (step-ca, most internal CAs): two thirds into the lifetime,
  or as ``renewBefore``/``renewBeforePercentage`` say, minus a per-certificate jitter chosen once
  and kept in status, so a fleet issued together does not renew together.
- With a window: a time chosen once inside it (seeded by the Certificate's UID and the serial, so
  every reconcile picks the same time and renewal is never postponed by re-rolling). The default
  two-thirds schedule does not apply; an explicit ``renewBefore``/``renewBeforePercentage`` in the
  spec still caps it, so a user's own limit is never extended by the CA. A window already in the
  past means "renew now", once; a window ending after expiry (a broken CA) is cut off at 90% of
  the lifetime, so a certificate is never left to expire.
- The storm guard: a CA that answers "renew now" about a certificate it has just issued (a
  revocation wave, a misconfigured CA) would otherwise get a new order every few seconds forever.
  A certificate younger than the floor (10% of its lifetime, at least 5 minutes, at most half) is
  never renewed early because of the CA's window; each further such renewal in a row doubles the
  hold-off. The Certificate says so (``RenewalInfoInPast``), so an operator sees the CA's
  behaviour while the certificate keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from acmebridge.domain.match import CertSummary
from acmebridge.domain.schedule import choose_in_window, jitter_for, renewal_time
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.status import RenewalInfoRecord
from acmebridge.domain.timefmt import format_time, truncate_to_second

ARI_DEFAULT_RECHECK = timedelta(hours=6)
ARI_MIN_RECHECK = timedelta(minutes=1)
ARI_MAX_RECHECK = timedelta(hours=24)
GUARD_MIN_FLOOR = timedelta(minutes=5)
# With a window, renewal happens no later than this share of the lifetime.
LATEST_SHARE = 0.9
GUARD_FRACTION = 0.1
# 2**6: after six forced renewals in a row the hold-off stops growing (and is capped anyway).
GUARD_MAX_DOUBLINGS = 6


@dataclass(frozen=True)
class RenewalWindow:
    """A suggested renewal window as the CA answered it (RFC 9773 §4.2)."""

    start: datetime
    end: datetime
    explanation_url: str | None = None
    retry_after: timedelta | None = None


@dataclass(frozen=True)
class RenewalPlan:
    """When to renew, and whether the storm guard held renewal back (with the message)."""

    renew_at: datetime
    guarded: bool = False
    message: str | None = None


def jitter(uid: str, leaf: CertSummary, stored: int | None) -> timedelta:
    """The stored jitter, or the one this Certificate gets (store it: see ``jitter_for``)."""
    if stored is not None:
        return timedelta(seconds=stored)
    return jitter_for(uid, leaf.not_after - leaf.not_before)


def plain_renewal(leaf: CertSummary, spec: CertificateSpec, jitter_: timedelta) -> datetime:
    return renewal_time(
        leaf.not_before,
        leaf.not_after,
        renew_before=spec.renew_before,
        renew_before_percentage=spec.renew_before_percentage,
        jitter=jitter_,
    )


def _explicit(spec: CertificateSpec) -> bool:
    return spec.renew_before is not None or spec.renew_before_percentage is not None


def storm_floor(leaf: CertSummary) -> timedelta:
    """How old a certificate must be before the CA's window may renew it early."""
    lifetime = leaf.not_after - leaf.not_before
    return min(max(lifetime * GUARD_FRACTION, GUARD_MIN_FLOOR), lifetime / 2)


def plan_renewal(
    leaf: CertSummary,
    spec: CertificateSpec,
    *,
    jitter_: timedelta,
    record: RenewalInfoRecord | None,
    now: datetime,
) -> RenewalPlan:
    """Pure: the renewal time of the certificate ``leaf`` under the rule in the module doc."""
    plain = plain_renewal(leaf, spec, jitter_)
    if record is None:
        return RenewalPlan(plain)
    chosen = record.selected_time
    floor = storm_floor(leaf)
    message = None
    if chosen < leaf.not_before + floor:
        # The CA wants this young certificate replaced already: hold back to the floor, doubling
        # with each forced renewal in a row, and never past the default two-thirds point.
        hold = floor * (2 ** min(record.early_renewals, GUARD_MAX_DOUBLINGS))
        default = renewal_time(
            leaf.not_before,
            leaf.not_after,
            renew_before=None,
            renew_before_percentage=None,
            jitter=timedelta(0),
        )
        chosen = truncate_to_second(min(leaf.not_before + hold, default))
        if chosen > now:
            message = (
                "The CA's renewal information asks to renew this certificate already (window "
                f"{format_time(record.window_start)} to {format_time(record.window_end)}, "
                f"issued {format_time(leaf.not_before)}); renewal is held back to "
                f"{format_time(chosen)} so the CA is not asked for a new certificate over and "
                f"over ({record.early_renewals} such renewal(s) in a row so far)"
            )
    latest = truncate_to_second(leaf.not_before + (leaf.not_after - leaf.not_before) * LATEST_SHARE)
    renew_at = min(chosen, latest)
    if _explicit(spec):
        renew_at = min(renew_at, plain)
    return RenewalPlan(renew_at, guarded=message is not None, message=message)


def recheck_after(retry_after: timedelta | None, *, cap: timedelta) -> timedelta:
    """When to ask for renewal info again: the CA's Retry-After within [1 minute, 1 day] (RFC 9773
    §4.3 suggests such limits), 6 hours without one, and never later than the operator's ``cap``
    (``--ari-recheck-max``; a cap below a minute is the operator's explicit choice and wins)."""
    wanted = min(max(retry_after or ARI_DEFAULT_RECHECK, ARI_MIN_RECHECK), ARI_MAX_RECHECK)
    return min(wanted, cap)


def renewal_info_due(
    record: RenewalInfoRecord | None, *, cert_id: str, now: datetime, cap: timedelta
) -> bool:
    """Pure: should the CA be asked for this certificate's renewal info now?"""
    if record is None or record.cert_id != cert_id:
        return True
    return now >= min(record.recheck_at, now + cap)


def capped(
    record: RenewalInfoRecord | None, *, now: datetime, cap: timedelta
) -> RenewalInfoRecord | None:
    """A stored record whose re-check lies beyond the operator's current cap is brought in, so
    that restarting with a lower ``--ari-recheck-max`` applies to times already in status."""
    if record is None or record.recheck_at <= now + cap:
        return record
    return replace(record, recheck_at=truncate_to_second(now + cap))


def refreshed_record(
    previous: RenewalInfoRecord | None,
    window: RenewalWindow,
    *,
    cert_id: str,
    seed: str,
    now: datetime,
    cap: timedelta,
    early_renewals: int | None = None,
) -> RenewalInfoRecord:
    """Pure: the record after the CA answered with ``window``; the chosen time is kept while
    the window is unchanged, and drawn once (from ``seed``) when it is new."""
    same = previous is not None and previous.cert_id == cert_id
    if (
        same
        and previous is not None
        and previous.window_start == truncate_to_second(window.start)
        and previous.window_end == truncate_to_second(window.end)
    ):
        chosen = previous.selected_time
    else:
        chosen = choose_in_window(window.start, window.end, seed=seed)
    if early_renewals is None:
        early_renewals = previous.early_renewals if same and previous is not None else 0
    return RenewalInfoRecord(
        cert_id=cert_id,
        window_start=truncate_to_second(window.start),
        window_end=truncate_to_second(window.end),
        selected_time=truncate_to_second(chosen),
        recheck_at=truncate_to_second(now + recheck_after(window.retry_after, cap=cap)),
        explanation_url=window.explanation_url,
        early_renewals=early_renewals,
    )


def retried_record(
    previous: RenewalInfoRecord | None, *, cert_id: str, now: datetime, cap: timedelta
) -> RenewalInfoRecord | None:
    """Pure: the CA did not answer: keep what it said before (asking again later), if anything."""
    if previous is None or previous.cert_id != cert_id:
        return None
    return replace(previous, recheck_at=truncate_to_second(now + min(ARI_DEFAULT_RECHECK, cap)))


def early_renewals_after(previous: RenewalInfoRecord | None, *, renewed_at: datetime) -> int:
    """Pure: forced early renewals in a row, counting the one that just happened, if it was."""
    if previous is None:
        return 0
    forced = bool(previous.guarded) or previous.window_end <= renewed_at
    return previous.early_renewals + 1 if forced else 0


def next_wake(
    renew_at: datetime,
    record: RenewalInfoRecord | None,
    *,
    now: datetime,
    secret_check: timedelta,
) -> float:
    """Seconds until a ready Certificate is looked at again: its renewal time, the next ARI
    re-check, or sooner the next read of its Secret (the operator cannot watch Secrets)."""
    when = renew_at
    if record is not None:
        when = min(when, record.recheck_at)
    return max(1.0, min((when - now).total_seconds(), secret_check.total_seconds()))
