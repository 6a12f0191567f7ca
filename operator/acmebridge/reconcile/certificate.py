"""Certificate reconcile: gather what is known, ask ``domain.plan`` for the next step, do it.

One call reads the Certificate (from the cache), its issuer and account, and its Secret (one GET
by name), then loops: ``plan(observed)`` returns an action; a step action does one piece of IO
and adds what it learnt to ``observed``; a terminal action writes the status and says when to
look again. The loop advances an issuance as far as it can go without waiting, and never sleeps.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from acmebridge.adapters.kube import core_path, ours_path
from acmebridge.domain import actions as a
from acmebridge.domain.assess import assess_secret
from acmebridge.domain.conditions import get_condition
from acmebridge.domain.errors import (
    AcmeProblem,
    AcmeUnavailable,
    DnsProblem,
    Severity,
    SpecError,
    TLSTrustError,
)
from acmebridge.domain.observed import IssuerState, IssuerView, Observed, Settings
from acmebridge.domain.plan import plan, urgency
from acmebridge.domain.reasons import Reason
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.timefmt import parse_time
from acmebridge.reconcile import dns01, outcome, steps
from acmebridge.reconcile.accounts import Account, AccountError, Accounts
from acmebridge.reconcile.context import Ctx
from acmebridge.reconcile.issuance import Issuance, issuer_view
from acmebridge.reconcile.queue import Next
from acmebridge.reconcile.runtime import ObjectKey, Runtime

log = logging.getLogger("acmebridge.certificate")

# A reconcile that has not reached a terminal action after this many steps has a bug: stop it
# rather than spin (each step is one request, so this bounds the damage).
MAX_STEPS = 64
ACCOUNT_RETRY = 60.0


def issuer_key(spec: CertificateSpec, namespace: str) -> ObjectKey:
    if spec.issuer_ref.kind == "ClusterIssuer":
        return ("clusterissuers", "", spec.issuer_ref.name)
    return ("issuers", namespace, spec.issuer_ref.name)


async def reconcile_certificate(
    rt: Runtime, key: ObjectKey, accounts: Accounts
) -> float | Next | None:
    body = rt.cache.get(key)
    if body is not None and body["metadata"].get("deletionTimestamp"):
        retry = await _deleted(rt, key, body, accounts)
        if retry is not None:
            return retry
        body = None
    if body is None:
        rt.metrics.certificate(None, key)
        rt.depend(key, None)
        return None
    try:
        return await _reconcile(rt, key, body, accounts)
    finally:
        rt.metrics.certificate(rt.cache.get(key), key)


# How long a deleted Certificate waits for its DNS-01 values to be removable (an issuer not read
# yet after a restart, a DNS server that does not answer) before it is let go with an Event.
DELETION_PATIENCE = timedelta(minutes=10)


async def _deleted(
    rt: Runtime, key: ObjectKey, body: dict[str, Any], accounts: Accounts
) -> float | None:
    """Deleted while a DNS-01 issuance had values in DNS (its finalizer says so): remove them,
    then let the deletion finish. Everything else it made goes with it by ownerReference.
    Returns seconds until trying again, or None when the deletion may finish."""
    if dns01.FINALIZER not in (body["metadata"].get("finalizers") or []):
        return None
    ctx = Ctx.of(rt, key, body, rt.clock())
    journal = ctx.status.order
    account = None
    try:
        spec = CertificateSpec.from_body(body.get("spec") or {})
        ikey = issuer_key(spec, ctx.namespace)
        issuer = rt.cache.get(ikey)
        if issuer is None:
            # Not in the cache yet (the operator just started) or really gone: ask.
            plural, ns, name = ikey
            issuer = await rt.io(rt.kube.get, ours_path(plural, ns or None, name))
        if issuer is not None:
            account = await accounts.ensure(rt, ikey, issuer)
    except Exception as e:  # whatever is wrong, the records are removed if they can be
        log.warning("Certificate %s: deleted; its issuer is unusable: %s", ctx.log_name(), e)
    if journal is not None:
        problems = await dns01.remove_records(rt, account, journal)
        since = parse_time(str(body["metadata"]["deletionTimestamp"]))
        # Only a passing failure (no answer, SERVFAIL) is worth waiting for; an Issuer or TSIG
        # Secret that is gone (a whole namespace deleted) will not come back.
        if any(p.temporary for p in problems) and ctx.now - since < DELETION_PATIENCE:
            log.info("Certificate %s: deleted; will retry: %s", ctx.log_name(), problems)
            return 10.0
        if problems:
            await ctx.event(
                "Warning",
                "DNS01CleanupFailed",
                "could not remove the TXT value(s) acmebridge added; remove them by hand: "
                + "; ".join(str(p) for p in problems),
            )
    await dns01.drop_finalizer(rt, ctx.body)
    return None


def settings_of(rt: Runtime) -> Settings:
    c = rt.config
    return Settings(
        backoff_cap=c.backoff_cap,
        order_poll_max=c.order_poll_max,
        ari_recheck_max=c.ari_recheck_max,
        secret_check_interval=c.secret_check_interval,
        dns01_supported=True,
        cluster_domain=c.cluster_domain,
    )


async def _reconcile(rt: Runtime, key: ObjectKey, body: dict[str, Any], accounts: Accounts) -> Next:
    ctx = Ctx.of(rt, key, body, rt.clock())
    try:
        spec = CertificateSpec.from_body(body.get("spec") or {})
    except SpecError as e:
        observed = _observed(ctx, None, e.message, IssuerView(IssuerState.READY), None)
        action = plan(observed)
        assert isinstance(action, a.Terminal)
        return await _end(ctx, Issuance(ctx, None, observed), action)
    ikey = issuer_key(spec, ctx.namespace)
    rt.depend(key, ikey)
    view, account = await _issuer(rt, ikey, spec, ctx.namespace, accounts)
    secret = None
    order = ctx.status.order
    memo = (spec.secret_name, order.url) if order is not None else None
    unread = memo is not None and rt.secret_absent.get(ctx.uid) == memo
    read = not unread and view.state not in (IssuerState.MISSING, IssuerState.NOT_READY)
    if read:
        secret = await rt.io(rt.kube.get, core_path("secrets", ctx.namespace, spec.secret_name))
        if secret is None and memo is not None:
            rt.secret_absent[ctx.uid] = memo
        else:
            rt.secret_absent.pop(ctx.uid, None)
    observed = _observed(ctx, spec, "", view, secret)
    work = Issuance(ctx, account, observed, secret=secret, accounts=accounts, issuer_key=ikey)
    work.secret_unread = unread
    work.secret_read_absent = read and secret is None
    for _ in range(MAX_STEPS):
        action = plan(work.observed)
        if isinstance(action, a.Terminal):
            return await _end(ctx, work, action)
        await _step(work, action)
        if work.terminal is not None:
            return await _end(ctx, work, work.terminal)
    log.error("Certificate %s: no terminal step after %d steps", ctx.log_name(), MAX_STEPS)
    await ctx.flush()
    return Next(30.0)


async def _end(ctx: Ctx, work: Issuance, action: a.Terminal) -> Next:
    delay = await outcome.terminal(ctx, work, action)
    return Next(delay, urgency(action))


async def _step(work: Issuance, action: a.Action) -> None:
    """One step; its failures become observations (a failure to report, a server down)."""
    try:
        await steps.perform(work, action)
    except TLSTrustError as e:
        work.fail("unavailable", Reason.FAILED, e.detail, permanent=False)
    except AcmeUnavailable as e:
        work.server_down(e.detail)
    except AcmeProblem as e:
        await work.problem(e)
    except SpecError as e:
        work.fail_spec(e.reason, e.message)
    except DnsProblem as e:
        permanent = e.severity is Severity.PERMANENT
        work.fail("dnsUpdate", Reason.FAILED, e.message, permanent=permanent)


async def _issuer(
    rt: Runtime, ikey: ObjectKey, spec: CertificateSpec, namespace: str, accounts: Accounts
) -> tuple[IssuerView, Account | None]:
    kind, name = spec.issuer_ref.kind, spec.issuer_ref.name
    issuer = rt.cache.get(ikey)
    if issuer is None:
        where = f" in namespace '{namespace}'" if kind == "Issuer" else ""
        return IssuerView(
            IssuerState.MISSING,
            f"{kind} '{name}' does not exist{where}; create it or fix spec.issuerRef",
        ), None
    ready = get_condition((issuer.get("status") or {}).get("conditions") or [], "Ready")
    if ready is not None and ready.reason == Reason.ACME_SERVER_UNAVAILABLE:
        # The issuer's server is down: the Certificate waits for it (woken with the issuer)
        # rather than saying the issuer is misconfigured.
        return IssuerView(IssuerState.SERVER_DOWN, f"{kind} '{name}': {ready.message}"), None
    if ready is None or ready.status != "True":
        why = f": {ready.reason}: {ready.message}" if ready else " yet"
        return IssuerView(IssuerState.NOT_READY, f"{kind} '{name}' is not ready{why}"), None
    try:
        account = await accounts.ensure(rt, ikey, issuer)
    except AccountError as e:
        return IssuerView(IssuerState.NOT_READY, f"{kind} '{name}' account: {e.message}"), None
    except (AcmeUnavailable, AcmeProblem) as e:
        detail = e.detail if isinstance(e, AcmeUnavailable) else str(e)
        return IssuerView(IssuerState.NOT_READY, f"{kind} '{name}' account: {detail}"), None
    return issuer_view(rt, account), account


def _observed(
    ctx: Ctx,
    spec: CertificateSpec | None,
    spec_error: str,
    issuer: IssuerView,
    secret: dict[str, Any] | None,
) -> Observed:
    from acmebridge.domain.assess import SecretView
    from acmebridge.domain.secret import Ownership
    from acmebridge.domain.trigger import SecretState

    view = (
        assess_secret(secret, spec, certificate_name=ctx.name, certificate_uid=ctx.uid)
        if spec is not None
        else SecretView(Ownership.ABSENT, SecretState(exists=False))
    )
    return Observed(
        now=ctx.now,
        uid=ctx.uid,
        generation=ctx.patch.generation,
        labels=ctx.labels,
        spec=spec,
        spec_error=spec_error,
        status=ctx.status,
        issuer=issuer,
        secret=view,
        settings=replace(settings_of(ctx.rt)),
    )
