"""Advance one issuance through its ACME order, as far as it can go without waiting.

Order of effects matters for restart safety: the pending key Secret exists before the order is
created; the order URL is written to ``status.order`` right after ``newOrder`` returns, before any
solver object exists; ``cleanupPending`` is set before the first solver object is created. A
restart at any point therefore resumes the same order (while it is usable) and finds everything
it has to remove. Failures are classified (``domain.errors.classify``): a temporary one keeps the
order and retries after backoff; a permanent one drops the order, removes the solver objects and
backs off before a new order.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from acmebridge.adapters.acme_messages import (
    AuthorizationInfo,
    OrderInfo,
    choose_chain,
)
from acmebridge.adapters.kube import core_path
from acmebridge.domain import secret as secrets
from acmebridge.domain.conditions import get_condition
from acmebridge.domain.errors import (
    AcmeProblem,
    AcmeUnavailable,
    Severity,
    SpecError,
    classify,
    short_type,
)
from acmebridge.domain.journal import (
    AuthorizationRecord,
    OrderJournal,
    OrderView,
    Step,
    journal_usable,
    next_step,
)
from acmebridge.domain.keys import (
    PrivateKey,
    build_csr,
    encode_private_key,
    generate_private_key,
    key_matches_spec,
    load_private_key,
)
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.timefmt import format_time, parse_time
from acmebridge.domain.trigger import SecretState, Verdict
from acmebridge.reconcile.accounts import Account
from acmebridge.reconcile.certificate import Ctx
from acmebridge.reconcile.challenges import mark_answered_valid, work_authorizations
from acmebridge.reconcile.cleanup import (
    delete_solver_objects,
    pending_key_name,
)
from acmebridge.reconcile.outcome import failed, finish
from acmebridge.reconcile.secretwriter import decode_data, write_tls_secret

log = logging.getLogger("acmebridge.issuance")

#: Ready reasons set when a Certificate cannot start an issuance (``reconcile.certificate``)
GATE_REASONS = frozenset({"IssuerNotFound", "IssuerNotReady", "SecretConflict", "InvalidSpec"})


async def advance(
    ctx: Ctx,
    account: Account,
    secret: Mapping[str, Any] | None,
    sstate: SecretState,
    journal: OrderJournal | None,
    verdict: Verdict,
    *,
    reregister: Callable[[], Awaitable[Account]] | None = None,
) -> float | None:
    issuing = get_condition(ctx.conditions(), "Issuing")
    # `acmebridge renew` sets Issuing=True itself: unless the operator marked the start of this
    # issuance (`issuingSince`, at or after the condition's transition), it has not begun, and it
    # is announced like any other.
    since = ctx.book().get("issuingSince")
    started = (
        issuing is not None
        and issuing.status == "True"
        and isinstance(since, str)
        and parse_time(since) >= issuing.last_transition_time
    )
    ready = get_condition(ctx.conditions(), "Ready")
    if ready is not None and ready.reason in GATE_REASONS:
        # What kept the issuance from starting (an issuer not ready yet) no longer holds, or it
        # would not have got here: a stale reason would send users to the wrong place.
        ctx.set("Ready", "False", verdict.reason, verdict.message)
    if not started:
        ctx.set("Issuing", "True", verdict.reason, verdict.message)
        ctx.set_book(issuingSince=format_time(ctx.now))
        await ctx.flush()
        await ctx.event("Normal", "Issuing", verdict.message)
    try:
        try:
            return await _attempt(ctx, account, secret, sstate, journal)
        except AcmeProblem as e:
            if reregister is None or short_type(e.type) != "accountDoesNotExist":
                raise
            # The CA no longer knows the account (a CA restored from an empty database, a test
            # CA restarted): register the same key again and go on with a new order. Once per
            # reconcile; a second refusal is an ordinary failure.
            log.warning(
                "Certificate %s/%s: the ACME server does not know account %s; registering again",
                ctx.namespace,
                ctx.name,
                account.ref.uri,
            )
            account = await reregister()
            return await _attempt(ctx, account, secret, sstate, journal)
    except AcmeProblem as e:
        permanent = classify(e) is Severity.PERMANENT
        return await failed(
            ctx,
            sstate,
            reason="Failed",
            detail=f"{e.detail} ({e.type})",
            permanent=permanent,
            retry_after=e.retry_after,
            problem=e.type,
        )
    except AcmeUnavailable as e:
        return await failed(
            ctx, sstate, reason="ACMEServerUnavailable", detail=e.detail, permanent=False
        )
    except SpecError as e:
        return await failed(ctx, sstate, reason=e.reason, detail=e.message, permanent=True)


async def _attempt(
    ctx: Ctx,
    account: Account,
    secret: Mapping[str, Any] | None,
    sstate: SecretState,
    journal: OrderJournal | None,
) -> float | None:
    key = await _pending_key(ctx, secret, sstate)
    spec_hash = ctx.spec.issuance_hash()
    if not journal_usable(journal, spec_hash=spec_hash, account_uri=account.ref.uri, now=ctx.now):
        if journal is not None:
            await delete_solver_objects(ctx)
        journal = await _new_order(
            ctx, account, spec_hash, renewing=sstate.exists and sstate.key_matches_cert
        )
    assert journal is not None
    return await _work(ctx, account, journal, key, secret)


async def _pending_key(
    ctx: Ctx, secret: Mapping[str, Any] | None, sstate: SecretState
) -> PrivateKey:
    """The private key for this issuance, kept in a Secret that only the operator writes."""
    rt = ctx.rt
    spec = ctx.spec.private_key
    name = pending_key_name(ctx.name, ctx.uid)
    path = core_path("secrets", ctx.namespace, name)
    existing = await rt.io(rt.kube.get, path)
    if existing is not None:
        if not secrets.is_pending_key_secret_for(existing["metadata"], ctx.uid):
            raise SpecError(
                "PendingKeyConflict",
                f"Secret '{name}' exists but was not created by acmebridge for this Certificate",
            )
        pem = decode_data(existing, "tls.key")
        if pem is not None:
            key = load_private_key(pem)
            if key_matches_spec(key, spec.algorithm, spec.size):
                return key
        await rt.io(rt.kube.delete, path, uid=existing["metadata"].get("uid"))
    reused = False
    current = decode_data(secret, "tls.key")
    if spec.rotation_policy == "Never" and current and sstate.key_matches_spec:
        key = load_private_key(current)
        reused = True
    else:
        key = await rt.io(generate_private_key, spec.algorithm, spec.size)
    body = secrets.pending_key_secret(
        certificate_name=ctx.name,
        certificate_uid=ctx.uid,
        namespace=ctx.namespace,
        key_pem=encode_private_key(key, "PKCS8"),
        owner_reference={
            "apiVersion": "acmebridge.io/v1alpha1",
            "kind": "Certificate",
            "name": ctx.name,
            "uid": ctx.uid,
            "controller": True,
            "blockOwnerDeletion": False,
        },
    )
    body["metadata"].pop("generateName", None)
    body["metadata"]["name"] = name
    await rt.io(rt.kube.create, core_path("secrets", ctx.namespace), body)
    if reused:
        await ctx.event(
            "Normal", "KeyReused", "Reusing the current private key (rotationPolicy: Never)"
        )
    else:
        await ctx.event(
            "Normal", "KeyGenerated", f"Stored a new private key in temporary Secret '{name}'"
        )
    return key


async def _new_order(ctx: Ctx, account: Account, spec_hash: str, *, renewing: bool) -> OrderJournal:
    rt = ctx.rt
    identifiers = [(i.type, i.value) for i in ctx.spec.identifiers()]
    ari = ctx.book().get("ari")
    # RFC 9773 §5: name the certificate this order replaces, so the CA can link the two (and
    # exempt the renewal from rate limits). Only for a certificate we issued and still serve.
    replaces = ari.get("certID") if isinstance(ari, dict) and renewing else None
    try:
        order: OrderInfo = await rt.io(
            account.session.new_order,
            account.ref,
            identifiers=identifiers,
            profile=account.spec.profile,
            replaces=replaces,
        )
    except AcmeProblem as e:
        if replaces is None or short_type(e.type) not in ("alreadyReplaced", "malformed"):
            raise
        # The certificate was already replaced (an order lost in a restart) or the CA does not
        # accept the field: order without it rather than fail the renewal.
        log.info("Certificate %s/%s: ordering without replaces: %s", ctx.namespace, ctx.name, e)
        replaces = None
        order = await rt.io(
            account.session.new_order,
            account.ref,
            identifiers=identifiers,
            profile=account.spec.profile,
            replaces=None,
        )
    records = []
    for url in order.authorizations:
        authz: AuthorizationInfo = await rt.io(account.session.get_authorization, account.ref, url)
        records.append(
            AuthorizationRecord(
                url=url,
                identifier=authz.identifier[1],
                identifier_type=authz.identifier[0],
                wildcard=authz.wildcard,
                state=authz.status,
            )
        )
    journal = OrderJournal(
        url=order.url,
        state=order.status,
        spec_hash=spec_hash,
        revision=int(ctx.status.get("revision") or 0) + 1,
        account_uri=account.ref.uri,
        created=ctx.now,
        authorizations=tuple(records),
        finalize_url=order.finalize,
        expires=order.expires,
        profile=order.profile,
        replaces=replaces,
    )
    ctx.patch["order"] = journal.to_merge_patch()
    await ctx.flush()
    # Users (and tests) can see that a renewal named the certificate it replaces (RFC 9773 §5).
    also = f", replacing certificate {replaces}" if replaces else ""
    await ctx.event("Normal", "OrderCreated", f"Created ACME order {order.url}{also}")
    log.info("Certificate %s/%s: created order %s%s", ctx.namespace, ctx.name, order.url, also)
    return journal


async def _work(
    ctx: Ctx,
    account: Account,
    journal: OrderJournal,
    key: PrivateKey,
    secret: Mapping[str, Any] | None,
) -> float | None:
    rt = ctx.rt
    poll = _poll_interval(journal, now=ctx.now, slow=rt.config.order_poll_interval)
    order: OrderInfo = await rt.io(account.session.get_order, account.ref, journal.url)
    view = OrderView(
        status=order.status,
        expires=order.expires,
        certificate_url=order.certificate,
        error=order.error.detail if order.error else None,
    )
    step = next_step(view, now=ctx.now)
    if step is Step.NEW_ORDER:
        ctx.patch["order"] = None
        await ctx.flush()
        return 0.0
    if step is Step.FAILED:
        problem = order.error
        raise AcmeProblem(
            problem.type if problem else "urn:ietf:params:acme:error:serverInternal",
            _order_failure(journal, problem.detail if problem else None),
        )
    if step is Step.WORK_AUTHORIZATIONS:
        journal, waiting = await work_authorizations(ctx, account, journal)
        journal = replace(journal, state=order.status)
        ctx.patch["order"] = journal.to_merge_patch()
        if waiting:
            ctx.set("Issuing", "True", "Waiting", "; ".join(waiting))
        await ctx.flush()
        return _delay(order.retry_after, poll)
    if step is Step.FINALIZE:
        journal = await mark_answered_valid(ctx, journal)
        csr = build_csr(
            key,
            common_name=ctx.spec.common_name,
            dns_names=ctx.spec.dns_names,
            ip_addresses=ctx.spec.ip_addresses,
            uris=ctx.spec.uris,
            email_addresses=ctx.spec.email_addresses,
            usages=ctx.spec.usages,
            subject=_subject(ctx.spec),
        )
        order = await rt.io(account.session.finalize, account.ref, order, csr)
        ctx.patch["order"] = replace(journal, state=order.status).to_merge_patch()
        ctx.set("Issuing", "True", "Finalizing", f"Sent the CSR; the order is {order.status}")
        await ctx.flush()
        return 0.0 if order.status == "valid" else _delay(order.retry_after, poll)
    if step is Step.WAIT:
        ctx.patch["order"] = replace(journal, state=order.status).to_merge_patch()
        await ctx.flush()
        return _delay(order.retry_after, poll)
    assert step is Step.DOWNLOAD and order.certificate
    chains_pem = await rt.io(account.session.download_chains, account.ref, order.certificate)
    chosen = choose_chain(chains_pem, account.spec.preferred_chain or None)
    written = await write_tls_secret(
        rt,
        certificate=ctx.body,
        spec=ctx.spec,
        issuer=account.spec,
        existing=secret,
        chain_pem=chosen,
        key=key,
    )
    return await finish(ctx, account, written, renewing=secret is not None)


def _subject(spec: CertificateSpec) -> dict[str, list[str]]:
    """``spec.subject`` keyed by its CRD field names, as ``build_csr`` takes it."""
    s = spec.subject
    fields = {
        "organizations": s.organizations,
        "organizationalUnits": s.organizational_units,
        "countries": s.countries,
        "localities": s.localities,
        "provinces": s.provinces,
        "streetAddresses": s.street_addresses,
        "postalCodes": s.postal_codes,
        "serialNumber": (s.serial_number,) if s.serial_number else (),
    }
    return {k: list(v) for k, v in fields.items() if v}


def _order_failure(journal: OrderJournal, detail: str | None) -> str:
    failed = [a for a in journal.authorizations if a.challenge and a.challenge.error]
    if failed and failed[0].challenge is not None:
        a = failed[0]
        return f"challenge for {a.identifier} failed: {a.challenge.error}"  # type: ignore[union-attr]
    return f"the ACME order became invalid: {detail or 'no reason given'}"


FAST_POLL = 0.5
FAST_POLL_WINDOW = timedelta(seconds=30)


def _poll_interval(journal: OrderJournal, *, now: datetime, slow: timedelta) -> float:
    """Pure: how soon to look at a waiting order again.

    Solver Pods start, and internal CAs validate, within a second or two; polling every half
    second for the first half minute of an order gets most certificates out several seconds
    sooner, and a slow validation then falls back to the configured interval.
    """
    if now - journal.created < FAST_POLL_WINDOW:
        return min(FAST_POLL, slow.total_seconds())
    return slow.total_seconds()


def _delay(retry_after: timedelta | None, default: float) -> float:
    if retry_after is None:
        return default
    return max(default, min(retry_after.total_seconds(), 3600.0))
