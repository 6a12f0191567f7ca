"""When to renew: the plain schedule, and ACME Renewal Information (RFC 9773) when offered.

Without ARI (step-ca, most internal CAs) renewal is at two thirds of the lifetime (or as
``renewBefore``/``renewBeforePercentage`` say) minus a per-certificate jitter computed once and
kept in status, so a fleet issued at once does not renew at once.

With ARI, the CA suggests a window; acmebridge picks a time in it once (seeded by the
Certificate's UID and the serial, so every reconcile picks the same time and renewal is never
postponed by re-rolling), keeps it while the window is unchanged, and asks again when the CA's
Retry-After says. The earlier of the ARI time and the plain schedule wins: a CA that moves the
window earlier (a revocation coming) is obeyed at once, and a user's ``renewBefore`` is never
silently extended.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from acmebridge.adapters.acme_messages import ari_cert_id
from acmebridge.domain.errors import AcmeProblem, AcmeUnavailable
from acmebridge.domain.match import CertSummary
from acmebridge.domain.schedule import choose_in_window, jitter_for, renewal_time
from acmebridge.domain.timefmt import format_time, parse_time
from acmebridge.reconcile.accounts import Account

if TYPE_CHECKING:
    from acmebridge.reconcile.certificate import Ctx

log = logging.getLogger("acmebridge.renewal")

ARI_DEFAULT_RECHECK = timedelta(hours=6)
ARI_MIN_RECHECK = timedelta(minutes=1)
ARI_MAX_RECHECK = timedelta(hours=24)


def jitter(ctx: Ctx, summary: CertSummary) -> timedelta:
    stored = ctx.book().get("jitterSeconds")
    if isinstance(stored, int):
        return timedelta(seconds=stored)
    return jitter_for(ctx.uid, summary.not_after - summary.not_before)


def plain_renewal(ctx: Ctx, summary: CertSummary, jitter_: timedelta) -> datetime:
    return renewal_time(
        summary.not_before,
        summary.not_after,
        renew_before=ctx.spec.renew_before,
        renew_before_percentage=ctx.spec.renew_before_percentage,
        jitter=jitter_,
    )


async def ari_plan(
    ctx: Ctx, account: Account, leaf_pem: bytes, summary: CertSummary, previous: Any
) -> dict[str, Any] | None:
    """The ARI bookkeeping for this certificate, refreshed when due; None without ARI."""
    if account.directory.renewal_info is None:
        return None
    try:
        cert_id = ari_cert_id(leaf_pem)
    except ValueError as e:
        # No Authority Key Identifier (some internal CAs omit it): the certificate has no ARI
        # identifier, so the plain schedule applies.
        log.info("Certificate %s/%s: no renewal info: %s", ctx.namespace, ctx.name, e)
        return None
    prev = previous if isinstance(previous, dict) and previous.get("certID") == cert_id else None
    if prev is not None and ctx.now < parse_time(prev["recheckAt"]):
        return prev
    cap = ctx.rt.config.ari_recheck_max
    try:
        info = await ctx.rt.io(account.session.renewal_info, cert_id)
    except (AcmeUnavailable, AcmeProblem) as e:
        log.info("Certificate %s/%s: renewal info not available: %s", ctx.namespace, ctx.name, e)
        if prev is None:
            return None
        return {**prev, "recheckAt": format_time(ctx.now + min(ARI_DEFAULT_RECHECK, cap))}
    if info is None:
        return None
    recheck = recheck_after(info.retry_after, cap=cap)
    start, end = format_time(info.start), format_time(info.end)
    if prev is not None and prev.get("windowStart") == start and prev.get("windowEnd") == end:
        chosen = prev["chosen"]  # same window: keep the time chosen once
    else:
        chosen = format_time(
            choose_in_window(info.start, info.end, seed=f"{ctx.uid}/{summary.serial}")
        )
    return {
        "certID": cert_id,
        "windowStart": start,
        "windowEnd": end,
        "chosen": chosen,
        "recheckAt": format_time(ctx.now + recheck),
        "explanationURL": info.explanation_url,
    }


def recheck_after(retry_after: timedelta | None, *, cap: timedelta) -> timedelta:
    """When to ask for renewal info again: the CA's Retry-After within [1 minute, 1 day] (RFC 9773
    §4.3 suggests such limits), 6 hours without one, and never later than the operator's ``cap``
    (``--ari-recheck-max``; a cap below a minute is the operator's explicit choice and wins)."""
    wanted = min(max(retry_after or ARI_DEFAULT_RECHECK, ARI_MIN_RECHECK), ARI_MAX_RECHECK)
    return min(wanted, cap)


def renewal_at(plain: datetime, ari: dict[str, Any] | None) -> datetime:
    if ari is None:
        return plain
    return min(plain, parse_time(ari["chosen"]))


def next_wake(renew_at: datetime, ari: dict[str, Any] | None, now: datetime) -> float:
    """Seconds until the next look: renewal time, or the ARI re-check if sooner."""
    when = renew_at
    if ari is not None:
        when = min(when, parse_time(ari["recheckAt"]))
    return max(1.0, (when - now).total_seconds())
