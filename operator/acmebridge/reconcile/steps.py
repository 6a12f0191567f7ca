"""The order steps the plan asks for: keys, orders, authorizations, finalize, download.

Each step is one piece of IO whose result goes back into ``Issuance.observed`` for the next
``plan`` call. Crash safety comes from the order of effects: the pending-key Secret exists
before ``newOrder`` (so a restart that finds it without a journal knows an order may exist and
looks for it first), the journal is written right after ``newOrder`` and right after each
challenge answer, and everything else is either repeated harmlessly or read back from the CA.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from acmebridge.adapters.acme_messages import (
    AuthorizationInfo,
    IdentifierKind,
    OrderInfo,
    choose_chain,
)
from acmebridge.adapters.kube import core_path
from acmebridge.domain import actions as a
from acmebridge.domain import secret as secrets
from acmebridge.domain.assess import assess_secret, usable
from acmebridge.domain.errors import AcmeProblem, short_type
from acmebridge.domain.failures import ChallengeOutcome
from acmebridge.domain.journal import AuthorizationRecord, OrderJournal
from acmebridge.domain.keys import (
    build_csr,
)
from acmebridge.domain.observed import AuthzView, OfferedChallenge, OrderView
from acmebridge.domain.reasons import ConditionType, OrderState, Reason
from acmebridge.domain.spec import CertificateSpec
from acmebridge.reconcile import challenges, cleanup
from acmebridge.reconcile.issuance import Issuance
from acmebridge.reconcile.pending_key import ensure_key
from acmebridge.reconcile.secretwriter import holding, write_tls_secret

log = logging.getLogger("acmebridge.issuance")

# Order recovery reads at most this many pages of the account's order list, and looks at the
# newest RECOVERY_ORDERS of them: enough for the order a crash just orphaned.
RECOVERY_PAGES = 20
RECOVERY_ORDERS = 20


async def perform(work: Issuance, action: a.Action) -> None:
    """Do one non-terminal action."""
    match action:
        case a.FetchRenewalInfo(cert_id=cert_id):
            await _renewal_info(work, cert_id)
        case a.DropOrder(journal=journal, why=why):
            await _drop(work, journal, why)
        case a.EnsureKey():
            await ensure_key(work)
        case a.RecoverOrder():
            await _recover(work)
        case a.NewOrder():
            await _new_order(work, action)
        case a.FetchAuthorization(url=url):
            info = await work.ctx.rt.io(work.acct.session.get_authorization, work.acct.ref, url)
            work.authz_infos[url] = info
            work.see(authorizations={**work.observed.authorizations, url: _authz_view(info)})
        case a.RecordAuthorization(authorization=rec):
            work.set_journal(work.journal.with_authorization(rec))
        case a.Present(url=url):
            await challenges.present(work, url)
        case a.SelfCheck(url=url, inspect=inspect):
            await challenges.self_check(work, url, inspect=inspect)
        case a.Answer(url=url):
            await challenges.answer(work, url)
        case a.FetchOrder():
            await _fetch_order(work)
        case a.ExplainFailure():
            await _explain(work)
        case a.Finalize():
            await _finalize(work)
        case a.Download():
            await _download(work)
        case a.CleanupIssuance():
            await cleanup.remove_presented(work.ctx, work.journal, work.account)
            await cleanup.delete_pending_key(work.ctx, work.key_uid or work.journal.pending_key_uid)
            work.ctx.rt.pending_keys.pop(work.ctx.uid, None)
            work.see(cleaned=True)
        case _:
            raise AssertionError(f"not a step: {action!r}")


async def _renewal_info(work: Issuance, cert_id: str) -> None:
    rt = work.ctx.rt
    try:
        window = await rt.io(work.acct.session.renewal_info, cert_id)
    except Exception as e:  # any failure: keep what the CA said before, ask again later
        log.info("Certificate %s: renewal info not available: %s", work.ctx.log_name(), e)
        window = None
    work.see(renewal_window=window, renewal_fetched=True)


async def _drop(work: Issuance, journal: OrderJournal, why: str) -> None:
    log.info("Certificate %s: dropping order %s: %s", work.ctx.log_name(), journal.url, why)
    await cleanup.remove_presented(work.ctx, journal, work.account)
    await cleanup.delete_pending_key(work.ctx, journal.pending_key_uid)
    work.ctx.rt.pending_keys.pop(work.ctx.uid, None)
    work.key, work.key_uid = None, None
    work.set_journal(None)
    work.see(key=None, order=None, authorizations={}, checks={}, outcomes=None)


def _identifiers(spec: CertificateSpec) -> list[tuple[IdentifierKind, str]]:
    return [(i.type, i.value) for i in spec.identifiers()]


async def _recover(work: Issuance) -> None:
    """Adopt an order this Certificate created just before a crash, if the CA lists one."""
    rt, acct = work.ctx.rt, work.acct
    work.see(recovery_searched=True)
    if acct.orders_url is None:
        return
    urls = await rt.io(
        acct.session.list_orders, acct.ref, acct.orders_url, max_pages=RECOVERY_PAGES
    )
    taken = _orders_in_use(work)
    wanted = sorted(_identifiers(work.spec))
    for url in reversed(urls[-RECOVERY_ORDERS:]):
        if url in taken:
            continue
        order = await rt.io(acct.session.get_order, acct.ref, url)
        if order.status not in (OrderState.PENDING, OrderState.READY):
            continue
        if sorted(order.identifiers) != wanted:
            continue
        if acct.spec.profile and order.profile not in (None, acct.spec.profile):
            continue
        log.info("Certificate %s: resuming order %s", work.ctx.log_name(), url)
        await _adopt(work, order, replaces=None, event="Resumed ACME order")
        return


def _orders_in_use(work: Issuance) -> set[str]:
    """Order URLs other Certificates' journals hold: never adopt another Certificate's order."""
    taken = set()
    for key, body in work.ctx.rt.cache.items():
        if key[0] != "certificates" or key == work.ctx.key:
            continue
        order = (body.get("status") or {}).get("order")
        if isinstance(order, dict) and isinstance(order.get("url"), str):
            taken.add(order["url"])
    return taken


async def _new_order(work: Issuance, action: a.NewOrder) -> None:
    rt, acct = work.ctx.rt, work.acct
    identifiers = _identifiers(work.spec)
    replaces = action.replaces
    try:
        order = await rt.io(
            acct.session.new_order,
            acct.ref,
            identifiers=identifiers,
            profile=acct.spec.profile,
            replaces=replaces,
        )
    except AcmeProblem as e:
        if replaces is None or short_type(e.type) not in ("alreadyReplaced", "malformed"):
            raise
        # Already replaced (an order lost in a restart) or a CA that does not take the field:
        # order without it rather than fail the renewal.
        log.info("Certificate %s: ordering without replaces: %s", work.ctx.log_name(), e)
        replaces = None
        order = await rt.io(
            acct.session.new_order,
            acct.ref,
            identifiers=identifiers,
            profile=acct.spec.profile,
            replaces=None,
        )
    work.ctx.condition(ConditionType.ISSUING, "True", action.reason, action.message)
    also = f", replacing certificate {replaces}" if replaces else ""
    await _adopt(
        work,
        order,
        replaces=replaces,
        event=f"{action.message}: created ACME order",
        also=also,
    )


async def _adopt(
    work: Issuance, order: OrderInfo, *, replaces: str | None, event: str, also: str = ""
) -> None:
    """Journal ``order`` and write it at once: the one write that makes the order survive."""
    ctx = work.ctx
    journal = OrderJournal(
        url=order.url,
        state=order.status,
        spec_hash=work.spec.issuance_hash(),
        revision=ctx.status.revision + 1,
        account_uri=work.acct.ref.uri,
        created=ctx.now,
        authorizations=tuple(
            AuthorizationRecord(url=u, identifier="") for u in order.authorizations
        ),
        finalize_url=order.finalize,
        expires=order.expires,
        profile=order.profile,
        replaces=replaces,
        pending_key_uid=work.key_uid,
    )
    if work.secret_read_absent:
        # Read as absent a moment ago: the order's next steps need not read it again
        # (Runtime.secret_absent; it is read once more before the write).
        ctx.rt.secret_absent[ctx.uid] = (work.spec.secret_name, order.url)
    if ctx.status.issuing_since is None:
        ctx.patch.set(issuing_since=ctx.now)
    if not usable(work.observed.secret):
        message = ctx.status.condition(ConditionType.ISSUING)
        ctx.condition(
            ConditionType.READY,
            "False",
            Reason.ISSUING,
            message.message if message else "Issuing certificate",
        )
    work.set_journal(journal)
    await ctx.flush()
    work.see(order=_order_view(order))
    work.last_order = order
    await ctx.event("Normal", Reason.ISSUING, f"{event} {order.url}{also}")
    log.info("Certificate %s: order %s%s", ctx.log_name(), order.url, also)


def _order_view(order: OrderInfo) -> OrderView:
    return OrderView(order.status, order.certificate, order.retry_after)


def _authz_view(info: AuthorizationInfo) -> AuthzView:
    return AuthzView(
        status=info.status,
        identifier_type=info.identifier[0],
        identifier=info.identifier[1],
        wildcard=info.wildcard,
        challenges=tuple(
            OfferedChallenge(c.type, c.url, c.token, c.status) for c in info.challenges
        ),
    )


async def _fetch_order(work: Issuance) -> None:
    order = await work.ctx.rt.io(work.acct.session.get_order, work.acct.ref, work.journal.url)
    work.last_order = order
    if order.status != work.journal.state:
        work.set_journal(replace(work.journal, state=order.status))
    work.see(order=_order_view(order))


async def _explain(work: Issuance) -> None:
    """What the CA said about the authorizations that failed (in its own words only)."""
    rt, acct = work.ctx.rt, work.acct
    outcomes = []
    for rec in work.journal.authorizations:
        if rec.state == "valid":
            continue
        info = await rt.io(acct.session.get_authorization, acct.ref, rec.url)
        if info.status == "valid":
            continue
        chosen = rec.challenge.url if rec.challenge else None
        ch = next((c for c in info.challenges if c.url == chosen), None) or next(
            (c for c in info.challenges if c.error is not None), None
        )
        outcomes.append(
            ChallengeOutcome(
                identifier=info.identifier[1],
                authorization_state=info.status,
                challenge_type=ch.type if ch else None,
                error_type=ch.error.type if ch and ch.error else None,
                error_detail=ch.error.detail if ch and ch.error else None,
                validation_record=ch.validation_record if ch else (),
            )
        )
        if rec.challenge is not None:
            error = ch.error.detail if ch and ch.error else None
            invalid = replace(rec.challenge, state=ch.status if ch else info.status, error=error)
            work.ctx.patch.set_order(
                work.journal.with_authorization(replace(rec, state=info.status, challenge=invalid))
            )
    order_error = work.last_order.error if work.last_order is not None else None
    if not outcomes and order_error is not None:
        outcomes.append(
            ChallengeOutcome(
                identifier="the order",
                authorization_state="invalid",
                error_type=order_error.type,
                error_detail=order_error.detail,
            )
        )
    work.see(outcomes=tuple(outcomes))


async def _finalize(work: Issuance) -> None:
    assert work.key is not None
    spec, rt = work.spec, work.ctx.rt
    s = spec.subject
    subject = {
        "organizations": s.organizations,
        "organizationalUnits": s.organizational_units,
        "countries": s.countries,
        "localities": s.localities,
        "provinces": s.provinces,
        "streetAddresses": s.street_addresses,
        "postalCodes": s.postal_codes,
        "serialNumber": (s.serial_number,) if s.serial_number else (),
    }
    csr = build_csr(
        work.key,
        common_name=spec.common_name,
        dns_names=spec.dns_names,
        ip_addresses=spec.ip_addresses,
        uris=spec.uris,
        email_addresses=spec.email_addresses,
        usages=spec.usages,
        subject={k: list(v) for k, v in subject.items() if v},
    )
    order = work.last_order
    if order is None or order.url != work.journal.url:
        order = await rt.io(work.acct.session.get_order, work.acct.ref, work.journal.url)
    finalized = await rt.io(work.acct.session.finalize, work.acct.ref, order, csr)
    work.last_order = finalized
    work.set_journal(replace(work.journal, state=finalized.status, finalized_at=work.ctx.now))
    work.see(order=_order_view(finalized))


async def _download(work: Issuance) -> None:
    rt, acct, ctx = work.ctx.rt, work.acct, work.ctx
    if work.secret_unread:
        # Absent when the order started; someone may have created it since. Read it, and let
        # the plan look again (a Secret that is not ours stops the write).
        work.secret_unread = False
        rt.secret_absent.pop(ctx.uid, None)
        work.secret = await rt.io(
            rt.kube.get, core_path("secrets", ctx.namespace, work.spec.secret_name)
        )
        work.see(
            secret=assess_secret(
                work.secret, work.spec, certificate_name=ctx.name, certificate_uid=ctx.uid
            )
        )
        return
    view = work.observed.order
    assert view is not None and view.certificate_url
    chains = await rt.io(acct.session.download_chains, acct.ref, view.certificate_url)
    chosen = choose_chain(chains, acct.spec.preferred_chain or None)
    if work.key is None:
        await ensure_key(work)
    if work.key is None or not (work.observed.key and work.observed.key.existed):
        # The key the CSR was signed with is gone. After a crash between writing the Secret
        # and finishing, the Secret holds the certificate already: finish. Otherwise (the key
        # deleted by hand) the certificate can never be used: issue again with a new key.
        held = holding(work.secret, chosen)
        if held is None:
            work.fail(
                "pendingKeyConflict",
                Reason.FAILED,
                "the pending private key Secret "
                f"'{secrets.pending_key_name(ctx.name, ctx.uid)}' disappeared before the "
                "certificate was written; issuing again with a new key",
                permanent=True,
            )
            return
        written = held
    else:
        written = await write_tls_secret(
            rt,
            certificate=ctx.body,
            spec=work.spec,
            issuer=acct.spec,
            existing=work.secret,
            chain_pem=chosen,
            key=work.key,
        )
    work.see(written=written)
