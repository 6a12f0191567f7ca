"""How a Certificate reconcile ends: the status written for the terminal action, Events posted
when they are news, metrics counted, and the seconds until the next look returned.

Status writes are kept few (the benchmark counts them): a wait that has lasted only a moment is
kept in memory (``Runtime.unwritten``) rather than written, and a terminal action that changes
nothing writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from acmebridge.domain import actions as a
from acmebridge.domain.assess import usable
from acmebridge.domain.plan import ready_condition_changed
from acmebridge.domain.reasons import ConditionType, EventReason, Reason
from acmebridge.domain.schedule import backoff_delay
from acmebridge.domain.status import LastFailure
from acmebridge.domain.timefmt import format_time
from acmebridge.reconcile import cleanup
from acmebridge.reconcile.context import Ctx

if TYPE_CHECKING:
    from acmebridge.reconcile.issuance import Issuance

log = logging.getLogger("acmebridge.certificate")

READY_MESSAGE = "Certificate is up to date and has not expired"
# A Certificate waiting for its ACME server is woken by the server's probe; this is a safety net.
SERVER_WAIT_FALLBACK = 600.0


async def terminal(ctx: Ctx, work: Issuance, action: a.Terminal) -> float | None:
    match action:
        case a.NotReady():
            return await _not_ready(ctx, action)
        case a.WaitForServer():
            return await _wait_for_server(ctx, work, action)
        case a.BackOff():
            return await _back_off(ctx, work, action)
        case a.Settle():
            return await _settle(ctx, action)
        case a.Wait():
            return await _wait(ctx, work, action)
        case a.Fail():
            return await _fail(ctx, work, action)
        case a.Finish():
            return await _finish(ctx, work, action)
    raise AssertionError(f"not a terminal action: {action!r}")


async def _not_ready(ctx: Ctx, action: a.NotReady) -> float | None:
    """Ready=False with a reason the user can act on, plus an Event when it is news."""
    previous = ctx.status.condition(ConditionType.READY)
    ctx.condition(ConditionType.READY, "False", action.reason, action.message)
    await ctx.flush()
    if previous is None or previous.reason != action.reason or previous.message != action.message:
        await ctx.event("Warning", action.reason, action.message)
        log.warning("Certificate %s: %s: %s", ctx.log_name(), action.reason, action.message)
    return action.retry


async def _wait_for_server(ctx: Ctx, work: Issuance, action: a.WaitForServer) -> float | None:
    if work.account is not None:
        ctx.rt.health.wait(work.account.spec.server, ctx.key)
    previous = ctx.status.condition(ConditionType.ISSUING)
    reason = Reason.ACME_SERVER_UNAVAILABLE
    ctx.condition(ConditionType.ISSUING, "False", reason, action.message)
    if not usable(work.observed.secret):
        ctx.condition(ConditionType.READY, "False", reason, action.message)
    await ctx.flush()
    if previous is None or previous.reason != reason:
        await ctx.event("Warning", reason, action.message)
    return SERVER_WAIT_FALLBACK


async def _back_off(ctx: Ctx, work: Issuance, action: a.BackOff) -> float:
    ctx.condition(ConditionType.ISSUING, "False", Reason.FAILED, action.message)
    await ctx.flush()
    return max(1.0, (action.retry_at - ctx.now).total_seconds())


def _ready_message(ctx: Ctx) -> str:
    omitted = ctx.status.issued.ca_omitted_reason
    return READY_MESSAGE + (f"; ca.crt is omitted: {omitted}" if omitted else "")


async def _settle(ctx: Ctx, action: a.Settle) -> float:
    """Nothing to issue: Ready=True, times from the Secret, the renewal schedule."""
    p = ctx.patch
    leaf = action.leaf
    p.set(
        not_before=leaf.not_before,
        not_after=leaf.not_after,
        renewal_time=action.renew_at,
        issuing_since=None,
    )
    issued = ctx.status.issued
    if issued.jitter_seconds is None or issued.spec_hash is None:
        # A Secret this Certificate adopted (its UID annotation set by hand): remember it as
        # issued for the current spec, with the jitter it gets from now on.
        p.set_issued(
            replace(
                issued,
                jitter_seconds=int(action.jitter.total_seconds()),
                spec_hash=issued.spec_hash or action.spec_hash,
            )
        )
    if action.renewal_info != ctx.status.renewal_info:
        p.set_renewal_info(action.renewal_info)
    reason = Reason.RENEWAL_INFO_IN_PAST if action.guard_message else Reason.READY
    previous = ctx.status.condition(ConditionType.READY)
    message = action.guard_message or _ready_message(ctx)
    if ready_condition_changed(previous, reason, p.generation) or (
        previous is not None and previous.message != message
    ):
        ctx.condition(ConditionType.READY, "True", reason, message)
    if ctx.status.condition(ConditionType.ISSUING) is not None:
        p.drop_condition(ConditionType.ISSUING)
    await ctx.flush()
    if action.guard_message and (previous is None or previous.reason != reason):
        await ctx.event("Warning", Reason.RENEWAL_INFO_IN_PAST, action.guard_message)
    return action.wake


async def _wait(ctx: Ctx, work: Issuance, action: a.Wait) -> float:
    if action.visible:
        ctx.condition(ConditionType.ISSUING, "True", action.reason, action.message)
        if not usable(work.observed.secret):
            ctx.condition(ConditionType.READY, "False", Reason.ISSUING, action.message)
        await ctx.flush()
    else:
        ctx.rt.keep_unwritten(ctx.key, ctx.patch.body)
    return action.delay


async def _fail(ctx: Ctx, work: Issuance, action: a.Fail) -> float:
    """Count the failed attempt, say why, back off; a dead order is cleaned up and forgotten."""
    st = ctx.status
    failures = st.failed_issuance_attempts + 1
    spec_hash = work.observed.spec.issuance_hash() if work.observed.spec else ""
    retry_after = action.retry_after
    delay = backoff_delay(
        failures, cap=ctx.rt.config.backoff_cap, retry_after=retry_after, seed=ctx.uid
    )
    kind = "permanent" if action.permanent else "temporary"
    message = (
        f"Issuance attempt {failures} failed ({kind}): {action.message}; "
        f"retrying at {format_time(ctx.now + delay)}"
    )
    ctx.patch.set(failed_issuance_attempts=failures, last_failure_time=ctx.now)
    ctx.patch.set_last_failure(
        LastFailure(
            reason=action.reason,
            message=action.message,
            spec_hash=spec_hash,
            retry_after_seconds=int(retry_after.total_seconds()) if retry_after else None,
        )
    )
    journal = st.order
    if action.permanent and journal is not None:
        await cleanup.remove_presented(ctx, journal, work.account)
        await cleanup.delete_pending_key(ctx, work.key_uid or journal.pending_key_uid)
        ctx.rt.pending_keys.pop(ctx.uid, None)
        ctx.patch.set_order(None)
    elif action.permanent and work.key_uid is not None:
        await cleanup.delete_pending_key(ctx, work.key_uid)
        ctx.rt.pending_keys.pop(ctx.uid, None)
    ctx.patch.set(issuing_since=None)
    ctx.condition(ConditionType.ISSUING, "False", Reason.FAILED, message)
    if not usable(work.observed.secret):
        ctx.condition(ConditionType.READY, "False", action.condition_reason, message)
    await ctx.flush()
    await ctx.event("Warning", Reason.FAILED, message)
    ctx.rt.metrics.failure(action.reason)
    log.warning("Certificate %s: %s", ctx.log_name(), message)
    return delay.total_seconds()


async def _finish(ctx: Ctx, work: Issuance, action: a.Finish) -> float:
    p = ctx.patch
    leaf = action.leaf
    started = ctx.status.issuing_since
    p.set(
        not_before=leaf.not_before,
        not_after=leaf.not_after,
        renewal_time=action.renew_at,
        revision=ctx.status.revision + 1,
        failed_issuance_attempts=None,
        last_failure_time=None,
        issuing_since=None,
    )
    p.set_last_failure(None)
    p.set_order(None)
    p.set_issued(action.issued)
    p.set_renewal_info(action.renewal_info)
    message = action.guard_message or _ready_message(ctx)
    reason = Reason.RENEWAL_INFO_IN_PAST if action.guard_message else Reason.READY
    ctx.condition(ConditionType.READY, "True", reason, message)
    p.drop_condition(ConditionType.ISSUING)
    await ctx.flush()
    what = EventReason.RENEWED if action.renewing else EventReason.ISSUED
    await ctx.event(
        "Normal",
        what,
        f"Certificate {what.lower()} (serial {leaf.serial}, valid until "
        f"{format_time(leaf.not_after)}); renewal at {format_time(action.renew_at)}",
    )
    if action.issued.ca_source is None and action.issued.ca_omitted_reason:
        omitted = action.issued.ca_omitted_reason
        await ctx.event("Warning", EventReason.CA_UNKNOWN, f"ca.crt is omitted: {omitted}")
    if action.guard_message:
        await ctx.event("Warning", Reason.RENEWAL_INFO_IN_PAST, action.guard_message)
    log.info(
        "Certificate %s: %s serial %s, renewal at %s",
        ctx.log_name(),
        what.lower(),
        leaf.serial,
        format_time(action.renew_at),
    )
    seconds = (ctx.now - started).total_seconds() if started else None
    ctx.rt.metrics.issued(ctx.namespace, ctx.name, seconds)
    ctx.rt.pending_keys.pop(ctx.uid, None)
    return action.wake
