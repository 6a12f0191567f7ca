"""The metrics: what each hook records, their names and labels, and docs/metrics.md in step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from acmebridge.domain.failures import problem_reason
from acmebridge.metrics import PrometheusMetrics, markdown_reference

ROOT = Path(__file__).resolve().parents[2]
KEY = ("certificates", "shop", "web")


@pytest.fixture
def m() -> PrometheusMetrics:
    return PrometheusMetrics(CollectorRegistry())


def value(m: PrometheusMetrics, metric: str, /, **labels: str) -> float | None:
    return m.registry.get_sample_value(metric, labels)


def cert(ready: str | None, **status: Any) -> dict[str, Any]:
    condition = {
        "type": "Ready",
        "status": ready,
        "reason": "Ready" if ready == "True" else "Failed",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    conditions = [] if ready is None else [condition]
    return {"status": {"conditions": conditions, **status}}


def test_the_reference_in_docs_is_the_registry() -> None:
    doc = (ROOT / "docs" / "metrics.md").read_text()
    assert markdown_reference() in doc, (
        "docs/metrics.md is out of date: run "
        "`PYTHONPATH=operator .venv/bin/python -m acmebridge.metrics docs/metrics.md`"
    )


def test_every_series_is_prefixed_and_counters_end_in_total() -> None:
    families = list(PrometheusMetrics().registry.collect())
    assert len(families) == 14
    for family in families:
        assert family.name.startswith("acmebridge_"), family.name
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample.name


@pytest.mark.parametrize(
    ("ready", "expected"),
    [
        pytest.param("True", {"True": 1, "False": 0, "Unknown": 0}, id="a ready certificate"),
        pytest.param("False", {"True": 0, "False": 1, "Unknown": 0}, id="a failing certificate"),
        pytest.param(None, {"True": 0, "False": 0, "Unknown": 1}, id="no Ready condition yet"),
    ],
)
def test_the_ready_gauge_is_one_for_the_current_status(
    m: PrometheusMetrics, ready: str | None, expected: dict[str, int]
) -> None:
    m.certificate(cert(ready), KEY)
    got = {
        c: value(
            m, "acmebridge_certificate_ready_status", namespace="shop", name="web", condition=c
        )
        for c in expected
    }
    assert got == expected


def test_timestamps_come_from_status_and_go_with_it(m: PrometheusMetrics) -> None:
    m.certificate(
        cert(
            "True",
            notBefore="2026-01-01T00:00:00Z",
            notAfter="2026-04-01T00:00:00Z",
            renewalTime="2026-03-01T12:00:00Z",
        ),
        KEY,
    )
    who = {"namespace": "shop", "name": "web"}
    assert value(m, "acmebridge_certificate_not_before_timestamp_seconds", **who) == 1767225600
    assert value(m, "acmebridge_certificate_expiration_timestamp_seconds", **who) == 1775001600
    assert value(m, "acmebridge_certificate_renewal_timestamp_seconds", **who) == 1772366400
    # A status that lost a field (the Secret was deleted and is being re-issued) drops it.
    m.certificate(cert("False", notAfter="2026-04-01T00:00:00Z"), KEY)
    assert value(m, "acmebridge_certificate_not_before_timestamp_seconds", **who) is None
    assert value(m, "acmebridge_certificate_expiration_timestamp_seconds", **who) == 1775001600


def test_a_certificate_deleted_and_created_again_with_the_same_status_has_its_series_again(
    m: PrometheusMetrics,
) -> None:
    # Unchanged statuses are not set again: the record of what was set must go with the series.
    body = cert("True", notAfter="2026-04-01T00:00:00Z")
    m.certificate(body, KEY)
    m.certificate(body, KEY)
    m.certificate(None, KEY)
    m.certificate(body, KEY)
    who = {"namespace": "shop", "name": "web"}
    assert value(m, "acmebridge_certificate_expiration_timestamp_seconds", **who) == 1775001600
    assert value(m, "acmebridge_certificate_ready_status", **who, condition="True") == 1


def test_a_deleted_certificate_leaves_no_series(m: PrometheusMetrics) -> None:
    m.certificate(cert("True", notAfter="2026-04-01T00:00:00Z"), KEY)
    m.certificate(None, KEY)
    names = {s.name for f in m.registry.collect() for s in f.samples}
    assert not names & {
        "acmebridge_certificate_ready_status",
        "acmebridge_certificate_expiration_timestamp_seconds",
    }


def test_issuers_by_kind_and_a_deleted_one_leaves_no_series(m: PrometheusMetrics) -> None:
    m.issuer(cert("True"), ("clusterissuers", "", "corp"))
    m.issuer(cert("False"), ("issuers", "shop", "local"))
    assert (
        value(
            m,
            "acmebridge_issuer_ready_status",
            kind="ClusterIssuer",
            namespace="",
            name="corp",
            condition="True",
        )
        == 1
    )
    assert (
        value(
            m,
            "acmebridge_issuer_ready_status",
            kind="Issuer",
            namespace="shop",
            name="local",
            condition="False",
        )
        == 1
    )
    m.issuer(None, ("clusterissuers", "", "corp"))
    left = [
        s.labels["name"]
        for f in m.registry.collect()
        for s in f.samples
        if s.name == "acmebridge_issuer_ready_status"
    ]
    assert "corp" not in left and "local" in left


def test_acme_requests_count_and_time_by_kind_and_status(m: PrometheusMetrics) -> None:
    m.acme_request("new_order", "ok", 0.2)
    m.acme_request("new_order", "ok", 0.4)
    m.acme_request("finalize", "rateLimited", 0.1)
    assert value(m, "acmebridge_acme_client_requests_total", kind="new_order", status="ok") == 2
    assert (
        value(m, "acmebridge_acme_client_requests_total", kind="finalize", status="rateLimited")
        == 1
    )
    duration = "acmebridge_acme_client_request_duration_seconds"
    assert value(m, f"{duration}_count", kind="new_order", status="ok") == 2
    assert value(m, f"{duration}_sum", kind="new_order", status="ok") == pytest.approx(0.6)
    assert value(m, f"{duration}_bucket", kind="finalize", status="rateLimited", le="0.1") == 1


def test_an_issuance_without_a_known_start_is_counted_but_not_timed(m: PrometheusMetrics) -> None:
    m.issued("shop", "web", 12.5)
    m.issued("shop", "web", None)
    assert value(m, "acmebridge_certificates_issued_total") == 2
    assert value(m, "acmebridge_issuance_duration_seconds_count") == 1
    assert value(m, "acmebridge_issuance_duration_seconds_sum") == 12.5


@pytest.mark.parametrize(
    ("problem", "label"),
    [
        pytest.param(
            "urn:ietf:params:acme:error:connection",
            "connection",
            id="a failed challenge counts by its problem type",
        ),
        pytest.param(
            "urn:ietf:params:acme:error:rateLimited",
            "rateLimited",
            id="a rate limit counts as rateLimited",
        ),
        pytest.param(
            "urn:acme:error:unauthorized",
            "unauthorized",
            id="a pre-RFC problem type is named as in RFC 8555",
        ),
        pytest.param(
            "urn:example:ca:quota-exceeded-for-tenant-4711",
            "problem",
            id="a CA's own problem type does not become a label value",
        ),
        pytest.param(None, "unspecified", id="an invalid authorization without a reason"),
    ],
)
def test_failures_count_by_a_bounded_reason(
    m: PrometheusMetrics, problem: str | None, label: str
) -> None:
    m.failure(problem_reason(problem))
    assert value(m, "acmebridge_issuance_failures_total", reason=label) == 1


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        pytest.param("noSolver", "noSolver", id="the operator's own reasons are kept"),
        pytest.param("unavailable", "unavailable", id="an unreachable CA is kept"),
        pytest.param("Something New", "problem", id="a word outside the vocabulary is not"),
    ],
)
def test_only_the_vocabulary_becomes_a_label(m: PrometheusMetrics, reason: str, label: str) -> None:
    m.failure(reason)
    assert value(m, "acmebridge_issuance_failures_total", reason=label) == 1


@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        pytest.param([3, -1], 2, id="creates minus deletes"),
        pytest.param([-3], 0, id="deleting a previous process's objects does not go below zero"),
        pytest.param([-3, 2], 2, id="and counts on from zero afterwards"),
    ],
)
def test_the_solver_gauge(m: PrometheusMetrics, deltas: list[int], expected: int) -> None:
    for d in deltas:
        m.solvers(d)
    assert value(m, "acmebridge_http01_solver_pods") == expected


def test_reconciles_and_their_errors_by_resource(m: PrometheusMetrics) -> None:
    m.reconciled("certificates", error=False)
    m.reconciled("certificates", error=True)
    m.reconciled("issuers", error=False)
    assert value(m, "acmebridge_controller_reconcile_total", kind="certificates") == 2
    assert value(m, "acmebridge_controller_reconcile_errors_total", kind="certificates") == 1
    assert value(m, "acmebridge_controller_reconcile_errors_total", kind="issuers") is None


@pytest.mark.parametrize(
    ("status", "code"),
    [
        pytest.param(201, "2xx", id="a create"),
        pytest.param(409, "4xx", id="a conflict"),
        pytest.param(503, "5xx", id="a server error"),
        pytest.param(0, "error", id="the server was not reached"),
    ],
)
def test_kubernetes_requests_by_method_and_status_class(
    m: PrometheusMetrics, status: int, code: str
) -> None:
    m.kube_request("POST", status, "secrets")
    assert (
        value(m, "acmebridge_kube_api_requests_total", method="POST", resource="secrets", code=code)
        == 1
    )


def test_kubernetes_requests_without_a_resource_have_an_empty_label(m: PrometheusMetrics) -> None:
    m.kube_request("GET", 200)
    assert value(m, "acmebridge_kube_api_requests_total", method="GET", resource="", code="2xx")
