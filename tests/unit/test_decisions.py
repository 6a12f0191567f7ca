"""The pure decisions of the issuance flow: trigger checks, the order journal, solver selection,
solver manifests and the allow-list (the step planner has its own tests: test_plan.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from acmebridge.domain.allowlist import server_allowed
from acmebridge.domain.issuer_spec import (
    Http01IngressSolver,
    Rfc2136Solver,
    Solver,
    SolverSelector,
)
from acmebridge.domain.journal import (
    AuthorizationRecord,
    ChallengeRecord,
    OrderJournal,
    journal_usable,
)
from acmebridge.domain.solvers import (
    CHALLENGE_LABEL,
    SOLVER_LABEL,
    http01_objects,
    object_name,
    owned_by_pod,
    pod_ready,
    select_solver,
)
from acmebridge.domain.trigger import SecretState, TriggerInputs, evaluate
from acmebridge.solver import answer

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GOOD = SecretState(
    exists=True,
    has_cert=True,
    has_key=True,
    key_matches_cert=True,
    key_matches_spec=True,
    not_after=NOW + timedelta(days=30),
)


def inputs(secret: SecretState = GOOD, **kw: Any) -> TriggerInputs:
    base: dict[str, Any] = {
        "secret": secret,
        "spec_hash": "h1",
        "issued_spec_hash": "h1",
        "renewal_time": NOW + timedelta(days=20),
        "manual_trigger": False,
    }
    base.update(kw)
    return TriggerInputs(**base)


def replace_secret(**kw: Any) -> SecretState:
    values = {f: getattr(GOOD, f) for f in GOOD.__dataclass_fields__}
    values.update(kw)
    return SecretState(**values)


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        pytest.param(
            inputs(), None, id="a matching, valid Secret before renewal time needs nothing"
        ),
        pytest.param(
            inputs(SecretState(exists=False)), "DoesNotExist", id="issues when there is no Secret"
        ),
        pytest.param(
            inputs(replace_secret(has_key=False)),
            "MissingData",
            id="issues when tls.key is missing",
        ),
        pytest.param(
            inputs(replace_secret(cert_error="tls.crt is garbage")),
            "InvalidCertificate",
            id="issues when tls.crt cannot be parsed",
        ),
        pytest.param(
            inputs(replace_secret(key_matches_cert=False)),
            "InvalidKeyPair",
            id="issues when the key does not match the certificate",
        ),
        pytest.param(
            inputs(replace_secret(names_mismatch="certificate lacks dnsNames [b]")),
            "SecretMismatch",
            id="issues when the certificate's names differ from the spec",
        ),
        pytest.param(
            inputs(replace_secret(key_matches_spec=False)),
            "SecretMismatch",
            id="issues when the key algorithm or size changed",
        ),
        pytest.param(
            inputs(replace_secret(issuer_annotation_matches=False)),
            "IncorrectIssuer",
            id="issues when the Secret came from another issuer",
        ),
        pytest.param(
            inputs(issued_spec_hash="h0"),
            "SpecChanged",
            id="issues when the spec changed since issuance",
        ),
        pytest.param(
            inputs(manual_trigger=True), "ManuallyTriggered", id="issues when a user asked for it"
        ),
        pytest.param(
            inputs(replace_secret(not_after=NOW - timedelta(seconds=1)), renewal_time=None),
            "Expired",
            id="issues when the certificate has expired",
        ),
        pytest.param(
            inputs(renewal_time=NOW), "Renewing", id="renews when the renewal time has come"
        ),
        pytest.param(
            inputs(issued_spec_hash=None),
            None,
            id="a Secret from before the spec hash was recorded is not re-issued for that alone",
        ),
    ],
)
def test_trigger(given: TriggerInputs, reason: str | None) -> None:
    verdict = evaluate(given, now=NOW)
    assert (verdict.reason if verdict else None) == reason
    if verdict:
        assert verdict.message


def journal(**kw: Any) -> OrderJournal:
    base: dict[str, Any] = {
        "url": "https://ca/order/1",
        "state": "pending",
        "spec_hash": "h1",
        "revision": 1,
        "account_uri": "https://ca/acct/1",
        "created": NOW,
    }
    base.update(kw)
    return OrderJournal(**base)


def test_journal_round_trips_through_status() -> None:
    j = journal(
        authorizations=(
            AuthorizationRecord(
                url="https://ca/authz/1",
                identifier="a.example",
                challenge=ChallengeRecord(
                    type="http-01",
                    url="https://ca/chall/1",
                    token="t",
                    solver_index=0,
                    presented_at=NOW,
                    answered_at=NOW + timedelta(seconds=2),
                    solver_uid="pod-uid",
                ),
            ),
        ),
        finalize_url="https://ca/finalize/1",
        expires=NOW + timedelta(days=7),
        replaces="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
        pending_key_uid="key-uid",
        finalized_at=NOW + timedelta(seconds=3),
    )
    assert OrderJournal.from_status(j.to_status()) == j


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(None, id="no journal"),
        pytest.param({}, id="an empty object"),
        pytest.param({"url": "x"}, id="a journal without its creation time"),
        pytest.param({"url": "x", "created": "yesterday"}, id="a journal with a bad time"),
        pytest.param(
            {"url": "x", "created": "2026-01-01T00:00:00Z", "revision": "two"},
            id="a journal with a bad revision",
        ),
    ],
)
def test_unreadable_journals_are_dropped_not_trusted(raw: Any) -> None:
    assert OrderJournal.from_status(raw) is None


@pytest.mark.parametrize(
    ("j", "usable"),
    [
        pytest.param(journal(), True, id="an open order for this spec and account is reused"),
        pytest.param(journal(spec_hash="h0"), False, id="an order for an older spec is not"),
        pytest.param(journal(account_uri="other"), False, id="an order of another account is not"),
        pytest.param(
            journal(state="invalid"), True, id="an invalid order is kept, to be explained first"
        ),
        pytest.param(journal(expires=NOW), False, id="an expired order is not"),
        pytest.param(None, False, id="no order is not"),
    ],
)
def test_journal_usable(j: OrderJournal | None, usable: bool) -> None:
    assert journal_usable(j, spec_hash="h1", account_uri="https://ca/acct/1", now=NOW) is usable


HTTP = Http01IngressSolver(ingress_class_name="lab")
CATCH_ALL = Solver(http01=HTTP)
BY_ZONE = Solver(selector=SolverSelector(dns_zones=("example.com",)), http01=HTTP)
BY_SUBZONE = Solver(selector=SolverSelector(dns_zones=("shop.example.com",)), http01=HTTP)
BY_NAME = Solver(selector=SolverSelector(dns_names=("www.shop.example.com",)), http01=HTTP)
BY_LABEL = Solver(selector=SolverSelector(match_labels={"team": "a"}), http01=HTTP)
DNS = Rfc2136Solver(nameserver="127.0.0.1:53")
DNS_ZONE = Solver(selector=SolverSelector(dns_zones=("example.com",)), dns01=DNS)
DNS_WILDCARD = Solver(selector=SolverSelector(dns_names=("*.example.com",)), dns01=DNS)


@pytest.mark.parametrize(
    ("solvers", "identifier", "labels", "wildcard", "expected"),
    [
        pytest.param(
            [CATCH_ALL], "a.example.org", {}, False, 0, id="an empty selector takes anything"
        ),
        pytest.param(
            [CATCH_ALL, BY_ZONE],
            "a.example.com",
            {},
            False,
            1,
            id="a matching zone beats no selector",
        ),
        pytest.param(
            [BY_ZONE, BY_SUBZONE], "a.shop.example.com", {}, False, 1, id="the longest zone wins"
        ),
        pytest.param(
            [BY_SUBZONE, BY_NAME],
            "www.shop.example.com",
            {},
            False,
            1,
            id="an exact dnsName beats any zone",
        ),
        pytest.param(
            [BY_ZONE], "a.example.org", {}, False, None, id="a zone that does not match is skipped"
        ),
        pytest.param(
            [BY_LABEL, CATCH_ALL],
            "a.example.org",
            {"team": "a"},
            False,
            0,
            id="matching labels beat no selector",
        ),
        pytest.param(
            [BY_LABEL],
            "a.example.org",
            {"team": "b"},
            False,
            None,
            id="labels that do not match exclude the solver",
        ),
        pytest.param(
            [CATCH_ALL], "example.com", {}, True, None, id="HTTP-01 never takes a wildcard"
        ),
        pytest.param(
            [CATCH_ALL, CATCH_ALL], "a.example.org", {}, False, 0, id="ties keep the first listed"
        ),
        pytest.param(
            [DNS_ZONE, DNS_WILDCARD],
            "example.com",
            {},
            True,
            1,
            id="an authorization's wildcard is found as *.name in dnsNames, as in cert-manager",
        ),
        pytest.param(
            [DNS_ZONE, DNS_WILDCARD],
            "*.example.com",
            {},
            True,
            1,
            id="a Certificate's wildcard is found the same way",
        ),
        pytest.param(
            [DNS_WILDCARD],
            "example.com",
            {},
            False,
            None,
            id="the name itself is not its wildcard",
        ),
    ],
)
def test_select_solver(
    solvers: list[Solver],
    identifier: str,
    labels: dict[str, str],
    wildcard: bool,
    expected: int | None,
) -> None:
    chosen = select_solver(
        solvers,
        identifier_type="dns",
        identifier=identifier,
        wildcard=wildcard,
        certificate_labels=labels,
    )
    assert (chosen.index if chosen else None) == expected


def test_ip_identifiers_need_http01() -> None:
    dns_only = Solver(dns01=None, http01=None)
    assert (
        select_solver(
            [dns_only, CATCH_ALL],
            identifier_type="ip",
            identifier="10.0.0.1",
            wildcard=False,
            certificate_labels={},
        ).index
        == 1
    )  # type: ignore[union-attr]


def test_http01_objects_are_restricted_owned_and_named_for_restart() -> None:
    objs = http01_objects(
        namespace="shop",
        certificate_name="web",
        certificate_uid="uid-1",
        solver=Http01IngressSolver(ingress_class_name="nginx", pod_labels={"x": "y"}),
        identifier_type="dns",
        identifier="web.example.com",
        token="tok",
        key_authorization="tok.thumb",
        image="img:1",
        command=["acmebridge", "solve-http01"],
    )
    name = object_name("uid-1", "tok")
    for obj in (objs.pod, objs.service, objs.ingress):
        meta = obj["metadata"]
        assert meta["name"] == name
        assert meta["labels"][SOLVER_LABEL] == "http01"
    # The Pod belongs to the Certificate; the Service and Ingress to the Pod, once it exists.
    assert objs.pod["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    for obj in (objs.service, objs.ingress):
        owned = owned_by_pod(obj, pod_name=name, pod_uid="pod-1")
        assert owned["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "uid": "pod-1",
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
        assert "ownerReferences" not in obj["metadata"]
    pod = objs.pod["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert objs.pod["metadata"]["labels"]["x"] == "y"
    assert objs.service["spec"]["selector"] == {CHALLENGE_LABEL: name}
    rule = objs.ingress["spec"]["rules"][0]
    assert rule["host"] == "web.example.com"
    assert rule["http"]["paths"][0]["path"] == "/.well-known/acme-challenge/tok"
    assert objs.ingress["spec"]["ingressClassName"] == "nginx"


def test_http01_objects_for_an_ip_match_any_host() -> None:
    objs = http01_objects(
        namespace="shop",
        certificate_name="web",
        certificate_uid="uid-1",
        solver=HTTP,
        identifier_type="ip",
        identifier="127.0.0.1",
        token="tok",
        key_authorization="k",
        image="img",
        command=["acmebridge"],
    )
    assert "host" not in objs.ingress["spec"]["rules"][0]


def test_user_labels_cannot_replace_the_solver_labels() -> None:
    objs = http01_objects(
        namespace="shop",
        certificate_name="web",
        certificate_uid="uid-1",
        solver=Http01IngressSolver(pod_labels={SOLVER_LABEL: "mine"}),
        identifier_type="dns",
        identifier="a.example",
        token="tok",
        key_authorization="k",
        image="img",
        command=["acmebridge"],
    )
    assert objs.pod["metadata"]["labels"][SOLVER_LABEL] == "http01"


@pytest.mark.parametrize(
    ("pod", "ready"),
    [
        pytest.param(None, False, id="no Pod is not ready"),
        pytest.param({"status": {}}, False, id="a Pod without conditions is not ready"),
        pytest.param(
            {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            True,
            id="Ready=True is ready",
        ),
        pytest.param(
            {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
            False,
            id="Ready=False is not",
        ),
    ],
)
def test_pod_ready(pod: dict[str, Any] | None, ready: bool) -> None:
    assert pod_ready(pod) is ready


@pytest.mark.parametrize(
    ("server", "allowed", "ok"),
    [
        pytest.param("https://ca.example/dir", (), True, id="no allow-list allows everything"),
        pytest.param(
            "https://ca.example/dir", ("ca.example",), True, id="a listed host is allowed"
        ),
        pytest.param(
            "https://CA.example/dir", ("ca.example",), True, id="hosts compare case-insensitively"
        ),
        pytest.param(
            "https://evil.example/dir", ("ca.example",), False, id="another host is refused"
        ),
        pytest.param(
            "https://ca.example.evil/dir",
            ("ca.example",),
            False,
            id="a host that only starts with a listed one is refused",
        ),
        pytest.param(
            "https://ca.example/acme/dir",
            ("https://ca.example/acme/",),
            True,
            id="a URL under a listed prefix is allowed",
        ),
        pytest.param(
            "https://ca.example/other/dir",
            ("https://ca.example/acme/",),
            False,
            id="a URL outside the listed prefix is refused",
        ),
    ],
)
def test_server_allow_list(server: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert server_allowed(server, allowed) is ok


@pytest.mark.parametrize(
    ("path", "host", "served"),
    [
        pytest.param("/.well-known/acme-challenge/tok", "a.example", True, id="serves the token"),
        pytest.param(
            "/.well-known/acme-challenge/tok",
            "A.EXAMPLE:80",
            True,
            id="host compares case-insensitively and without port",
        ),
        pytest.param(
            "/.well-known/acme-challenge/other", "a.example", False, id="another token is 404"
        ),
        pytest.param(
            "/.well-known/acme-challenge/tok", "b.example", False, id="another host is 404"
        ),
        pytest.param("/", "a.example", False, id="anything else is 404"),
        pytest.param(
            "/.well-known/acme-challenge/tok?x=1", "a.example", True, id="a query is ignored"
        ),
    ],
)
def test_solver_answers_only_its_challenge(path: str, host: str, served: bool) -> None:
    body = answer(path=path, host=host, domain="a.example", token="tok", key_authorization="tok.k")
    assert (body == b"tok.k") is served
    assert body is None or served
