"""Prometheus metrics on an injected registry, named like cert-manager's so dashboards carry over.

Labels stay low-cardinality: per-object gauges carry only namespace and name (as cert-manager's
``certmanager_certificate_expiration_timestamp_seconds`` does); counters and histograms carry a
request kind, a status or a reason from a closed set, never a URL or an identifier. A value the
operator does not control (an ACME problem type from the CA) is kept only when RFC 8555 defines
it (``domain.failures``), so a CA cannot grow the series without bound.

``docs/metrics.md`` is the reference; its table is :func:`markdown_reference` of this module's
real registry, and a unit test fails when the two differ
(``python -m acmebridge.metrics docs/metrics.md`` rewrites it).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from acmebridge.domain.conditions import get_condition
from acmebridge.domain.failures import VOCABULARY
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
            "The Ready condition of a Certificate: 1 for the condition's current status, "
            "0 for the two others",
            ["namespace", "name", "condition"],
            registry=r,
        )
        self.cert_not_after = Gauge(
            "acmebridge_certificate_expiration_timestamp_seconds",
            "The notAfter of the Certificate's current certificate (status.notAfter), "
            "in Unix seconds",
            ["namespace", "name"],
            registry=r,
        )
        self.cert_not_before = Gauge(
            "acmebridge_certificate_not_before_timestamp_seconds",
            "The notBefore of the Certificate's current certificate (status.notBefore), "
            "in Unix seconds",
            ["namespace", "name"],
            registry=r,
        )
        self.cert_renewal = Gauge(
            "acmebridge_certificate_renewal_timestamp_seconds",
            "When the Certificate will be renewed (status.renewalTime), in Unix seconds",
            ["namespace", "name"],
            registry=r,
        )
        self.issuer_ready = Gauge(
            "acmebridge_issuer_ready_status",
            "The Ready condition of an Issuer or ClusterIssuer (namespace empty): 1 for the "
            "condition's current status, 0 for the two others",
            ["kind", "namespace", "name", "condition"],
            registry=r,
        )
        self.acme_requests = Counter(
            "acmebridge_acme_client_requests_total",
            "ACME requests by kind (new_order, finalize, …) and status: ok, an RFC 8555 "
            "problem type, unavailable or tls",
            ["kind", "status"],
            registry=r,
        )
        self.acme_duration = Histogram(
            "acmebridge_acme_client_request_duration_seconds",
            "ACME request latency by kind and status, retries of a bad nonce included",
            ["kind", "status"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.issuance_duration = Histogram(
            "acmebridge_issuance_duration_seconds",
            "From the start of an issuance (Issuing=True) to the Secret being written",
            registry=r,
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
        )
        self.issued_total = Counter(
            "acmebridge_certificates_issued_total",
            "Certificates issued or renewed (a Secret written with a new certificate)",
            registry=r,
        )
        self.failures = Counter(
            "acmebridge_issuance_failures_total",
            "Failed issuance attempts by reason, a closed vocabulary: the CA's RFC 8555 problem "
            "(connection, unauthorized, dns, rateLimited, …), unspecified when the CA gave "
            "none, unavailable when it could not be reached, or the operator's own "
            "(invalidSpec, noSolver, …)",
            ["reason"],
            registry=r,
        )
        self.solvers_live = Gauge(
            "acmebridge_http01_solver_pods",
            "HTTP-01 solver Pods (each with its Service and Ingress) this operator process "
            "created and has not yet deleted",
            registry=r,
        )
        self.reconciles = Counter(
            "acmebridge_controller_reconcile_total",
            "Reconciles by resource (certificates, issuers, clusterissuers)",
            ["kind"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "acmebridge_controller_reconcile_errors_total",
            "Reconciles that raised an unexpected error, by resource; the work queue retries "
            "them with backoff",
            ["kind"],
            registry=r,
        )
        self.kube_requests = Counter(
            "acmebridge_kube_api_requests_total",
            "Requests to the Kubernetes API by method, resource (the plural, with a "
            "subresource after a slash: certificates/status) and status class (2xx, 4xx, 5xx, "
            "error)",
            ["method", "resource", "code"],
            registry=r,
        )
        self._solvers = 0
        self._solvers_lock = threading.Lock()
        #: (namespace, name) -> the Ready status and times last set for a Certificate
        self._certificates: dict[tuple[str, str], tuple[str, tuple[float | None, ...]]] = {}

    @classmethod
    def serve(cls, address: str, port: int) -> PrometheusMetrics:
        m = cls()
        start_http_server(port, addr=address, registry=m.registry)
        return m

    def acme_request(self, kind: str, outcome: str, seconds: float) -> None:
        self.acme_requests.labels(kind, outcome).inc()
        self.acme_duration.labels(kind, outcome).observe(seconds)

    def issued(self, namespace: str, name: str, seconds: float | None) -> None:
        self.issued_total.inc()
        if seconds is not None:
            self.issuance_duration.observe(max(0.0, seconds))

    def failure(self, reason: str) -> None:
        # The vocabulary is closed; anything else (a bug) is counted, not turned into a label.
        self.failures.labels(reason if reason in VOCABULARY else "problem").inc()

    def solvers(self, delta: int) -> None:
        # Counted from this process's creates and deletes: after a restart, deleting objects
        # left by the previous process must not drive the gauge below zero.
        with self._solvers_lock:
            self._solvers = max(0, self._solvers + delta)
            self.solvers_live.set(self._solvers)

    def kube_request(self, method: str, status: int, resource: str = "") -> None:
        code = f"{status // 100}xx" if status else "error"
        self.kube_requests.labels(method, resource, code).inc()

    def reconciled(self, kind: str, error: bool) -> None:
        self.reconciles.labels(kind).inc()
        if error:
            self.reconcile_errors.labels(kind).inc()

    def certificate(self, body: Mapping[str, Any] | None, key: ObjectKey) -> None:
        _, namespace, name = key
        if body is None:
            self._certificates.pop((namespace, name), None)
            for c in _CONDITIONS:
                _remove(self.cert_ready, namespace, name, c)
            for g in (self.cert_not_after, self.cert_not_before, self.cert_renewal):
                _remove(g, namespace, name)
            return
        status = body.get("status") or {}
        ready = get_condition(status.get("conditions") or [], "Ready")
        current = ready.status if ready else "Unknown"
        times = tuple(_ts(status, f) for f in ("notAfter", "notBefore", "renewalTime"))
        # Most reconciles change none of these; setting seven series anyway was 1% of the
        # operator's CPU in a burst.
        if self._certificates.get((namespace, name)) == (current, times):
            return
        self._certificates[(namespace, name)] = (current, times)
        for c in _CONDITIONS:
            self.cert_ready.labels(namespace, name, c).set(1.0 if c == current else 0.0)
        for gauge, value in zip(
            (self.cert_not_after, self.cert_not_before, self.cert_renewal), times, strict=True
        ):
            if value is None:
                _remove(gauge, namespace, name)
            else:
                gauge.labels(namespace, name).set(value)

    def issuer(self, body: Mapping[str, Any] | None, key: ObjectKey) -> None:
        plural, namespace, name = key
        kind = "ClusterIssuer" if plural == "clusterissuers" else "Issuer"
        if body is None:
            for c in _CONDITIONS:
                _remove(self.issuer_ready, kind, namespace, name, c)
            return
        status = body.get("status") or {}
        ready = get_condition(status.get("conditions") or [], "Ready")
        current = ready.status if ready else "Unknown"
        for c in _CONDITIONS:
            self.issuer_ready.labels(kind, namespace, name, c).set(1.0 if c == current else 0.0)


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


# -- the reference in docs/metrics.md -----------------------------------------------------------

_BEGIN = "<!-- BEGIN GENERATED: python -m acmebridge.metrics docs/metrics.md -->"
_END = "<!-- END GENERATED -->"


def _exercised() -> PrometheusMetrics:
    """A fresh instance with one sample in every series, so that collecting it shows labels."""
    m = PrometheusMetrics()
    when = "2030-01-01T00:00:00Z"
    conditions = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Ready",
            "message": "",
            "lastTransitionTime": when,
        }
    ]
    cert = {
        "status": {
            "conditions": conditions,
            "notAfter": when,
            "notBefore": when,
            "renewalTime": when,
        }
    }
    m.certificate(cert, ("certificates", "ns", "name"))
    m.issuer(cert, ("issuers", "ns", "name"))
    m.acme_request("new_order", "ok", 0.1)
    m.issued("ns", "name", 1.0)
    m.failure("connection")
    m.solvers(1)
    m.reconciled("certificates", error=True)
    m.kube_request("PATCH", 200, "certificates/status")
    return m


def markdown_reference() -> str:
    """The table of every series: name, type, labels and help, from the real registry."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    families = sorted(_exercised().registry.collect(), key=lambda f: f.name)
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        labels: list[str] = []
        for sample in family.samples:
            labels += [k for k in sample.labels if k != "le" and k not in labels]
        shown = ", ".join(f"`{label}`" for label in labels) or "-"
        help_ = family.documentation.replace("|", "\\|")
        rows.append(f"| `{name}` | {family.type} | {shown} | {help_} |")
    return "\n".join([_BEGIN, *rows, _END])


def rewrite_reference(path: Path) -> None:
    """Replace the generated block of ``path`` with the current reference."""
    text = path.read_text()
    head, _, rest = text.partition(_BEGIN)
    _, _, tail = rest.partition(_END)
    path.write_text(head + markdown_reference() + tail)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        rewrite_reference(Path(sys.argv[1]))
    else:
        print(markdown_reference())
