"""Prometheus metrics on an injected registry, named like cert-manager's so dashboards carry over.

Labels stay low-cardinality: per-object gauges carry only namespace and name (as cert-manager's
``certmanager_certificate_expiration_timestamp_seconds`` does); counters and histograms carry a
request kind, an outcome or a reason, never a URL or an identifier. ``docs/metrics.md`` lists
every series.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from acmebridge.domain.conditions import get_condition
from acmebridge.domain.timefmt import parse_time
from acmebridge.reconcile.runtime import Metrics, ObjectKey

_CONDITIONS = ("True", "False", "Unknown")


def _ts(status: Mapping[str, Any], key: str) -> float | None:
    raw = status.get(key)
    if not raw:
        return None
    try:
        return parse_time(str(raw)).timestamp()
    except ValueError:
        return None


class PrometheusMetrics(Metrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.cert_ready = Gauge(
            "acmebridge_certificate_ready_status",
            "The Ready condition of a Certificate (1 for the current status value)",
            ["namespace", "name", "condition"],
            registry=r,
        )
        self.cert_not_after = Gauge(
            "acmebridge_certificate_expiration_timestamp_seconds",
            "The notAfter of the Certificate's current certificate",
            ["namespace", "name"],
            registry=r,
        )
        self.cert_not_before = Gauge(
            "acmebridge_certificate_not_before_timestamp_seconds",
            "The notBefore of the Certificate's current certificate",
            ["namespace", "name"],
            registry=r,
        )
        self.cert_renewal = Gauge(
            "acmebridge_certificate_renewal_timestamp_seconds",
            "When the Certificate will be renewed",
            ["namespace", "name"],
            registry=r,
        )
        self.issuer_ready = Gauge(
            "acmebridge_issuer_ready_status",
            "The Ready condition of an Issuer or ClusterIssuer (1 for the current value)",
            ["kind", "namespace", "name", "condition"],
            registry=r,
        )
        self.acme_requests = Counter(
            "acmebridge_acme_client_requests_total",
            "ACME requests by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.acme_duration = Histogram(
            "acmebridge_acme_client_request_duration_seconds",
            "ACME request latency",
            ["kind"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.issuance_duration = Histogram(
            "acmebridge_issuance_duration_seconds",
            "From the start of an issuance to the Secret being written",
            registry=r,
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
        )
        self.issued_total = Counter(
            "acmebridge_certificates_issued_total", "Certificates issued or renewed", registry=r
        )
        self.failures = Counter(
            "acmebridge_issuance_failures_total",
            "Failed issuance attempts by reason",
            ["reason"],
            registry=r,
        )
        self.solvers_live = Gauge(
            "acmebridge_http01_solver_objects",
            "Solver Pods, Services and Ingresses alive",
            registry=r,
        )
        self.reconciles = Counter(
            "acmebridge_controller_reconcile_total", "Reconciles by kind", ["kind"], registry=r
        )
        self.reconcile_errors = Counter(
            "acmebridge_controller_reconcile_errors_total",
            "Reconciles that raised, by kind",
            ["kind"],
            registry=r,
        )

        self.kube_requests = Counter(
            "acmebridge_kube_api_requests_total",
            "Requests to the Kubernetes API by method and status class (2xx, 4xx, 5xx, error)",
            ["method", "code"],
            registry=r,
        )

    @classmethod
    def serve(cls, address: str, port: int) -> PrometheusMetrics:
        m = cls()
        start_http_server(port, addr=address, registry=m.registry)
        return m

    def acme_request(self, kind: str, outcome: str, seconds: float) -> None:
        self.acme_requests.labels(kind, outcome).inc()
        self.acme_duration.labels(kind).observe(seconds)

    def issued(self, namespace: str, name: str, seconds: float | None) -> None:
        self.issued_total.inc()
        if seconds is not None:
            self.issuance_duration.observe(seconds)

    def failure(self, reason: str) -> None:
        self.failures.labels(reason).inc()

    def solvers(self, delta: int) -> None:
        self.solvers_live.inc(delta)

    def kube_request(self, method: str, status: int) -> None:
        code = f"{status // 100}xx" if status else "error"
        self.kube_requests.labels(method, code).inc()

    def reconciled(self, kind: str, error: bool) -> None:
        self.reconciles.labels(kind).inc()
        if error:
            self.reconcile_errors.labels(kind).inc()

    def certificate(self, body: Mapping[str, Any] | None, key: ObjectKey) -> None:
        _, namespace, name = key
        if body is None:
            for c in _CONDITIONS:
                _remove(self.cert_ready, namespace, name, c)
            for g in (self.cert_not_after, self.cert_not_before, self.cert_renewal):
                _remove(g, namespace, name)
            return
        status = body.get("status") or {}
        ready = get_condition(status.get("conditions") or [], "Ready")
        current = ready.status if ready else "Unknown"
        for c in _CONDITIONS:
            self.cert_ready.labels(namespace, name, c).set(1.0 if c == current else 0.0)
        for gauge, field in (
            (self.cert_not_after, "notAfter"),
            (self.cert_not_before, "notBefore"),
            (self.cert_renewal, "renewalTime"),
        ):
            value = _ts(status, field)
            if value is not None:
                gauge.labels(namespace, name).set(value)

    def issuer(self, body: Mapping[str, Any] | None, key: ObjectKey) -> None:
        plural, namespace, name = key
        kind = "ClusterIssuer" if plural == "clusterissuers" else "Issuer"
        status = (body or {}).get("status") or {}
        ready = get_condition(status.get("conditions") or [], "Ready")
        current = ready.status if ready else "Unknown"
        for c in _CONDITIONS:
            self.issuer_ready.labels(kind, namespace, name, c).set(1.0 if c == current else 0.0)


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
