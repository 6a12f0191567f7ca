"""How an issuance ends: the Secret written and the Certificate Ready, or a failed attempt
counted, explained and backed off (a dead order dropped and its solver objects removed)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from acmebridge.domain import chain as chains
from acmebridge.domain.schedule import backoff_delay, jitter_for
from acmebridge.domain.timefmt import format_time, parse_time
from acmebridge.domain.trigger import SecretState
from acmebridge.reconcile.accounts import Account
from acmebridge.reconcile.certificate import Ctx, ready_wake
from acmebridge.reconcile.cleanup import cleanup_issuance, delete_solver_objects

log = logging.getLogger("acmebridge.issuance")


async def finish(ctx: Ctx, account: Account, written: Any, *, renewing: bool) -> float:
    from acmebridge.reconcile import renewal

    summary = chains.cert_summary(written.leaf)
    jitter = jitter_for(ctx.uid, summary.not_after - summary.not_before)
    leaf_pem = chains.encode_pem_certificates([written.leaf])
    ari = await renewal.ari_plan(ctx, account, leaf_pem, summary, None)
    renew_at = renewal.renewal_at(renewal.plain_renewal(ctx, summary, jitter), ari)
    revision = int(ctx.status.get("revision") or 0) + 1
    message = "Certificate is up to date and has not expired"
    if written.root_source is None:
        message += f"; ca.crt is omitted: {written.root_reason}"
    started = ctx.book().get("issuingSince")
    ctx.patch.update(
        notBefore=format_time(summary.not_before),
        notAfter=format_time(summary.not_after),
        renewalTime=format_time(renew_at),
        revision=revision,
        failedIssuanceAttempts=None,
        lastFailureTime=None,
        order=None,
    )
    ctx.set("Ready", "True", "Ready", message)
    ctx.drop("Issuing")
    ctx.set_book(
        issuedSpecHash=ctx.spec.issuance_hash(),
        jitterSeconds=int(jitter.total_seconds()),
        caSource=written.root_source,
        readyMessage=message,
        failedSpecHash=None,
        lastFailure=None,
        retryAfterSeconds=None,
        issuingSince=None,
        cleanupPending=True,
        serial=summary.serial,
        ari=ari,
    )
    await ctx.flush()
    what = "Renewed" if renewing else "Issued"
    await ctx.event(
        "Normal",
        what,
        f"Certificate {what.lower()} (serial {summary.serial}, valid until "
        f"{format_time(summary.not_after)}); renewal at {format_time(renew_at)}",
    )
    if written.root_source is None:
        await ctx.event("Warning", "CAUnknown", f"ca.crt is omitted: {written.root_reason}")
    log.info(
        "Certificate %s/%s: %s serial %s, renewal at %s",
        ctx.namespace,
        ctx.name,
        what.lower(),
        summary.serial,
        format_time(renew_at),
    )
    seconds = None
    if started:
        seconds = (ctx.now - parse_time(str(started))).total_seconds()
    ctx.rt.metrics.issued(ctx.namespace, ctx.name, seconds)
    await cleanup_issuance(ctx)
    # Like any ready Certificate: the Secret is read again on the check interval, or a deleted
    # or edited Secret would go unnoticed until the renewal time.
    return ready_wake(ctx, renew_at, ari)


async def failed(
    ctx: Ctx,
    sstate: SecretState,
    *,
    reason: str,
    detail: str,
    permanent: bool,
    retry_after: timedelta | None = None,
    problem: str | None = None,
) -> float:
    """Record a failed attempt: count it, say why, back off; drop the order if it is dead.

    ``problem`` is the ACME problem type when the CA refused: the failure metric counts by it,
    since the condition reason (``Failed``) would not tell a rate limit from a failed challenge.
    """
    failures = int(ctx.status.get("failedIssuanceAttempts") or 0) + 1
    ctx.patch.update(failedIssuanceAttempts=failures, lastFailureTime=format_time(ctx.now))
    ctx.set_book(
        failedSpecHash=ctx.spec.issuance_hash(),
        lastFailure=detail,
        retryAfterSeconds=int(retry_after.total_seconds()) if retry_after else None,
    )
    delay = backoff_delay(
        failures, cap=ctx.rt.config.backoff_cap, retry_after=retry_after, seed=ctx.uid
    )
    kind = "permanent" if permanent else "temporary"
    message = (
        f"Issuance attempt {failures} failed ({kind}): {detail}; "
        f"retrying at {format_time(ctx.now + delay)}"
    )
    if permanent:
        ctx.patch["order"] = None
    ctx.set("Issuing", "False", "Failed", message)
    usable = sstate.exists and sstate.key_matches_cert and not sstate.cert_error
    if not usable:
        ctx.set("Ready", "False", reason, message)
    await ctx.flush()
    await ctx.event("Warning", "Failed", message)
    ctx.rt.metrics.failure(reason, problem)
    log.warning("Certificate %s/%s: %s", ctx.namespace, ctx.name, message)
    if permanent:
        await delete_solver_objects(ctx)
    return delay.total_seconds()
