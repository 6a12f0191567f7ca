"""Challenges: present the solver, check it the way the CA will, answer.

HTTP-01 here; DNS-01's TXT records in ``reconcile.dns01``.

Solver objects are named from the Certificate's UID and the token, so creating them again after
a restart finds the same objects (409) instead of making more. The Pod is owned by the
Certificate, the Service and Ingress by the Pod: one delete of the Pod removes all three, and a
Certificate deleted mid-order takes them all with it. A challenge is answered only after the self
check fetched the key authorization the way the CA will (RFC 8555 §8.3): answering too early
fails the whole order.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from acmebridge.adapters import acme_client as acme
from acmebridge.adapters import rfc2136, selfcheck
from acmebridge.adapters.acme_messages import ChallengeInfo
from acmebridge.adapters.kube import Conflict, core_path, group_path
from acmebridge.domain.errors import AcmeProblem, DnsProblem, short_type
from acmebridge.domain.journal import AuthorizationRecord, ChallengeRecord
from acmebridge.domain.observed import CheckResult
from acmebridge.domain.reasons import AuthzState
from acmebridge.domain.solvers import http01_objects, object_name, owned_by_pod, pod_ready
from acmebridge.reconcile import dns01

if TYPE_CHECKING:
    from acmebridge.reconcile.issuance import Issuance


def _challenge(work: Issuance, url: str) -> tuple[AuthorizationRecord, ChallengeRecord]:
    rec = work.journal.authorization(url)
    assert rec.challenge is not None
    return rec, rec.challenge


def _key_authorization(work: Issuance, ch: ChallengeRecord) -> str:
    info = ChallengeInfo(
        type=ch.type, url=ch.url, token=ch.token, status=ch.state, error=None, validated=None
    )
    return acme.key_authorization(work.acct.ref, info)


def _save(work: Issuance, rec: AuthorizationRecord, ch: ChallengeRecord) -> None:
    work.set_journal(work.journal.with_authorization(replace(rec, challenge=ch)))


async def present(work: Issuance, url: str) -> None:
    rec, ch = _challenge(work, url)
    if ch.type == "dns-01":
        await _present_dns01(work, rec, ch)
    else:
        await _present_http01(work, rec, ch)
    checks = dict(work.observed.checks)
    checks.pop(url, None)
    work.see(checks=checks)


async def _present_dns01(work: Issuance, rec: AuthorizationRecord, ch: ChallengeRecord) -> None:
    """Record where the value goes and write it down (with the finalizer) before adding it."""
    ctx, rt = work.ctx, work.ctx.rt
    solver = dns01.solver_of(work.acct, ch)
    placement = await dns01.place(rt, solver, rec.identifier)
    value = _key_authorization(work, ch)
    _save(
        work,
        rec,
        replace(
            ch,
            presented_at=ctx.now,
            record_name=placement.name,
            record_zone=placement.zone,
            record_server=placement.server,
            record_value=value,
        ),
    )
    await dns01.ensure_finalizer(ctx)
    await ctx.flush()
    server = await dns01.update_server(rt, work.acct, solver)
    await rt.io(rfc2136.add_txt, server, zone=placement.zone, name=placement.name, value=value)


async def _present_http01(work: Issuance, rec: AuthorizationRecord, ch: ChallengeRecord) -> None:
    """Create the Pod, then its Service and Ingress owned by it (each 409 means: ours already)."""
    ctx, rt = work.ctx, work.ctx.rt
    solver = work.acct.spec.solvers[ch.solver_index or 0].http01
    assert solver is not None
    objs = http01_objects(
        namespace=ctx.namespace,
        certificate_name=ctx.name,
        certificate_uid=ctx.uid,
        solver=solver,
        identifier_type=rec.identifier_type,
        identifier=rec.identifier,
        token=ch.token,
        key_authorization=_key_authorization(work, ch),
        image=rt.config.solver_image,
        command=rt.config.solver_command,
    )
    name = objs.pod["metadata"]["name"]
    pods = core_path("pods", ctx.namespace)
    try:
        pod = await rt.io(rt.kube.create, pods, objs.pod)
        rt.metrics.solvers(1)
    except Conflict:
        existing = await rt.io(rt.kube.get, f"{pods}/{name}")
        if existing is None:
            raise
        pod = existing
    uid = str(pod["metadata"]["uid"])
    for path, body in (
        (core_path("services", ctx.namespace), objs.service),
        (group_path("networking.k8s.io", "v1", "ingresses", ctx.namespace), objs.ingress),
    ):
        # A 409: made before a restart (the name derives from the UID and token, so it is ours).
        with contextlib.suppress(Conflict):
            await rt.io(rt.kube.create, path, owned_by_pod(body, pod_name=name, pod_uid=uid))
    _save(work, rec, replace(ch, presented_at=ctx.now, solver_uid=uid))


async def self_check(work: Issuance, url: str, *, inspect: bool) -> None:
    rec, ch = _challenge(work, url)
    if ch.type == "dns-01":
        solver = dns01.solver_of(work.acct, ch)
        try:
            ok, detail = await dns01.check(work.ctx.rt, ch, protocol=solver.protocol)
        except DnsProblem as e:
            ok, detail = False, e.message
        work.see(checks={**work.observed.checks, url: CheckResult(ok, detail)})
        return
    await _self_check_http01(work, url, rec, ch, inspect=inspect)


async def _self_check_http01(
    work: Issuance, url: str, rec: AuthorizationRecord, ch: ChallengeRecord, *, inspect: bool
) -> None:
    ctx, rt = work.ctx, work.ctx.rt
    result = await rt.io(
        selfcheck.check_http01,
        identifier=rec.identifier,
        token=ch.token,
        expected=_key_authorization(work, ch),
        port=rt.config.http01_self_check_port,
        nameservers=rt.config.self_check_nameservers,
    )
    check = CheckResult(result.ok, result.detail)
    if not result.ok and inspect:
        # Slow to pass: say whether the solver Pod is the reason, and present it again if it
        # is gone (evicted, deleted by hand).
        name = object_name(ctx.uid, ch.token)
        pod: Any = await rt.io(rt.kube.get, core_path("pods", ctx.namespace, name))
        if pod is None:
            check = CheckResult(False, f"solver Pod '{name}' is gone", solver_missing=True)
        elif not pod_ready(pod):
            phase = (pod.get("status") or {}).get("phase", "Pending")
            check = CheckResult(
                False, f"solver Pod '{name}' is not ready ({phase}); {result.detail}"
            )
    work.see(checks={**work.observed.checks, url: check})


async def answer(work: Issuance, url: str) -> None:
    """Answer, and write the journal at once: after a restart the operator polls instead of
    answering again. A CA that says the challenge is no longer pending was answered before a
    crash: take that as answered."""
    ctx, rt = work.ctx, work.ctx.rt
    rec, ch = _challenge(work, url)
    try:
        answered = await rt.io(work.acct.session.answer_challenge, work.acct.ref, ch.url)
        state = answered.status
    except AcmeProblem as e:
        if short_type(e.type) != "malformed":
            raise
        info = await rt.io(work.acct.session.get_authorization, work.acct.ref, rec.url)
        current = next((c for c in info.challenges if c.url == ch.url), None)
        if current is None or current.status == AuthzState.PENDING:
            raise
        state = current.status
    _save(work, rec, replace(ch, answered_at=ctx.now, state=state))
    await ctx.flush()
    work.see(just_answered=state in (AuthzState.PENDING, AuthzState.PROCESSING))
