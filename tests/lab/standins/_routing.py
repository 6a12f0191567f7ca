"""How the ingress stand-in picks a backend: the Ingress API's matching rules, pure.

Matching follows the Ingress API: a host is matched exactly (case-insensitive) or by a
``*.domain`` wildcard covering one label, a rule without host matches every host; Exact paths
match the whole path, Prefix (and ImplementationSpecific) paths match whole ``/``-separated
elements. Rules of all Ingresses of the class are merged, as controllers merge them; the most
specific host wins, then the longest path, then Exact over Prefix, then the oldest Ingress. The
endpoint is a ready address of the Service port the backend names, from its EndpointSlices.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.lab.nodenet import POD_CIDR

JSON = dict[str, Any]
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
HOST_EXACT, HOST_WILDCARD, HOST_ANY = 2, 1, 0


@dataclass(frozen=True)
class Backend:
    """A Service port an Ingress sends a request to; ``route`` says which rule, for the log."""

    namespace: str
    service: str
    port_number: int | None
    port_name: str | None
    route: str


def is_ours(ingress: JSON, ingress_class: str) -> bool:
    """The class field decides; without it the legacy annotation; without both, ours."""
    named = ingress.get("spec", {}).get("ingressClassName")
    if named:
        return bool(named == ingress_class)
    annotated = (ingress.get("metadata", {}).get("annotations") or {}).get(CLASS_ANNOTATION)
    return annotated in (None, "", ingress_class)


def request_host(header: str) -> str:
    """The Host header without port, lowercased, without a trailing dot."""
    host = header.strip().lower()
    if host.startswith("["):  # [IPv6]:port
        return host[1 : host.find("]")]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_specificity(rule_host: str | None, host: str) -> int | None:
    """How specifically ``rule_host`` matches ``host`` (higher wins), or None for no match."""
    if not rule_host:
        return HOST_ANY
    rule_host = rule_host.lower()
    if rule_host.startswith("*."):
        first, dot, rest = host.partition(".")
        return HOST_WILDCARD if first and dot and rest == rule_host[2:] else None
    return HOST_EXACT if rule_host == host else None


def path_matches(path_type: str, rule_path: str, path: str) -> bool:
    """Exact: the same string. Prefix: every ``/`` element of the rule starts the path.

    ``/foo`` matches ``/foo``, ``/foo/`` and ``/foo/bar`` but not ``/foobar``; a trailing
    slash in the rule is ignored, and ``/`` matches everything.
    """
    if path_type == "Exact":
        return path == rule_path
    wanted = rule_path.rstrip("/").split("/")
    return path.split("/")[: len(wanted)] == wanted


def _backend(ingress: JSON, ref: JSON, route: str) -> Backend | None:
    service = ref.get("service")
    if not service:  # a `resource` backend names no Service: not routable here
        return None
    port = service.get("port") or {}
    return Backend(
        namespace=ingress["metadata"]["namespace"],
        service=service["name"],
        port_number=port.get("number"),
        port_name=port.get("name"),
        route=route,
    )


def _age(ingress: JSON) -> tuple[str, str, str]:
    meta = ingress["metadata"]
    return (meta.get("creationTimestamp", ""), meta["namespace"], meta["name"])


def select_backend(
    ingresses: Iterable[JSON], *, host: str, path: str, ingress_class: str
) -> Backend | None:
    """The backend for a request, or None when no rule and no default backend applies."""
    ours = sorted((i for i in ingresses if is_ours(i, ingress_class)), key=_age)
    best: tuple[tuple[int, int, bool], Backend] | None = None
    for ingress in ours:
        name = f"{ingress['metadata']['namespace']}/{ingress['metadata']['name']}"
        for rule in ingress.get("spec", {}).get("rules") or []:
            specificity = host_specificity(rule.get("host"), host)
            if specificity is None:
                continue
            for entry in (rule.get("http") or {}).get("paths") or []:
                rule_path = entry.get("path") or "/"
                path_type = entry.get("pathType", "ImplementationSpecific")
                if not path_matches(path_type, rule_path, path):
                    continue
                # Older Ingresses come first, so on a full tie the strict `>` keeps the oldest.
                rank = (specificity, len(rule_path.rstrip("/")), path_type == "Exact")
                route = f"ingress {name}, {path_type} {rule_path}"
                backend = _backend(ingress, entry.get("backend") or {}, route)
                if backend is not None and (best is None or rank > best[0]):
                    best = (rank, backend)
    if best is not None:
        return best[1]
    for ingress in ours:
        default = ingress.get("spec", {}).get("defaultBackend")
        if default:
            name = f"{ingress['metadata']['namespace']}/{ingress['metadata']['name']}"
            return _backend(ingress, default, f"ingress {name}, default backend")
    return None


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


def select_endpoint(service: JSON, slices: Sequence[JSON], backend: Backend) -> Endpoint | None:
    """A ready endpoint of the Service port the backend names, or None when there is none.

    The EndpointSlice port is the one named like the Service port (the endpointslice
    controller resolves named target ports per Pod); a numeric targetPort is the fallback.
    """
    service_port = next(
        (
            p
            for p in service.get("spec", {}).get("ports") or []
            if (backend.port_number is not None and p.get("port") == backend.port_number)
            or (backend.port_name is not None and p.get("name") == backend.port_name)
        ),
        None,
    )
    if service_port is None:
        return None
    port_name = service_port.get("name") or ""
    target = service_port.get("targetPort", service_port.get("port"))
    for endpoint_slice in sorted(slices, key=lambda s: str(s["metadata"]["name"])):
        if endpoint_slice.get("addressType") != "IPv4":
            continue
        ports = [p for p in endpoint_slice.get("ports") or [] if (p.get("name") or "") == port_name]
        port = ports[0].get("port") if ports else target
        if not isinstance(port, int):
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            # A missing `ready` means unknown, which consumers should take as ready.
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            if endpoint.get("addresses"):
                return Endpoint(endpoint["addresses"][0], port)
    return None


def in_node_pod_range(address: str) -> bool:
    """True for a Pod address of the lab's real node (make node-up): reachable on its bridge."""
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(POD_CIDR)
    except ValueError:
        return False
