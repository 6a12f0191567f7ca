"""The Certificate's step planner (domain/plan.py): every decision the reconciler acts on.

Each case is an observed state and the step it must lead to, named by the rule it shows.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acmebridge.domain import actions as a
from acmebridge.domain.assess import SecretView
from acmebridge.domain.conditions import Condition, set_condition
from acmebridge.domain.failures import ChallengeOutcome
from acmebridge.domain.issuer_spec import Http01IngressSolver, Rfc2136Solver, Solver, SolverSelector
from acmebridge.domain.journal import AuthorizationRecord, ChallengeRecord, OrderJournal
from acmebridge.domain.match import CertSummary
from acmebridge.domain.observed import (
    AuthzView,
    CheckResult,
    IssuerState,
    IssuerView,
    KeyView,
    Observed,
    OfferedChallenge,
    OrderView,
    Settings,
    Written,
)
from acmebridge.domain.plan import plan, ready_condition_changed, urgency
from acmebridge.domain.reasons import Reason
from acmebridge.domain.renewal import RenewalWindow
from acmebridge.domain.secret import Ownership
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.status import CertificateStatus, Issued, LastFailure, RenewalInfoRecord
from acmebridge.domain.trigger import SecretState

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SPEC = CertificateSpec.from_body(
    {"secretName": "web-tls", "issuerRef": {"name": "ca"}, "dnsNames": ["web.example"]}
)
HASH = SPEC.issuance_hash()
HTTP = Solver(http01=Http01IngressSolver(ingress_class_name="nginx"))
DNS = Solver(dns01=Rfc2136Solver(nameserver="10.0.0.53:53"))
ISSUER = IssuerView(IssuerState.READY, account_uri="acct", solvers=(HTTP,))
ISSUED = NOW - timedelta(days=10)
LEAF = CertSummary(
    common_name=None,
    dns_names=("web.example",),
    ip_addresses=(),
    uris=(),
    email_addresses=(),
    not_before=ISSUED,
    not_after=ISSUED + timedelta(days=90),
    serial="0a",
    issuer_common_name="CA",
    public_key_fingerprint="fp",
    key_algorithm="ECDSA",
    key_size=256,
)
GOOD = SecretView(
    Ownership.OURS,
    SecretState(
        exists=True,
        has_cert=True,
        has_key=True,
        key_matches_cert=True,
        key_matches_spec=True,
        not_after=LEAF.not_after,
    ),
    leaf=LEAF,
    cert_id="aki.0a",
)
NONE = SecretView(Ownership.ABSENT, SecretState(exists=False))
CURRENT = CertificateStatus(
    issued=Issued(spec_hash=HASH, serial="0a", jitter_seconds=0),
    renewal_time=ISSUED + timedelta(days=60),
    revision=1,
)
KEY = KeyView(present=True, existed=False)
AUTHZ = "https://ca/authz/1"
CHALLENGE = ChallengeRecord(type="http-01", url="https://ca/chall/1", token="tok", solver_index=0)


def observed(**kw: Any) -> Observed:
    base: dict[str, Any] = {
        "now": NOW,
        "uid": "uid-1",
        "generation": 1,
        "labels": {},
        "spec": SPEC,
        "spec_error": "",
        "status": CURRENT,
        "issuer": ISSUER,
        "secret": GOOD,
    }
    base.update(kw)
    return Observed(**base)


def journal(*authorizations: AuthorizationRecord, **kw: Any) -> OrderJournal:
    base: dict[str, Any] = {
        "url": "https://ca/order/1",
        "state": "pending",
        "spec_hash": HASH,
        "revision": 1,
        "account_uri": "acct",
        "created": NOW - timedelta(seconds=10),
        "authorizations": authorizations
        or (AuthorizationRecord(url=AUTHZ, identifier="web.example"),),
    }
    base.update(kw)
    return OrderJournal(**base)


def with_challenge(**kw: Any) -> AuthorizationRecord:
    return AuthorizationRecord(
        url=AUTHZ, identifier="web.example", challenge=replace(CHALLENGE, **kw)
    )


def issuing(j: OrderJournal, **kw: Any) -> Observed:
    """An issuance under way: no Secret yet, the journal ``j``, the key loaded."""
    status = CertificateStatus(order=j, issuing_since=NOW - timedelta(seconds=10))
    return observed(secret=NONE, status=status, key=KeyView(present=True, existed=True), **kw)


def record(selected: datetime, *, start: datetime | None = None, **kw: Any) -> RenewalInfoRecord:
    start = start or selected - timedelta(hours=1)
    return RenewalInfoRecord(
        cert_id="aki.0a",
        window_start=start,
        window_end=start + timedelta(days=1),
        selected_time=selected,
        recheck_at=NOW + timedelta(hours=6),
        **kw,
    )


ARI = replace(ISSUER, ari=True)
PRESENTED = NOW - timedelta(seconds=1)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # --- gates: someone else must act first ---
        pytest.param(
            observed(spec=None, spec_error="spec.dnsNames: required"),
            a.NotReady(Reason.INVALID_SPEC, "spec.dnsNames: required", None),
            id="an invalid spec is reported and nothing else happens",
        ),
        pytest.param(
            observed(issuer=IssuerView(IssuerState.MISSING, "Issuer 'ca' does not exist")),
            a.NotReady(Reason.ISSUER_NOT_FOUND, "Issuer 'ca' does not exist", None),
            id="a missing issuer is named",
        ),
        pytest.param(
            observed(issuer=IssuerView(IssuerState.NOT_READY, "not ready yet")),
            a.NotReady(Reason.ISSUER_NOT_READY, "not ready yet", None),
            id="an issuer that is not ready holds the certificate back",
        ),
        pytest.param(
            observed(secret=SecretView(Ownership.FOREIGN, SecretState(True), conflict="theirs")),
            a.NotReady(
                Reason.SECRET_CONFLICT, "theirs (acmebridge leaves the Secret untouched)", 120.0
            ),
            id="a Secret that is not ours is left alone and looked at again later",
        ),
        # --- starting an issuance ---
        pytest.param(
            observed(secret=NONE, status=CertificateStatus()),
            a.EnsureKey(),
            id="a new certificate starts by making its pending key",
        ),
        pytest.param(
            observed(secret=NONE, status=CertificateStatus(), key=KEY),
            a.NewOrder(Reason.DOES_NOT_EXIST, "Issuing certificate as Secret does not exist", None),
            id="with a fresh key it orders at once",
        ),
        pytest.param(
            observed(
                secret=NONE,
                status=CertificateStatus(),
                key=KeyView(present=True, existed=True),
                issuer=replace(ISSUER, can_list_orders=True),
            ),
            a.RecoverOrder(),
            id="a key that was there already means an order may exist: look for it first",
        ),
        pytest.param(
            observed(
                secret=NONE,
                status=CertificateStatus(),
                key=KeyView(present=True, existed=True),
                issuer=replace(ISSUER, can_list_orders=True),
                recovery_searched=True,
            ),
            a.NewOrder(Reason.DOES_NOT_EXIST, "Issuing certificate as Secret does not exist", None),
            id="and orders when none was found",
        ),
        pytest.param(
            observed(
                secret=NONE, status=CertificateStatus(), key=KeyView(False, conflict="not ours")
            ),
            a.Fail("pendingKeyConflict", Reason.PENDING_KEY_CONFLICT, "not ours", True),
            id="a pending-key Secret that is not ours fails the attempt",
        ),
        pytest.param(
            observed(
                status=replace(CURRENT, renewal_time=NOW, renewal_info=record(NOW)),
                key=KEY,
                issuer=ARI,
            ),
            a.NewOrder(
                Reason.RENEWING,
                "Renewing certificate as renewal was scheduled at 2026-06-01T12:00:00Z",
                "aki.0a",
            ),
            id="a renewal names the certificate it replaces",
        ),
        pytest.param(
            observed(
                secret=NONE,
                status=CertificateStatus(),
                issuer=replace(ISSUER, state=IssuerState.SERVER_DOWN, message="down"),
            ),
            a.WaitForServer("down"),
            id="while the ACME server is down it waits without counting a failure",
        ),
        # --- settling ---
        pytest.param(
            observed(issuer=ARI),
            a.FetchRenewalInfo("aki.0a"),
            id="a current certificate asks the CA for renewal info first when it offers it",
        ),
        pytest.param(
            observed(issuer=replace(ARI, state=IssuerState.SERVER_DOWN)),
            "settle",
            id="but not while the CA is down",
        ),
        pytest.param(
            observed(status=replace(CURRENT, order=journal(spec_hash="old"))),
            "drop",
            id="a leftover order with nothing to issue is dropped",
        ),
    ],
)
def test_plan(given: Observed, expected: a.Action | str) -> None:
    got = plan(given)
    if expected == "settle":
        assert isinstance(got, a.Settle), got
    elif expected == "drop":
        assert isinstance(got, a.DropOrder), got
    else:
        assert got == expected


def _failed(**kw: Any) -> CertificateStatus:
    base = CertificateStatus(
        failed_issuance_attempts=1,
        last_failure_time=NOW - timedelta(seconds=30),
        last_failure=LastFailure("connection", "refused", HASH),
    )
    return replace(base, **kw)


def _manual(after: datetime) -> tuple[dict[str, Any], ...]:
    cond = Condition("Issuing", "True", Reason.MANUALLY_TRIGGERED, "renew", 1, after)
    return tuple(set_condition([], cond))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(_failed(), a.BackOff, id="a failed spec waits out its backoff"),
        pytest.param(
            _failed(last_failure_time=NOW - timedelta(hours=2)),
            a.EnsureKey,
            id="and tries again once it is over",
        ),
        pytest.param(
            _failed(last_failure=LastFailure("connection", "refused", "another spec")),
            a.EnsureKey,
            id="a changed spec is tried at once",
        ),
        pytest.param(
            _failed(conditions=_manual(NOW - timedelta(seconds=5))),
            a.EnsureKey,
            id="a manual renew after the failure skips the backoff",
        ),
        pytest.param(
            _failed(
                last_failure=LastFailure("rateLimited", "slow down", HASH, 7200),
                last_failure_time=NOW - timedelta(hours=1),
            ),
            a.BackOff,
            id="a CA's Retry-After is waited out even beyond the cap",
        ),
    ],
)
def test_backoff(status: CertificateStatus, expected: type[a.Action]) -> None:
    assert isinstance(plan(observed(secret=NONE, status=status)), expected)


# --- working an order -------------------------------------------------------------------------


def info(
    *,
    status: str = "pending",
    types: tuple[str, ...] = ("http-01",),
    wildcard: bool = False,
    identifier: str = "web.example",
) -> AuthzView:
    return AuthzView(
        status=status,
        identifier_type="dns",
        identifier=identifier,
        wildcard=wildcard,
        challenges=tuple(
            OfferedChallenge(t, f"https://ca/chall/{t}", "tok", "pending") for t in types
        ),
    )


def test_an_authorization_not_yet_read_is_read() -> None:
    assert plan(issuing(journal())) == a.FetchAuthorization(AUTHZ)


def test_a_read_authorization_gets_the_challenge_of_the_chosen_solver() -> None:
    got = plan(issuing(journal(), authorizations={AUTHZ: info(types=("dns-01", "http-01"))}))
    assert isinstance(got, a.RecordAuthorization)
    ch = got.authorization.challenge
    assert ch is not None and ch.type == "http-01" and ch.url.endswith("/http-01")


def test_an_authorization_the_ca_already_validated_is_recorded_without_a_challenge() -> None:
    got = plan(issuing(journal(), authorizations={AUTHZ: info(status="valid")}))
    assert got == a.RecordAuthorization(
        AuthorizationRecord(url=AUTHZ, identifier="web.example", state="valid")
    )


@pytest.mark.parametrize(
    ("solvers", "view", "dns01", "reason", "words"),
    [
        pytest.param(
            (HTTP,),
            info(wildcard=True, identifier="*.example"),
            True,
            "noSolver",
            "a wildcard needs a dns01 solver",
            id="a wildcard never takes an http01 solver and says why",
        ),
        pytest.param(
            (DNS,),
            info(types=("dns-01",)),
            False,
            "solverNotSupported",
            "dns01",
            id="a dns01 solver is refused while DNS-01 cannot be solved",
        ),
        pytest.param(
            (HTTP,),
            info(types=("tls-alpn-01",)),
            True,
            "unsupportedIdentifier",
            "offers no http-01 challenge",
            id="a CA that offers no challenge of the solver's type is named",
        ),
        pytest.param(
            (Solver(http01=Http01IngressSolver(name="existing")),),
            info(),
            True,
            "solverNotSupported",
            "http01.ingress.name",
            id="editing an existing Ingress is refused with what to use instead",
        ),
    ],
)
def test_no_usable_challenge_fails_with_a_reason(
    solvers: tuple[Solver, ...], view: AuthzView, dns01: bool, reason: str, words: str
) -> None:
    given = issuing(
        journal(),
        authorizations={AUTHZ: view},
        issuer=replace(ISSUER, solvers=solvers),
        settings=Settings(dns01_supported=dns01),
    )
    got = plan(given)
    assert isinstance(got, a.Fail) and got.permanent and got.reason == reason, got
    assert words in got.message


@pytest.mark.parametrize(
    ("rec", "checks", "expected"),
    [
        pytest.param(with_challenge(), {}, a.Present(AUTHZ), id="a chosen challenge is presented"),
        pytest.param(
            with_challenge(presented_at=PRESENTED),
            {},
            a.SelfCheck(AUTHZ, inspect=False),
            id="a presented challenge is checked the way the CA will",
        ),
        pytest.param(
            with_challenge(presented_at=NOW - timedelta(seconds=6)),
            {},
            a.SelfCheck(AUTHZ, inspect=True),
            id="a slow self check also looks at the solver Pod",
        ),
        pytest.param(
            with_challenge(presented_at=PRESENTED),
            {AUTHZ: CheckResult(True)},
            a.Answer(AUTHZ),
            id="a passing self check is answered",
        ),
        pytest.param(
            with_challenge(presented_at=PRESENTED),
            {AUTHZ: CheckResult(False, "gone", solver_missing=True)},
            a.Present(AUTHZ),
            id="a solver that is gone is presented again",
        ),
        pytest.param(
            with_challenge(presented_at=PRESENTED),
            {AUTHZ: CheckResult(False, "HTTP 404")},
            a.Wait(
                0.5,
                Reason.WAITING_FOR_SELF_CHECK,
                "Waiting for the self check: web.example: HTTP 404",
                visible=False,
            ),
            id="nothing answered: it waits on the solver and asks the CA nothing",
        ),
        pytest.param(
            with_challenge(presented_at=NOW - timedelta(seconds=60)),
            {AUTHZ: CheckResult(False, "HTTP 404")},
            a.Wait(
                10.0,
                Reason.WAITING_FOR_SELF_CHECK,
                "Waiting for the self check: web.example: HTTP 404",
                visible=True,
            ),
            id="a long wait checks at most every ten seconds and is written",
        ),
        pytest.param(
            with_challenge(presented_at=PRESENTED, answered_at=NOW),
            {},
            a.FetchOrder(),
            id="once answered, the CA is asked how the order is",
        ),
    ],
)
def test_challenge_steps(
    rec: AuthorizationRecord, checks: dict[str, CheckResult], expected: a.Action
) -> None:
    assert plan(issuing(journal(rec), checks=checks)) == expected


@pytest.mark.parametrize(
    ("just_answered", "expected"),
    [
        pytest.param(
            True,
            a.Wait(0.25, Reason.VALIDATING, "The ACME server is validating", visible=False),
            id="a challenge the CA is still validating waits before asking: it would say pending",
        ),
        pytest.param(
            False,
            a.FetchOrder(),
            id="answered before this reconcile, or validated at once: the order is read at once",
        ),
    ],
)
def test_first_poll_after_answering(just_answered: bool, expected: a.Action) -> None:
    rec = with_challenge(presented_at=PRESENTED, answered_at=NOW)
    assert plan(issuing(journal(rec), just_answered=just_answered)) == expected


ANSWERED = with_challenge(presented_at=PRESENTED, answered_at=NOW - timedelta(seconds=8))


@pytest.mark.parametrize(
    ("order", "answered_ago", "poll_max", "delay"),
    [
        pytest.param(
            OrderView("pending"), 8, 10, 4.0, id="validating: poll at half the time waited"
        ),
        pytest.param(
            OrderView("pending"), 0.3, 10, 0.5, id="at least half a second after the first poll"
        ),
        pytest.param(OrderView("pending"), 8, 2, 2.0, id="up to the configured cap"),
        pytest.param(
            OrderView("pending", retry_after=timedelta(seconds=30)),
            8,
            10,
            30.0,
            id="a Retry-After wins",
        ),
    ],
)
def test_polling_after_answering(
    order: OrderView, answered_ago: float, poll_max: int, delay: float
) -> None:
    rec = with_challenge(presented_at=PRESENTED, answered_at=NOW - timedelta(seconds=answered_ago))
    got = plan(
        issuing(
            journal(rec),
            order=order,
            settings=Settings(order_poll_max=timedelta(seconds=poll_max)),
        )
    )
    assert isinstance(got, a.Wait) and got.reason == Reason.VALIDATING and got.delay == delay


@pytest.mark.parametrize(
    ("finalized_ago", "delay"),
    [
        pytest.param(0, 0.25, id="finalized in this reconcile: the first poll comes soon"),
        pytest.param(0.3, 0.5, id="then at least half a second apart"),
        pytest.param(6, 3.0, id="then at half the time waited"),
    ],
)
def test_polling_after_finalizing(finalized_ago: float, delay: float) -> None:
    j = journal(ANSWERED, state="processing", finalized_at=NOW - timedelta(seconds=finalized_ago))
    got = plan(issuing(j, order=OrderView("processing")))
    assert isinstance(got, a.Wait) and got.reason == Reason.FINALIZING and got.delay == delay


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            issuing(journal(ANSWERED), order=OrderView("ready")),
            a.Finalize(),
            id="a ready order is finalized",
        ),
        pytest.param(
            replace(issuing(journal(ANSWERED), order=OrderView("ready")), key=None),
            a.EnsureKey(),
            id="with the pending key loaded first",
        ),
        pytest.param(
            issuing(journal(ANSWERED, state="processing", finalized_at=NOW)),
            a.FetchOrder(),
            id="a finalized order is read again",
        ),
        pytest.param(
            issuing(journal(ANSWERED), order=OrderView("valid", certificate_url="https://ca/c")),
            a.Download(),
            id="a valid order is downloaded",
        ),
        pytest.param(
            issuing(journal(ANSWERED), order=OrderView("invalid")),
            a.ExplainFailure(),
            id="an invalid order is explained first",
        ),
    ],
)
def test_order_steps(given: Observed, expected: a.Action) -> None:
    assert plan(given) == expected


@pytest.mark.parametrize(
    ("outcome", "reason", "message"),
    [
        pytest.param(
            ChallengeOutcome(
                "web.example",
                "invalid",
                "http-01",
                "urn:ietf:params:acme:error:connection",
                "refused",
            ),
            "connection",
            "http-01 challenge for web.example failed: refused "
            "(urn:ietf:params:acme:error:connection)",
            id="the CA's error is quoted with its type",
        ),
        pytest.param(
            ChallengeOutcome(
                "web.example",
                "invalid",
                "http-01",
                validation_record=({"url": "http://web.example/x", "addressUsed": "10.0.0.1"},),
            ),
            "unspecified",
            "the CA marked the http-01 challenge for web.example invalid and gave no reason; "
            "the CA's validation record: fetched http://web.example/x, address 10.0.0.1",
            id="without an error the CA's silence is said, with its validation record",
        ),
    ],
)
def test_a_failed_order_fails_in_the_cas_own_words(
    outcome: ChallengeOutcome, reason: str, message: str
) -> None:
    got = plan(issuing(journal(ANSWERED), order=OrderView("invalid"), outcomes=(outcome,)))
    assert got == a.Fail(reason, Reason.FAILED, message, permanent=True)


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(
            issuing(journal(ANSWERED, state="invalid")), id="an order journaled as invalid"
        ),
        pytest.param(
            issuing(journal(ANSWERED), order=OrderView("invalid")), id="an order just read invalid"
        ),
        pytest.param(
            issuing(journal(ANSWERED, state="invalid", expires=NOW - timedelta(hours=1))),
            id="an invalid order that has expired since",
        ),
    ],
)
def test_an_invalid_order_is_explained_and_counted_never_silently_replaced(given: Observed) -> None:
    # Dropping it for a new order would skip the failure count and its backoff: an order storm.
    assert plan(given) == a.ExplainFailure()
    explained = replace(given, outcomes=(ChallengeOutcome("web.example", "invalid"),))
    got = plan(explained)
    assert isinstance(got, a.Fail) and got.permanent, got


def test_a_valid_order_is_written_cleaned_up_and_finished() -> None:
    valid = issuing(journal(ANSWERED), order=OrderView("valid", certificate_url="https://ca/c"))
    written = Written(
        replace(LEAF, not_before=NOW, not_after=NOW + timedelta(days=90)), "aki.0b", "aia", None
    )
    assert plan(replace(valid, written=written)) == a.CleanupIssuance()
    done = plan(replace(valid, written=written, cleaned=True))
    assert isinstance(done, a.Finish)
    assert done.issued == Issued(HASH, "0a", "aia", None, done.issued.jitter_seconds)
    assert done.renew_at == NOW + timedelta(days=60) - timedelta(
        seconds=done.issued.jitter_seconds or 0
    )
    assert not done.renewing
    with_ari = replace(valid, written=written, cleaned=True, issuer=ARI)
    assert plan(with_ari) == a.FetchRenewalInfo("aki.0b")


# --- renewal with the CA's window -------------------------------------------------------------


def settle(status: CertificateStatus, window: RenewalWindow | None, **kw: Any) -> a.Settle:
    got = plan(
        observed(status=status, issuer=ARI, renewal_window=window, renewal_fetched=True, **kw)
    )
    assert isinstance(got, a.Settle), got
    return got


def test_with_a_window_renewal_is_inside_it_not_at_two_thirds() -> None:
    start = ISSUED + timedelta(days=70)
    got = settle(CURRENT, RenewalWindow(start, start + timedelta(days=2)))
    assert got.renewal_info is not None
    assert start <= got.renew_at < start + timedelta(days=2)
    assert got.renew_at == got.renewal_info.selected_time


def test_an_explicit_renew_before_still_caps_the_window() -> None:
    spec = CertificateSpec.from_body(
        {
            "secretName": "web-tls",
            "issuerRef": {"name": "ca"},
            "dnsNames": ["web.example"],
            "renewBefore": "720h",
        }
    )
    start = ISSUED + timedelta(days=70)
    got = settle(
        replace(CURRENT, issued=replace(CURRENT.issued, spec_hash=spec.issuance_hash())),
        RenewalWindow(start, start + timedelta(days=2)),
        spec=spec,
    )
    assert got.renew_at == ISSUED + timedelta(days=60)


YOUNG = replace(
    LEAF, not_before=NOW - timedelta(hours=1), not_after=NOW - timedelta(hours=1) + timedelta(90)
)


def test_a_window_in_the_past_for_a_young_certificate_is_held_back() -> None:
    young = YOUNG
    secret = replace(GOOD, leaf=young)
    past = RenewalWindow(NOW - timedelta(days=2), NOW - timedelta(days=1))
    got = settle(CURRENT, past, secret=secret)
    assert got.guard_message is not None and "held back" in got.guard_message
    assert got.renewal_info is not None and got.renewal_info.guarded
    # 10% of a 90-day lifetime.
    assert got.renew_at == young.not_before + timedelta(days=9)


@pytest.mark.parametrize(
    ("in_a_row", "held"),
    [
        pytest.param(1, timedelta(days=18), id="the hold-off doubles with a forced renewal"),
        pytest.param(2, timedelta(days=36), id="and again with the next"),
        pytest.param(3, timedelta(days=60), id="but never past the default two-thirds point"),
    ],
)
def test_the_hold_back_doubles_with_each_forced_renewal_in_a_row(
    in_a_row: int, held: timedelta
) -> None:
    stored = record(NOW - timedelta(days=2), early_renewals=in_a_row)
    got = settle(
        replace(CURRENT, renewal_info=stored),
        RenewalWindow(stored.window_start, stored.window_end),
        secret=replace(GOOD, leaf=YOUNG),
    )
    assert got.renew_at == YOUNG.not_before + held


def test_a_window_in_the_past_for_an_old_certificate_means_renew_now() -> None:
    past = RenewalWindow(NOW - timedelta(days=2), NOW - timedelta(days=1))
    got = settle(CURRENT, past)
    assert got.guard_message is None and got.renew_at < NOW


def test_a_recheck_beyond_the_current_cap_is_brought_in() -> None:
    far = replace(record(NOW + timedelta(days=50)), recheck_at=NOW + timedelta(days=1))
    got = plan(
        observed(
            status=replace(CURRENT, renewal_info=far),
            issuer=ARI,
            settings=Settings(ari_recheck_max=timedelta(hours=2)),
        )
    )
    # A lower --ari-recheck-max applies to the time already in status: the next check is at
    # most two hours away, written back so it does not move again.
    assert isinstance(got, a.Settle) and got.renewal_info is not None
    assert got.renewal_info.recheck_at == NOW + timedelta(hours=2)
    assert got.wake == 3600  # the hourly read of the Secret comes sooner


# --- properties -------------------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))
states = st.sampled_from(["pending", "ready", "processing", "valid", "invalid", "expired"])


@settings(max_examples=300, deadline=None)
@given(
    order_state=states,
    authz_state=states,
    presented=st.none() | moments,
    answered=st.none() | moments,
    view=st.none() | states,
    check=st.none() | st.booleans(),
    key=st.none() | st.booleans(),
    now=moments,
)
def test_every_observed_state_leads_to_a_step(
    order_state: str,
    authz_state: str,
    presented: datetime | None,
    answered: datetime | None,
    view: str | None,
    check: bool | None,
    key: bool | None,
    now: datetime,
) -> None:
    rec = AuthorizationRecord(
        url=AUTHZ,
        identifier="web.example",
        state=authz_state,
        challenge=replace(CHALLENGE, presented_at=presented, answered_at=answered),
    )
    given = issuing(
        journal(rec, state=order_state, created=now - timedelta(minutes=1)),
        now=now,
        order=OrderView(view) if view else None,
        checks={AUTHZ: CheckResult(check)} if check is not None else {},
    )
    given = replace(given, key=None if key is None else KeyView(present=key, existed=key))
    got = plan(given)
    assert isinstance(got, a.Action)
    if isinstance(got, a.Wait):
        assert 0.25 <= got.delay <= 3600  # never spinning: POLL_SOON is the shortest wait
    # The CA is never asked about an order before one of its challenges was answered, unless
    # it already said the order moved on; and never twice in one reconcile (no spinning).
    if isinstance(got, a.FetchOrder):
        assert view is None
        assert answered is not None or authz_state == "valid" or order_state != "pending"


@pytest.mark.parametrize(
    ("j", "why"),
    [
        pytest.param(journal(spec_hash="old"), "spec changed", id="an order for an older spec"),
        pytest.param(journal(account_uri="other"), "account changed", id="another account's"),
        pytest.param(journal(expires=NOW - timedelta(1)), "expired", id="an expired order"),
    ],
)
def test_an_unusable_order_is_dropped_saying_why(j: OrderJournal, why: str) -> None:
    got = plan(issuing(j))
    assert isinstance(got, a.DropOrder) and why in got.why, got


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param(a.Wait(1, Reason.VALIDATING, "", False), 0, id="an order being validated"),
        pytest.param(a.Wait(1, Reason.FINALIZING, "", False), 0, id="an order being finalized"),
        pytest.param(a.Wait(1, Reason.WAITING_FOR_SELF_CHECK, "", False), 1, id="a solver"),
        pytest.param(a.NotReady(Reason.ISSUER_NOT_FOUND, "", None), 2, id="everything else"),
    ],
)
def test_work_further_along_is_more_urgent(action: a.Terminal, expected: int) -> None:
    assert urgency(action) == expected


@pytest.mark.parametrize(
    ("previous", "news"),
    [
        pytest.param(None, True, id="no Ready condition yet"),
        pytest.param(Condition("Ready", "False", "Issuing", "", 1, NOW), True, id="not ready"),
        pytest.param(Condition("Ready", "True", "Ready", "", 0, NOW), True, id="older generation"),
        pytest.param(Condition("Ready", "True", "Ready", "", 1, NOW), False, id="the same"),
    ],
)
def test_ready_news(previous: Condition | None, news: bool) -> None:
    assert ready_condition_changed(previous, "Ready", 1) is news


def test_a_ca_that_does_not_answer_keeps_what_it_said_and_asks_again_later() -> None:
    kept = record(NOW + timedelta(days=50))
    got = settle(replace(CURRENT, renewal_info=kept), None)
    assert got.renewal_info == replace(kept, recheck_at=NOW + timedelta(hours=6))


def test_renewal_info_of_another_certificate_is_not_used() -> None:
    other = replace(record(NOW + timedelta(days=1)), cert_id="another")
    got = plan(
        observed(status=replace(CURRENT, renewal_info=other), issuer=ARI, renewal_fetched=True)
    )
    assert isinstance(got, a.Settle) and got.renewal_info is None


def test_a_renewal_the_ca_forced_counts_for_the_next_certificate() -> None:
    forced = record(NOW - timedelta(hours=3), guarded=True, early_renewals=1)
    valid = issuing(journal(ANSWERED), order=OrderView("valid", certificate_url="https://ca/c"))
    written = Written(
        replace(LEAF, not_before=NOW, not_after=NOW + timedelta(days=90)), "aki.0b", "aia", None
    )
    given = replace(
        valid,
        status=replace(valid.status, renewal_info=forced),
        written=written,
        cleaned=True,
        issuer=ARI,
        renewal_window=RenewalWindow(NOW - timedelta(days=2), NOW - timedelta(days=1)),
        renewal_fetched=True,
    )
    got = plan(given)
    assert isinstance(got, a.Finish) and got.renewal_info is not None
    # Two in a row now: the new certificate is held back four floors (36 days of 90).
    assert got.renewal_info.early_renewals == 2 and got.renewal_info.guarded
    assert got.renew_at == NOW + timedelta(days=36)
    assert got.guard_message and "held back" in got.guard_message


def _spec(**kw: Any) -> CertificateSpec:
    return CertificateSpec.from_body({"secretName": "web-tls", "issuerRef": {"name": "ca"}, **kw})


ZONED = Solver(
    selector=SolverSelector(dns_zones=("shop.example",)),
    http01=Http01IngressSolver(ingress_class_name="nginx"),
)


@pytest.mark.parametrize(
    ("spec", "solvers", "reason", "words"),
    [
        pytest.param(
            _spec(dnsNames=["web.shop.svc.cluster.local"]),
            (HTTP,),
            "nameNotValidatable",
            "'web.shop.svc.cluster.local' is a cluster-internal name",
            id="a cluster-internal name is refused before any order, with what would work",
        ),
        pytest.param(
            _spec(dnsNames=["web.example", "web.shop.svc.k8s.corp"]),
            (HTTP,),
            "nameNotValidatable",
            "'web.shop.svc.k8s.corp' is a cluster-internal name",
            id="the operator's --cluster-domain counts too",
        ),
        pytest.param(
            _spec(dnsNames=["*.shop.example"]),
            (HTTP,),
            "noSolver",
            "no solver of the issuer matches *.shop.example (a wildcard needs a dns01 solver",
            id="a wildcard with only HTTP-01 solvers fails before any order",
        ),
        pytest.param(
            _spec(dnsNames=["web.other.example"]),
            (ZONED,),
            "noSolver",
            "no solver of the issuer matches web.other.example",
            id="a name no solver's selector takes fails before any order",
        ),
        pytest.param(
            _spec(ipAddresses=["10.0.0.7"]),
            (DNS,),
            "noSolver",
            "no solver of the issuer matches 10.0.0.7",
            id="an IP address with only DNS-01 solvers fails before any order",
        ),
    ],
)
def test_names_no_challenge_can_prove_cost_no_order(
    spec: CertificateSpec, solvers: tuple[Solver, ...], reason: str, words: str
) -> None:
    given = observed(
        spec=spec,
        secret=NONE,
        status=CertificateStatus(),
        key=KEY,
        issuer=replace(ISSUER, solvers=solvers),
        settings=Settings(dns01_supported=True, cluster_domain="k8s.corp"),
    )
    got = plan(given)
    assert isinstance(got, a.Fail) and got.permanent and got.reason == reason, got
    assert got.condition_reason == reason[:1].upper() + reason[1:]
    assert words in got.message


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(_spec(dnsNames=["app.corp.local"]), id="an Active Directory .local name"),
        pytest.param(_spec(ipAddresses=["127.0.0.1"]), id="a loopback address, the CA's to judge"),
        pytest.param(
            _spec(dnsNames=["*.shop.example", "shop.example"]), id="a wildcard in a DNS-01 zone"
        ),
    ],
)
def test_names_a_ca_may_validate_are_ordered(spec: CertificateSpec) -> None:
    zone = Solver(selector=SolverSelector(dns_zones=("shop.example",)), dns01=DNS.dns01)
    given = observed(
        spec=spec,
        secret=NONE,
        status=CertificateStatus(),
        key=KEY,
        issuer=replace(ISSUER, solvers=(HTTP, zone)),
        settings=Settings(dns01_supported=True),
    )
    assert isinstance(plan(given), a.NewOrder), plan(given)
