"""The Certificate's next step, decided from what was observed: ``plan(observed) -> Action``.

Purely computational, like cert-manager's trigger policies and kopf's cause detection: the
reconciler gathers (the Certificate, its issuer, its Secret, and what earlier steps of the same
reconcile learnt from the CA), calls ``plan``, performs the one action it returns, and asks again
until the action is terminal. Nothing here reads the clock, the cluster or the CA.

The order of the checks is the policy:

1. gates that need someone else to act (spec, issuer, a Secret that is not ours);
2. nothing to issue: settle as Ready and schedule the renewal (``domain.renewal``);
3. the ACME server is down: wait for it, without counting a failure;
4. backoff after a failed attempt of the same spec (a manual trigger or a spec change skips it);
5. the order journal: drop an unusable order, create (or recover) one, then per authorization
   present, self-check and answer; the CA is asked about the order only once a challenge has
   been answered, then polled with a growing interval; finalize, download, clean up, finish.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from acmebridge.domain import actions as a
from acmebridge.domain.assess import SecretView, usable
from acmebridge.domain.conditions import Condition
from acmebridge.domain.failures import ChallengeOutcome, describe_invalid, own_reason
from acmebridge.domain.issuer_spec import Solver
from acmebridge.domain.journal import (
    AuthorizationRecord,
    ChallengeRecord,
    OrderJournal,
    journal_usable,
)
from acmebridge.domain.match import CertSummary
from acmebridge.domain.reasons import AuthzState, ConditionType, OrderState, Reason
from acmebridge.domain.renewal import (
    RenewalWindow,
    capped,
    early_renewals_after,
    jitter,
    next_wake,
    plan_renewal,
    refreshed_record,
    renewal_info_due,
    retried_record,
)
from acmebridge.domain.schedule import MAX_RETRY_AFTER, backoff_delay
from acmebridge.domain.solvers import select_solver
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.status import CertificateStatus, Issued, RenewalInfoRecord
from acmebridge.domain.timefmt import format_time
from acmebridge.domain.trigger import TriggerInputs, Verdict, evaluate

# How soon to self-check again while a solver comes up, and how often at most once it is slow.
SELF_CHECK_FIRST = 0.5
SELF_CHECK_MAX = 10.0
# Poll the CA after answering: first after half a second, then at half the time waited so far.
POLL_FIRST = 0.5
# A solver that has not passed its self check after this long is looked at (is it there?).
INSPECT_AFTER = timedelta(seconds=5)
# Waits shorter than this are not worth a status write each.
VISIBLE_AFTER = timedelta(seconds=5)


class IssuerState(enum.Enum):
    MISSING = "missing"
    NOT_READY = "not-ready"
    SERVER_DOWN = "server-down"
    READY = "ready"


@dataclass(frozen=True)
class IssuerView:
    """The referenced issuer, its account and what its ACME server offers."""

    state: IssuerState
    message: str = ""
    account_uri: str = ""
    ari: bool = False
    can_list_orders: bool = False
    solvers: tuple[Solver, ...] = ()
    preferred_chain: str | None = None


@dataclass(frozen=True)
class KeyView:
    """The pending private key's Secret (the key itself stays in the reconciler)."""

    present: bool
    #: it existed before this reconcile looked (an issuance started earlier)
    existed: bool = False
    conflict: str | None = None


@dataclass(frozen=True)
class OrderView:
    """The order as the CA reported it in this reconcile."""

    status: str
    certificate_url: str | None = None
    retry_after: timedelta | None = None


@dataclass(frozen=True)
class OfferedChallenge:
    type: str
    url: str
    token: str | None
    status: str


@dataclass(frozen=True)
class AuthzView:
    """An authorization as the CA reported it in this reconcile."""

    status: str
    identifier_type: str
    identifier: str
    wildcard: bool
    challenges: tuple[OfferedChallenge, ...]


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str = ""
    #: the solver object was looked at and is gone: present it again
    solver_missing: bool = False


@dataclass(frozen=True)
class Written:
    """The certificate just written to the Secret."""

    leaf: CertSummary
    cert_id: str | None
    ca_source: str | None
    ca_omitted_reason: str | None


