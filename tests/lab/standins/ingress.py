"""Plays an ingress controller in the lab: routes HTTP requests by the real Ingress objects.

Test-only stand-in. It listens where the ACME server sends HTTP-01 validation requests and, per
request, reads the Ingresses of its class, the backend Service and that Service's EndpointSlices
from the API server (no cache, so a route works as soon as the API has it), then proxies GET and
HEAD to a ready endpoint. Endpoint addresses are on the lab's pod network and are mapped back to
the loopback address the Pod's process listens on (see ``_podnet``); any other address is
refused, so no request leaves 127.0.0.0/8, except to the real node's Pods (10.244.1.0/24, `make
node-up`), which are proxied to directly on the lab's bridge. 404: no rule matches; 503: no
ready endpoint; 502: the backend refused or failed.

Matching follows the Ingress API: a host is matched exactly (case-insensitive) or by a
``*.domain`` wildcard covering one label, a rule without host matches every host; Exact paths
match the whole path, Prefix (and ImplementationSpecific) paths match whole ``/``-separated
elements. Rules of all Ingresses of the class are merged, as controllers merge them; the most
specific host wins, then the longest path, then Exact over Prefix, then the oldest Ingress.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from tests.lab.nodenet import POD_CIDR

from ._kube import ApiError, Kube, setup_logging
from ._podnet import PodNetwork

JSON = dict[str, Any]
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
# Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
HOST_EXACT, HOST_WILDCARD, HOST_ANY = 2, 1, 0

log = logging.getLogger("standins.ingress")


# ---- matching (pure) -----------------------------------------------------------------------


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


# ---- serving -------------------------------------------------------------------------------


class ApiReader(Protocol):
    def get(self, path: str, query: Mapping[str, str] | None = None) -> JSON: ...


class Router:
    """Reads what a request needs from the API server, one request at a time."""

    def __init__(self, kube: ApiReader, *, ingress_class: str, network: PodNetwork) -> None:
        self.kube = kube
        self.ingress_class = ingress_class
        self.network = network

    def backend(self, host: str, path: str) -> Backend | None:
        ingresses = self.kube.get("/apis/networking.k8s.io/v1/ingresses").get("items") or []
        return select_backend(ingresses, host=host, path=path, ingress_class=self.ingress_class)

    def endpoint(self, backend: Backend) -> Endpoint | None:
        ns, name = backend.namespace, backend.service
        try:
            service = self.kube.get(f"/api/v1/namespaces/{ns}/services/{name}")
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        slices = self.kube.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
            {"labelSelector": f"kubernetes.io/service-name={name}"},
        )
        return select_endpoint(service, slices.get("items") or [], backend)


def make_handler(router: Router) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: the connection closes after each response, which delimits a streamed body.
        protocol_version = "HTTP/1.0"
        server_version = "lab-ingress"
        replied = False

        def do_GET(self) -> None:
            started = time.monotonic()
            host = request_host(self.headers.get("Host", ""))
            self.replied = False
            try:
                status, detail = self._route(host, self.path.split("?", 1)[0])
            except Exception as error:  # one failing request must not stop the server
                status, detail = 500, f"error: {error}"
                self._reply(500, "the lab ingress failed; see its log")
            log.info(
                '%s "%s %s%s" %d %s %.0fms',
                self.client_address[0],
                self.command,
                host,
                self.path,
                status,
                detail,
                (time.monotonic() - started) * 1000,
            )

        do_HEAD = do_GET

        def do_other(self) -> None:
            self._reply(405, "the lab ingress proxies GET and HEAD only")
            log.info('%s "%s %s" 405', self.client_address[0], self.command, self.path)

        do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_other

        def _route(self, host: str, path: str) -> tuple[int, str]:
            backend = router.backend(host, path)
            if backend is None:
                self._reply(404, "no Ingress rule matches")
                return 404, "no rule"
            target = router.endpoint(backend)
            if target is None:
                self._reply(503, "no ready endpoint")
                return 503, f"{backend.route} -> no ready endpoint"
            local = router.network.local_for(target.address)
            if local is None and in_node_pod_range(target.address):
                local = target.address  # a Pod of the real node, on the lab's bridge
            if local is None:  # never send traffic beyond loopback and the lab's bridge
                self._reply(502, f"{target.address} is not on the lab's pod network")
                return 502, f"{backend.route} -> {target.address} is off the pod network"
            upstream = f"{local}:{target.port} (pod {target.address})"
            try:
                status = self._proxy(local, target.port)
            except TimeoutError as error:
                self._reply(504, f"backend {upstream} timed out")
                return 504, f"{backend.route} -> {upstream}: {error}"
            except OSError as error:
                self._reply(502, f"backend {upstream} failed: {error}")
                return 502, f"{backend.route} -> {upstream}: {error}"
            return status, f"{backend.route} -> {upstream}"

        def _proxy(self, address: str, port: int) -> int:
            connection = http.client.HTTPConnection(address, port, timeout=10.0)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["X-Forwarded-For"] = self.client_address[0]
                connection.request(self.command, self.path, headers=headers)
                response = connection.getresponse()
                self.send_response(response.status, response.reason)
                self.replied = True
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP | {"server", "date"}:
                        self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    while chunk := response.read1(65536):
                        self.wfile.write(chunk)
                return response.status
            finally:
                connection.close()

        def _reply(self, status: int, text: str) -> None:
            if self.replied:  # the backend's response has begun; all we can do is close
                return
            self.replied = True
            body = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def version_string(self) -> str:
            return self.server_version

        def log_message(self, format: str, *args: object) -> None:
            pass  # do_GET writes one access-log line of its own

    return Handler


def serve(listen: str, router: Router) -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the lab ingress listens on loopback only, not {host}")
    server = ThreadingHTTPServer((host, int(port)), make_handler(router))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--listen", default="127.0.0.1:5002")
    parser.add_argument("--class", dest="ingress_class", default="lab")
    parser.add_argument("--pod-ip-prefix", default="127.0.1.")
    parser.add_argument("--pod-network-prefix", default="10.244.0.")
    args = parser.parse_args(argv)
    setup_logging("ingress")
    network = PodNetwork(pod_prefix=args.pod_network_prefix, loopback_prefix=args.pod_ip_prefix)
    router = Router(Kube(args.kubeconfig), ingress_class=args.ingress_class, network=network)
    server = serve(args.listen, router)
    log.info("routing Ingresses of class %r on %s", args.ingress_class, args.listen)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
