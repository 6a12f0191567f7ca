"""Authorizations of an order: choose a solver, present the challenge, self-check, answer.

Solver objects are created under names derived from the Certificate's UID and the token, so a
restart finds them instead of making more; ``cleanupPending`` is written before the first one
exists. A challenge is answered only after the self check fetched the key authorization the way
the CA will (RFC 8555 §8.3): answering too early fails the whole order.
"""

from __future__ import annotations

from dataclasses import replace

from acmebridge.adapters import acme_client as acme
from acmebridge.adapters import selfcheck
from acmebridge.adapters.acme_messages import AuthorizationInfo, ChallengeInfo
from acmebridge.adapters.kube import Conflict, core_path, group_path
from acmebridge.domain.errors import AcmeProblem, SpecError
from acmebridge.domain.journal import AuthorizationRecord, ChallengeRecord, OrderJournal
from acmebridge.domain.solvers import http01_objects, object_name, pod_ready, select_solver
from acmebridge.reconcile.accounts import Account
from acmebridge.reconcile.certificate import Ctx
from acmebridge.reconcile.cleanup import delete_solver_objects

PERMANENT_AUTHZ = ("invalid", "deactivated", "expired", "revoked")


async def mark_answered_valid(ctx: Ctx, journal: OrderJournal) -> OrderJournal:
    """A ready order has every authorization valid (RFC 8555 §7.1.6). The CA often validates
    the last answered challenge before the operator looks at its authorization again, so say
    here that the challenges this issuance answered are valid."""
    for rec in journal.authorizations:
        ch = rec.challenge
        if ch is None or not ch.answered or ch.state == "valid":
            continue
        valid = replace(rec, state="valid", challenge=replace(ch, state="valid"))
        journal = journal.with_authorization(valid)
        await ctx.event("Normal", "ChallengeValid", f"Challenge for {rec.identifier} is valid")
    return journal


async def work_authorizations(
    ctx: Ctx, account: Account, journal: OrderJournal
) -> tuple[OrderJournal, list[str]]:
    """Present, self-check and answer each pending authorization's challenge."""
    rt = ctx.rt
    waiting: list[str] = []
    for rec in journal.authorizations:
        authz: AuthorizationInfo = await rt.io(
            account.session.get_authorization, account.ref, rec.url
        )
        rec = replace(rec, state=authz.status)
        if authz.status == "valid":
            if rec.challenge is not None and rec.challenge.presented:
                await delete_solver_objects(
                    ctx, challenge_name=object_name(ctx.uid, rec.challenge.token)
                )
                rec = replace(rec, challenge=replace(rec.challenge, presented=False, state="valid"))
                await ctx.event(
                    "Normal", "ChallengeValid", f"Challenge for {rec.identifier} is valid"
                )
            journal = journal.with_authorization(rec)
            continue
        if authz.status in PERMANENT_AUTHZ:
            err = next((c.error for c in authz.challenges if c.error is not None), None)
            detail = f"{err.detail} ({err.type})" if err else authz.status
            if rec.challenge is not None:
                rec = replace(rec, challenge=replace(rec.challenge, state="invalid", error=detail))
            journal = journal.with_authorization(rec)
            ctx.patch["order"] = journal.to_merge_patch()
            raise AcmeProblem(
                err.type if err else "urn:ietf:params:acme:error:unauthorized",
                f"challenge for {rec.identifier} failed: {detail}",
            )
        rec, note = await _challenge(ctx, account, rec, authz)
        journal = journal.with_authorization(rec)
        if note:
            waiting.append(note)
    return journal, waiting