@dataclass(frozen=True)
class Settings:
    """The operator settings decisions depend on."""

    backoff_cap: timedelta = timedelta(hours=1)
    order_poll_max: timedelta = timedelta(seconds=10)
    ari_recheck_max: timedelta = timedelta(hours=24)
    secret_check_interval: timedelta = timedelta(hours=1)
    dns01_supported: bool = False


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile knows; steps of the same reconcile add to it."""

    now: datetime
    uid: str
    generation: int
    labels: Mapping[str, str]
    spec: CertificateSpec | None
    spec_error: str
    status: CertificateStatus
    issuer: IssuerView
    secret: SecretView
    settings: Settings = field(default_factory=Settings)
    key: KeyView | None = None
    recovery_searched: bool = False
    renewal_window: RenewalWindow | None = None
    renewal_fetched: bool = False
    order: OrderView | None = None
    authorizations: Mapping[str, AuthzView] = field(default_factory=dict)
    checks: Mapping[str, CheckResult] = field(default_factory=dict)
    outcomes: tuple[ChallengeOutcome, ...] | None = None
    written: Written | None = None
    cleaned: bool = False


def plan(o: Observed) -> a.Action:
    """Pure: the next step for the Certificate as observed (see the module docstring)."""
    if o.spec is None:
        return a.NotReady(Reason.INVALID_SPEC, o.spec_error, None)
    gate = _gate(o)
    if gate is not None:
        return gate
    spec = o.spec
    spec_hash = spec.issuance_hash()
    journal = o.status.order
    verdict = evaluate(
        TriggerInputs(
            secret=o.secret.state,
            spec_hash=spec_hash,
            issued_spec_hash=o.status.issued.spec_hash,
            renewal_time=o.status.renewal_time,
            manual_trigger=_manual(o.status),
        ),
        now=o.now,
    )
    in_flight = journal is not None and journal.spec_hash == spec_hash
    if verdict is None and not in_flight:
        if journal is not None:
            return a.DropOrder(journal, "the certificate in the Secret is current")
        return _settle(o)
    if o.issuer.state is IssuerState.SERVER_DOWN:
        return a.WaitForServer(o.issuer.message)
    backoff = _backoff(o, spec_hash)
    if backoff is not None:
        return backoff
    verdict = verdict or Verdict(Reason.ISSUING, "Issuing certificate")
    if journal is not None and not journal_usable(
        journal, spec_hash=spec_hash, account_uri=o.issuer.account_uri, now=o.now
    ):
        return a.DropOrder(journal, _unusable(journal, spec_hash, o))
    if journal is None:
        return _start(o, verdict)
    return _order_step(o, journal)


# --- gates and settling -----------------------------------------------------------------------


def _gate(o: Observed) -> a.Action | None:
    if o.issuer.state is IssuerState.MISSING:
        return a.NotReady(Reason.ISSUER_NOT_FOUND, o.issuer.message, None)
    if o.issuer.state is IssuerState.NOT_READY:
        return a.NotReady(Reason.ISSUER_NOT_READY, o.issuer.message, None)
    if o.secret.conflict is not None:
        message = o.secret.conflict + " (acmebridge leaves the Secret untouched)"
        return a.NotReady(Reason.SECRET_CONFLICT, message, 120.0)
    return None


def _manual(status: CertificateStatus) -> bool:
    issuing = status.condition(ConditionType.ISSUING)
    return bool(
        issuing and issuing.status == "True" and issuing.reason == Reason.MANUALLY_TRIGGERED
    )


def _renewal_record(
    o: Observed, *, cert_id: str | None, previous: RenewalInfoRecord | None, seed: str
) -> RenewalInfoRecord | None:
    """The ARI record as this reconcile leaves it (refreshed, retried, capped or kept)."""
    cap = o.settings.ari_recheck_max
    if cert_id is None or not o.issuer.ari:
        return None
    if o.renewal_window is not None:
        return refreshed_record(
            previous, o.renewal_window, cert_id=cert_id, seed=seed, now=o.now, cap=cap
        )
    if o.renewal_fetched:
        return retried_record(previous, cert_id=cert_id, now=o.now, cap=cap)
    if previous is not None and previous.cert_id != cert_id:
        return None
    return capped(previous, now=o.now, cap=cap)


def _settle(o: Observed) -> a.Action:
    assert o.spec is not None and o.secret.leaf is not None  # the trigger checks guarantee it
    leaf = o.secret.leaf
    cert_id = o.secret.cert_id
    stored = o.status.renewal_info
    if (
        o.issuer.ari
        and o.issuer.state is IssuerState.READY
        and cert_id is not None
        and not o.renewal_fetched
        and renewal_info_due(stored, cert_id=cert_id, now=o.now, cap=o.settings.ari_recheck_max)
    ):
        return a.FetchRenewalInfo(cert_id)
    record = _renewal_record(o, cert_id=cert_id, previous=stored, seed=f"{o.uid}/{leaf.serial}")
    jitter_ = jitter(o.uid, leaf, o.status.issued.jitter_seconds)
    renewal = plan_renewal(leaf, o.spec, jitter_=jitter_, record=record, now=o.now)
    if renewal.guarded and record is not None:
        record = replace(record, guarded=True)
    wake = next_wake(
        renewal.renew_at, record, now=o.now, secret_check=o.settings.secret_check_interval
    )
    return a.Settle(
        leaf, o.spec.issuance_hash(), renewal.renew_at, jitter_, record, renewal.message, wake
    )


def _backoff(o: Observed, spec_hash: str) -> a.Action | None:
    st = o.status
    failure, failures, since = st.last_failure, st.failed_issuance_attempts, st.last_failure_time
    if not failures or failure is None or since is None or failure.spec_hash != spec_hash:
        return None
    issuing = st.condition(ConditionType.ISSUING)
    if _manual(st) and issuing is not None and issuing.last_transition_time > since:
        return None  # `acmebridge renew` after the failure: try now
    retry_after = (
        timedelta(seconds=failure.retry_after_seconds) if failure.retry_after_seconds else None
    )
    delay = backoff_delay(failures, cap=o.settings.backoff_cap, retry_after=retry_after, seed=o.uid)
    retry_at = since + delay
    if retry_at <= o.now:
        return None
    message = (
        f"Issuance failed {failures} time(s); retrying at {format_time(retry_at)}: "
        f"{failure.message}"
    )
    return a.BackOff(retry_at, message)


def _unusable(journal: OrderJournal, spec_hash: str, o: Observed) -> str:
    if journal.spec_hash != spec_hash:
        return "the Certificate's spec changed"
    if journal.account_uri != o.issuer.account_uri:
        return "the issuer's ACME account changed"
    if journal.finished:
        return f"the order is {journal.state}"
    return "the order expired"


# --- starting an order ------------------------------------------------------------------------


def _key_problem(o: Observed) -> a.Action | None:
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


def _start(o: Observed, verdict: Verdict) -> a.Action:
    problem = _key_problem(o)
    if problem is not None:
        return problem
    assert o.key is not None
    if o.key.existed and o.issuer.can_list_orders and not o.recovery_searched:
        return a.RecoverOrder()
    record = o.status.renewal_info
    renewing = usable(o.secret) and o.secret.cert_id is not None
    # RFC 9773 §5: name the certificate this order replaces, so the CA can link the two.
    replaces = (
        record.cert_id
        if renewing and record is not None and record.cert_id == o.secret.cert_id
        else None
    )
    return a.NewOrder(verdict.reason, verdict.message, replaces)


# --- working an order -------------------------------------------------------------------------


def _order_step(o: Observed, j: OrderJournal) -> a.Action:
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
            _poll_delay(waited, view.retry_after, o.settings),
            Reason.FINALIZING,
            f"Sent the CSR; the order is {state}",
            waited >= VISIBLE_AFTER,
        )
    if state == OrderState.READY:
        return _key_problem(o) or a.Finalize()
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
        if o.order is None:
            return a.FetchOrder()
        waited = o.now - (answered or o.now)
        message = "The ACME server is validating"
        if waiting:
            message += "; " + "; ".join(waiting)
        return a.Wait(
            _poll_delay(waited, o.order.retry_after, o.settings),
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
        hint = " (a wildcard needs a dns01 solver)" if info.wildcard else ""
        return _spec_failure(
            Reason.NO_SOLVER,
            f"no solver of the issuer matches {info.identifier}{hint}; add one to "
            "spec.acme.solvers or fix its selector",
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


def _poll_delay(waited: timedelta, retry_after: timedelta | None, s: Settings) -> float:
    """Half the time waited so far, from half a second up to the cap; Retry-After wins."""
    delay = min(max(POLL_FIRST, waited.total_seconds() / 2), s.order_poll_max.total_seconds())
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
                _poll_delay(waited, view.retry_after, o.settings),
                Reason.FINALIZING,
                "The order is valid; waiting for the CA to name its certificate",
                waited >= VISIBLE_AFTER,
            )
        return a.Download()
    if not o.cleaned:
        return a.CleanupIssuance()
    w = o.written
    previous = o.status.renewal_info
    if (
        o.issuer.ari
        and w.cert_id is not None
        and not o.renewal_fetched
        and o.issuer.state is IssuerState.READY
    ):
        return a.FetchRenewalInfo(w.cert_id)
    assert o.spec is not None
    record = _renewal_record(o, cert_id=w.cert_id, previous=None, seed=f"{o.uid}/{w.leaf.serial}")
    if record is not None:
        record = replace(record, early_renewals=early_renewals_after(previous, renewed_at=o.now))
    jitter_ = jitter(o.uid, w.leaf, o.status.issued.jitter_seconds)
    renewal = plan_renewal(w.leaf, o.spec, jitter_=jitter_, record=record, now=o.now)
    if renewal.guarded and record is not None:
        record = replace(record, guarded=True)
    issued = Issued(
        spec_hash=o.spec.issuance_hash(),
        serial=w.leaf.serial,
        ca_source=w.ca_source,
        ca_omitted_reason=w.ca_omitted_reason,
        jitter_seconds=int(jitter_.total_seconds()),
    )
    wake = next_wake(
        renewal.renew_at, record, now=o.now, secret_check=o.settings.secret_check_interval
    )
    return a.Finish(
        w.leaf,
        issued,
        renewal.renew_at,
        record,
        renewal.message,
        wake,
        renewing=o.status.issued.serial is not None or o.status.revision > 0,
    )


def urgency(action: a.Terminal) -> int:
    """Pure: how soon the work queue should serve this Certificate's next run when many are due
    (0 first): an order the CA is validating or finalizing, then one waiting on its solver, then
    everything else (new orders among them), so a burst of certificates streams out."""
    if isinstance(action, a.Wait):
        if action.reason in (Reason.VALIDATING, Reason.FINALIZING):
            return 0
        return 1
    return 2


def ready_condition_changed(previous: Condition | None, reason: str, generation: int) -> bool:
    """Whether Ready=True with ``reason`` would be news (so worth a write and an Event)."""
    return (
        previous is None
        or previous.status != "True"
        or previous.reason != reason
        or previous.observed_generation != generation
    )
