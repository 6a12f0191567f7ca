"""The steps of an ACME order, decided from the journal and what the CA said in this reconcile.

Per authorization: read it, choose the challenge of the solver that matches (cert-manager's
selection rules), present it, self-check it the way the CA will, answer it. The CA is asked
about the order only once a challenge has been answered, then polled at half the time waited so
far (from half a second up to ``--order-poll-max``; its Retry-After wins). Then finalize,
download, clean up and finish. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from acmebridge.domain import actions as a
from acmebridge.domain.failures import ChallengeOutcome, describe_invalid, own_reason
from acmebridge.domain.issuer_spec import Solver
from acmebridge.domain.journal import AuthorizationRecord, ChallengeRecord, OrderJournal
from acmebridge.domain.observed import AuthzView, Observed, OrderView, Settings
from acmebridge.domain.reasons import AuthzState, OrderState, Reason
from acmebridge.domain.schedule import MAX_RETRY_AFTER
from acmebridge.domain.settle import finish
from acmebridge.domain.solvers import no_solver_message, select_solver
from acmebridge.domain.validatable import cluster_internal_message

# How soon to self-check again while a solver comes up, and how often at most once it is slow.
SELF_CHECK_FIRST = 0.5
SELF_CHECK_MAX = 10.0
# Poll the CA after answering or finalizing: at half the time waited so far, at least half a
# second, up to the cap; but the first time a quarter of a second after the request itself.
# Asking at once mostly hears "pending" (a wasted request), while a CA that works quickly (Pebble,
# a CA on the same network) is usually done by then. A CA that finished during the request says
# so in its reply, and the plan goes on at once.
POLL_FIRST = 0.5
POLL_SOON = 0.25
# A solver that has not passed its self check after this long is looked at (is it there?).
INSPECT_AFTER = timedelta(seconds=5)
# Waits shorter than this are not worth a status write each.
VISIBLE_AFTER = timedelta(seconds=5)


def key_problem(o: Observed) -> a.Action | None:
    """The pending key is not loaded yet, or cannot be used."""
    if o.key is None:
        return a.EnsureKey()
    if o.key.conflict is not None:
        return a.Fail(
            own_reason(Reason.PENDING_KEY_CONFLICT),
            Reason.PENDING_KEY_CONFLICT,
            o.key.conflict,
            permanent=True,
        )
    return None


def names_problem(o: Observed) -> a.Fail | None:
    """Before ordering: a name no ACME challenge can ever prove, or one no solver of the issuer
    takes. Either would only cost an order at the CA that is certain to fail."""
    assert o.spec is not None
    for name in o.spec.dns_names:
        message = cluster_internal_message(name, o.settings.cluster_domain)
        if message is not None:
            return _spec_failure(Reason.NAME_NOT_VALIDATABLE, message)
    identifiers = [("dns", n) for n in o.spec.dns_names] + [("ip", i) for i in o.spec.ip_addresses]
    for kind, identifier in identifiers:
        wildcard = identifier.startswith("*.")
        taken = select_solver(
            o.issuer.solvers,
            identifier_type=kind,
            identifier=identifier,
            wildcard=wildcard,
            certificate_labels=o.labels,
        )
        if taken is None:
            return _spec_failure(Reason.NO_SOLVER, no_solver_message(identifier, wildcard=wildcard))
    return None


def order_step(o: Observed, j: OrderJournal) -> a.Action:
    view = o.order
    state = view.status if view is not None else j.state
    if state == OrderState.VALID:
        return _complete(o, j, view)
    if state == OrderState.INVALID:
        if o.outcomes is None:
            return a.ExplainFailure()
        return _invalid(o.outcomes)
    if state == OrderState.PROCESSING or j.finalized_at is not None:
        if view is None:
            return a.FetchOrder()
        waited = o.now - (j.finalized_at or o.now)
        return a.Wait(
            poll_delay(waited, view.retry_after, o.settings),
            Reason.FINALIZING,
            f"Sent the CSR; the order is {state}",
            waited >= VISIBLE_AFTER,
        )
    if state == OrderState.READY:
        return key_problem(o) or a.Finalize()
    return _authorizations(o, j)


def _authorizations(o: Observed, j: OrderJournal) -> a.Action:
    waiting: list[str] = []
    presented: list[datetime] = []
    for rec in j.authorizations:
        if rec.state == AuthzState.VALID:
            continue
        if rec.dead:
            return a.ExplainFailure() if o.outcomes is None else _invalid(o.outcomes)
        ch = rec.challenge
        if ch is None:
            info = o.authorizations.get(rec.url)
            if info is None:
                return a.FetchAuthorization(rec.url)
            return _record(o, rec, info)
        if ch.answered:
            continue
        if not ch.presented:
            return a.Present(rec.url)
        assert ch.presented_at is not None
        presented.append(ch.presented_at)
        check = o.checks.get(rec.url)
        if check is None:
            return a.SelfCheck(rec.url, inspect=o.now - ch.presented_at >= INSPECT_AFTER)
        if check.solver_missing:
            return a.Present(rec.url)
        if check.ok:
            return a.Answer(rec.url)
        waiting.append(f"{rec.identifier}: {check.detail}")
    answered = j.answered_at
    if answered is not None or not waiting:
        # A challenge was answered (or every authorization is valid): the CA may have moved on.
        message = "The ACME server is validating"
        if waiting:
            message += "; " + "; ".join(waiting)
        if o.order is None and o.just_answered:
            return a.Wait(POLL_SOON, Reason.VALIDATING, message, False)
        if o.order is None:
            return a.FetchOrder()
        waited = o.now - (answered or o.now)
        return a.Wait(
            poll_delay(waited, o.order.retry_after, o.settings),
            Reason.VALIDATING,
            message,
            waited >= VISIBLE_AFTER,
        )
    # Nothing answered yet: no request to the CA can change anything, only the solvers can.
    waited = o.now - min(presented)
    delay = min(max(SELF_CHECK_FIRST, waited.total_seconds() / 2), SELF_CHECK_MAX)
    return a.Wait(
        delay,
        Reason.WAITING_FOR_SELF_CHECK,
        "Waiting for the self check: " + "; ".join(waiting),
        waited >= VISIBLE_AFTER,
    )


def _record(o: Observed, rec: AuthorizationRecord, info: AuthzView) -> a.Action:
    """What the CA said about an authorization we had not seen yet, and the challenge to use."""
    rec = replace(
        rec,
        state=info.status,
        identifier=info.identifier,
        identifier_type=info.identifier_type,
        wildcard=info.wildcard,
    )
    if info.status != AuthzState.PENDING:
        return a.RecordAuthorization(rec)
    chosen = choose_challenge(
        o.issuer.solvers,
        info,
        labels=o.labels,
        dns01_supported=o.settings.dns01_supported,
    )
    if isinstance(chosen, a.Fail):
        return chosen
    return a.RecordAuthorization(replace(rec, challenge=chosen))


def choose_challenge(
    solvers: Sequence[Solver],
    info: AuthzView,
    *,
    labels: Mapping[str, str],
    dns01_supported: bool,
) -> ChallengeRecord | a.Fail:
    """Pure: the challenge that will prove this identifier, or why none can."""
    selection = select_solver(
        solvers,
        identifier_type=info.identifier_type,
        identifier=info.identifier,
        wildcard=info.wildcard,
        certificate_labels=labels,
    )
    if selection is None:
        return _spec_failure(
            Reason.NO_SOLVER, no_solver_message(info.identifier, wildcard=info.wildcard)
        )
    solver = selection.solver
    if solver.http01 is not None and solver.http01.name:
        return _spec_failure(
            Reason.SOLVER_NOT_SUPPORTED,
            "http01.ingress.name (editing an existing Ingress) is not supported; "
            "use ingressClassName or class",
        )
    if solver.dns01 is not None and not dns01_supported:
        return _spec_failure(
            Reason.SOLVER_NOT_SUPPORTED,
            f"the solver chosen for {info.identifier} is dns01, which this operator cannot "
            "solve: use an http01 solver for this name",
        )
    wanted = "http-01" if solver.http01 is not None else "dns-01"
    offered = next((c for c in info.challenges if c.type == wanted and c.token), None)
    if offered is None or offered.token is None:
        types = ", ".join(sorted({c.type for c in info.challenges})) or "none"
        return a.Fail(
            "unsupportedIdentifier",
            Reason.FAILED,
            f"the ACME server offers no {wanted} challenge for {info.identifier} (it offers "
            f"{types}); choose a solver of a type it offers",
            permanent=True,
        )
    return ChallengeRecord(
        type=wanted,
        url=offered.url,
        token=offered.token,
        state=offered.status,
        solver_index=selection.index,
    )


def _spec_failure(reason: Reason, message: str) -> a.Fail:
    return a.Fail(own_reason(reason), reason, message, permanent=True)


def _invalid(outcomes: Sequence[ChallengeOutcome]) -> a.Action:
    if not outcomes:
        return a.Fail(
            "unspecified",
            Reason.FAILED,
            "the ACME order became invalid and the CA gave no reason",
            permanent=True,
        )
    reason, message = describe_invalid(outcomes[0])
    for more in outcomes[1:3]:
        message += "; " + describe_invalid(more)[1]
    return a.Fail(reason, Reason.FAILED, message, permanent=True)


def poll_delay(waited: timedelta, retry_after: timedelta | None, s: Settings) -> float:
    """Half the time waited so far, from half a second up to the cap (a quarter of a second
    right after the request); Retry-After wins."""
    least = POLL_SOON if waited <= timedelta(0) else POLL_FIRST
    delay = min(max(least, waited.total_seconds() / 2), s.order_poll_max.total_seconds())
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER).total_seconds())
    return delay


# --- completing -------------------------------------------------------------------------------


def _complete(o: Observed, j: OrderJournal, view: OrderView | None) -> a.Action:
    if o.written is None:
        if view is None:
            return a.FetchOrder()
        if not view.certificate_url:
            waited = o.now - (j.finalized_at or j.created)
            return a.Wait(
                poll_delay(waited, view.retry_after, o.settings),
                Reason.FINALIZING,
                "The order is valid; waiting for the CA to name its certificate",
                waited >= VISIBLE_AFTER,
            )
        return a.Download()
    if not o.cleaned:
        return a.CleanupIssuance()
    return finish(o)