async def _challenge(
    ctx: Ctx, account: Account, rec: AuthorizationRecord, authz: AuthorizationInfo
) -> tuple[AuthorizationRecord, str | None]:
    rt = ctx.rt
    labels = ctx.body["metadata"].get("labels") or {}
    selection = select_solver(
        account.spec.solvers,
        identifier_type=rec.identifier_type,
        identifier=rec.identifier,
        wildcard=rec.wildcard,
        certificate_labels=labels,
    )
    if selection is None:
        raise SpecError(
            "NoSolver",
            f"no solver of the issuer matches {rec.identifier}"
            + (" (a wildcard needs a dns01 solver)" if rec.wildcard else "")
            + "; add one to spec.acme.solvers or fix its selector",
        )
    http01 = selection.solver.http01
    if http01 is None:
        raise SpecError(
            "SolverNotSupported",
            f"the solver chosen for {rec.identifier} is dns01; acmebridge solves DNS-01 "
            "through RFC 2136 in a later release: use an http01 solver for this name",
        )
    if http01.name:
        raise SpecError(
            "SolverNotSupported",
            "http01.ingress.name (editing an existing Ingress) is not supported; "
            "use ingressClassName or class",
        )
    offered: ChallengeInfo | None = next((c for c in authz.challenges if c.type == "http-01"), None)
    if offered is None or offered.token is None:
        raise AcmeProblem(
            "urn:ietf:params:acme:error:unsupportedIdentifier",
            f"the ACME server offers no http-01 challenge for {rec.identifier}",
        )
    ch = rec.challenge or ChallengeRecord(
        type="http-01", url=offered.url, token=offered.token, solver_index=selection.index
    )
    ch = replace(ch, state=offered.status)
    if offered.status in ("processing", "valid") or ch.answered:
        return replace(rec, challenge=ch), f"{rec.identifier}: the ACME server is validating"
    ka = acme.key_authorization(account.ref, offered)
    objs = http01_objects(
        namespace=ctx.namespace,
        certificate_name=ctx.name,
        certificate_uid=ctx.uid,
        solver=http01,
        identifier_type=rec.identifier_type,
        identifier=rec.identifier,
        token=offered.token,
        key_authorization=ka,
        image=rt.config.solver_image,
        command=rt.config.solver_command,
    )
    name = objs.pod["metadata"]["name"]
    if not ch.presented:
        if not ctx.book().get("cleanupPending"):
            ctx.set_book(cleanupPending=True)
            await ctx.flush()
        created = 0
        for path, body in (
            (core_path("pods", ctx.namespace), objs.pod),
            (core_path("services", ctx.namespace), objs.service),
            (group_path("networking.k8s.io", "v1", "ingresses", ctx.namespace), objs.ingress),
        ):
            try:
                await rt.io(rt.kube.create, path, body)
                created += 1
            except Conflict:
                pass  # created before a restart: the name is derived, so it is ours
        rt.metrics.solvers(created)
        ch = replace(ch, presented=True)
        await ctx.event(
            "Normal",
            "ChallengePresented",
            f"Presented http-01 challenge for {rec.identifier} with solver Pod '{name}'",
        )
    pod = await rt.io(rt.kube.get, core_path("pods", ctx.namespace, name))
    if pod is None:
        ch = replace(ch, presented=False)  # deleted under us: present again next time
        return replace(rec, challenge=ch), f"{rec.identifier}: solver Pod '{name}' is gone"
    if not pod_ready(pod):
        return replace(rec, challenge=ch), (
            f"{rec.identifier}: waiting for solver Pod '{name}' to become ready"
        )
    check = await rt.io(
        selfcheck.check_http01,
        identifier=rec.identifier,
        token=offered.token,
        expected=ka,
        port=rt.config.http01_self_check_port,
        nameservers=rt.config.self_check_nameservers,
    )
    if not check.ok:
        return replace(rec, challenge=ch), f"{rec.identifier}: self check: {check.detail}"
    answered = await rt.io(account.session.answer_challenge, account.ref, offered.url)
    ch = replace(ch, answered=True, state=answered.status)
    await ctx.event(
        "Normal",
        "ChallengeAnswered",
        f"Self check passed for {rec.identifier}; asked the ACME server to validate",
    )
    return replace(rec, challenge=ch), None
