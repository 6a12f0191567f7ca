"""Pure accounting of Kubernetes API requests: from two metric scrapes to requests per certificate.

Two sources, both Prometheus text:

- **everyone's**: kube-apiserver's ``apiserver_request_total{verb, resource, subresource, …}``,
  which counts every request it served: the operator's, kube-controller-manager's (EndpointSlices
  for solver Services, garbage collection), the node agent's (solver Pod status), the ingress
  stand-in's, and the benchmark's own (subtracted: it counts its own requests the same way).
  Verbs are the API server's: GET, LIST and WATCH read; POST, PUT, PATCH, DELETE write.
- **the operator's own**: its ``acmebridge_kube_api_requests_total{method, resource, code}``,
  counted in the client (``adapters/kube.py``). ``method`` is the HTTP method, so a list shows
  as GET there.

A resource is written as the API server names it, with the subresource after a slash
(``certificates/status``), the same way in both sources, so rows line up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

APISERVER_METRIC = "apiserver_request_total"
OPERATOR_METRIC = "acmebridge_kube_api_requests_total"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
READ_VERBS = frozenset({"GET", "LIST", "WATCH"})

#: (verb, resource): ("PATCH", "certificates/status")
Key = tuple[str, str]


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of the series ``name`` in Prometheus text, as (labels, value)."""
    found: list[tuple[dict[str, str], float]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), float(sample.value)))
    return found


def _refused(code: str) -> bool:
    """Not a 2xx: a conflict, a 404, a server error (the operator writes ``error`` when the
    server was not reached). The API server counts ``201``, the operator ``2xx``."""
    return not code.startswith("2")


def apiserver_requests(text: str, *, refused_only: bool = False) -> Counter[Key]:
    """kube-apiserver's requests by (verb, resource[/subresource]); requests to paths outside
    the resource APIs (/metrics, /healthz, discovery) are left out. ``refused_only``: only
    those answered with something other than 2xx."""
    counts: Counter[Key] = Counter()
    for labels, value in samples(text, APISERVER_METRIC):
        resource = labels.get("resource", "")
        if not resource or (refused_only and not _refused(labels.get("code", ""))):
            continue
        sub = labels.get("subresource", "")
        counts[(labels.get("verb", ""), f"{resource}/{sub}" if sub else resource)] += int(value)
    return counts


def operator_requests(text: str, *, refused_only: bool = False) -> Counter[Key]:
    """The operator's own requests by (HTTP method, resource), whatever their status, or with
    ``refused_only`` those answered with something other than 2xx."""
    counts: Counter[Key] = Counter()
    for labels, value in samples(text, OPERATOR_METRIC):
        if refused_only and not _refused(labels.get("code", "")):
            continue
        counts[(labels.get("method", ""), labels.get("resource", ""))] += int(value)
    return counts


def delta(before: Mapping[Key, int], after: Mapping[Key, int]) -> Counter[Key]:
    """after - before, per key; keys that did not move are dropped. A counter that went down
    (the process restarted) counts from zero."""
    moved: Counter[Key] = Counter()
    for key, value in after.items():
        change = value - before.get(key, 0) if value >= before.get(key, 0) else value
        if change:
            moved[key] = change
    return moved


def minus(counts: Mapping[Key, int], own: Mapping[Key, int]) -> Counter[Key]:
    """counts without the benchmark's own requests, never below zero."""
    left: Counter[Key] = Counter()
    for key, value in counts.items():
        rest = value - own.get(key, 0)
        if rest > 0:
            left[key] = rest
    return left


#: the kinds an issuance touches, itself or through the objects it makes: the Certificate and
#: Issuer, their Events and Secrets, the solver Pod, Service and Ingress, and what the control
#: plane and the lab's stand-ins do for those (Pod binding and status, a Service's Endpoints,
#: EndpointSlices and ClusterIP IPAddress). Other kinds moving during a burst (roles, jobs, …)
#: are other users of the shared lab: creating or deleting their namespaces.
ISSUANCE_KINDS = frozenset(
    {
        "certificates",
        "issuers",
        "clusterissuers",
        "events",
        "secrets",
        "pods",
        "services",
        "ingresses",
        "endpoints",
        "endpointslices",
        "ipaddresses",
    }
)


def split_issuance(counts: Mapping[Key, int]) -> tuple[Counter[Key], Counter[Key]]:
    """(requests on the kinds an issuance touches, requests on any other kind)."""
    related: Counter[Key] = Counter()
    other: Counter[Key] = Counter()
    for (verb, resource), value in counts.items():
        kind = resource.split("/", 1)[0]
        (related if kind in ISSUANCE_KINDS else other)[(verb, resource)] += value
    return related, other


def is_write(verb: str) -> bool:
    return verb.upper() in WRITE_VERBS


@dataclass(frozen=True)
class Cost:
    """Requests per certificate: writes, reads, each (verb, resource) row, and how many of a
    row's requests were refused (a conflict, a 404: requests spent for nothing)."""

    writes: float
    reads: float
    rows: tuple[tuple[str, str, float], ...]
    refused: Mapping[Key, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "writes_per_certificate": round(self.writes, 2),
            "reads_per_certificate": round(self.reads, 2),
            "by_verb_and_resource": {f"{v} {r}": round(x, 3) for v, r, x in self.rows},
            "refused_by_verb_and_resource": {
                f"{v} {r}": round(x, 3) for (v, r), x in sorted(self.refused.items())
            },
        }


def per_certificate(
    counts: Mapping[Key, int], n: int, refused: Mapping[Key, int] | None = None
) -> Cost:
    """Divide by the number of certificates; rows sorted writes first, then by cost."""
    if n <= 0:
        raise ValueError("per certificate of no certificates")
    rows = sorted(
        ((verb, resource, value / n) for (verb, resource), value in counts.items()),
        key=lambda row: (not is_write(row[0]), -row[2], row[0], row[1]),
    )
    writes = sum(x for verb, _, x in rows if is_write(verb))
    reads = sum(x for verb, _, x in rows if not is_write(verb))
    per = {key: value / n for key, value in (refused or {}).items() if value and key in counts}
    return Cost(writes=writes, reads=reads, rows=tuple(rows), refused=per)
