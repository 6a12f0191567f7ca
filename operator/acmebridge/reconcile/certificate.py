"""Certificate reconcile: gather what is known, ask ``domain.plan`` for the next step, do it.

One call reads the Certificate (from the cache), its issuer and account, and its Secret (one GET
by name), then loops: ``plan(observed)`` returns an action; a step action does one piece of IO
and adds what it learnt to ``observed``; a terminal action writes the status and says when to
look again. The loop advances an issuance as far as it can go without waiting, and never sleeps.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from acmebridge.adapters.kube import core_path
from acmebridge.domain import actions as a
from acmebridge.domain.assess import assess_secret
from acmebridge.domain.conditions import get_condition
from acmebridge.domain.errors import AcmeProblem, AcmeUnavailable, SpecError, TLSTrustError
from acmebridge.domain.plan import IssuerState, IssuerView, Observed, Settings, plan
from acmebridge.domain.reasons import Reason
from acmebridge.domain.spec import CertificateSpec
from acmebridge.reconcile import outcome, steps
from acmebridge.reconcile.accounts import Account, AccountError, Accounts
from acmebridge.reconcile.context import Ctx
from acmebridge.reconcile.issuance import Issuance, issuer_view
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


async def reconcile_certificate(rt: Runtime, key: ObjectKey, accounts: Accounts) -> float | None:
    body = rt.cache.get(key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        rt.metrics.certificate(None, key)
        rt.depend(key, None)
        return None
    try:
        return await _reconcile(rt, key, body, accounts)
    finally:
        rt.metrics.certificate(rt.cache.get(key), key)


def settings_of(rt: Runtime) -> Settings:
    c = rt.config
    return Settings(
        backoff_cap=c.backoff_cap,
        order_poll_max=c.order_poll_max,
        ari_recheck_max=c.ari_recheck_max,
        secret_check_interval=c.secret_check_interval,
    )


async def _reconcile(
    rt: Runtime, key: ObjectKey, body: dict[str, Any], accounts: Accounts
) -> float | None:
    ctx = Ctx.of(rt, key, body, rt.clock())
    try:
        spec = CertificateSpec.from_body(body.get("spec") or {})
    except SpecError as e:
        observed = _observed(ctx, None, e.message, IssuerView(IssuerState.READY), None)
        action = plan(observed)
        assert isinstance(action, a.Terminal)
        return await outcome.terminal(ctx, Issuance(ctx, None, observed), action)
    ikey = issuer_key(spec, ctx.namespace)
    rt.depend(key, ikey)
    view, account = await _issuer(rt, ikey, spec, ctx.namespace, accounts)
    secret = None
    if view.state is not IssuerState.MISSING and view.state is not IssuerState.NOT_READY:
        secret = await rt.io(rt.kube.get, core_path("secrets", ctx.namespace, spec.secret_name))
    observed = _observed(ctx, spec, "", view, secret)
    work = Issuance(ctx, account, observed, secret=secret, accounts=accounts, issuer_key=ikey)
    for _ in range(MAX_STEPS):
        action = plan(work.observed)
        if isinstance(action, a.Terminal):
            return await outcome.terminal(ctx, work, action)
        await _step(work, action)
        if work.terminal is not None:
            return await outcome.terminal(ctx, work, work.terminal)
    log.error("Certificate %s: no terminal step after %d steps", ctx.log_name(), MAX_STEPS)
    await ctx.flush()
    return 30.0


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
