"""Plays an ingress controller in the lab: routes HTTP requests by the real Ingress objects.

Test-only stand-in. It listens where the ACME server sends HTTP-01 validation requests and routes
each request from a watch cache of the cluster's Ingresses, Services and EndpointSlices, as a real
ingress controller does (``_cache``: list, then watch, list again when a watch expires or
breaks): it starts serving once all three are listed, and keeps answering from what it last saw
while the API server restarts or is unreachable, instead of failing the CA's validation. Then it
proxies GET and HEAD to a ready endpoint. Endpoint addresses are on the lab's pod network and are
mapped back to the loopback address the Pod's process listens on (see ``_podnet``); any other
address is refused, so no request leaves 127.0.0.0/8, except to the real node's Pods
(10.244.1.0/24, `make node-up`), which are proxied to directly on the lab's bridge. 404: no rule
matches; 503: no ready endpoint; 502: the backend refused or failed.

Which backend a request goes to follows the Ingress API (``_routing``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from ._cache import WatchCache
from ._kube import Kube, ListWatch, setup_logging
from ._podnet import PodNetwork
from ._routing import (
    Backend,
    Endpoint,
    in_node_pod_range,
    request_host,
    select_backend,
    select_endpoint,
)

JSON = dict[str, Any]
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

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SYNC_TIMEOUT = 60.0

log = logging.getLogger("standins.ingress")


class Store(Protocol):
    """What routing reads: the objects a watch cache holds (``_cache.WatchCache``)."""

    def items(self) -> list[JSON]: ...

    def get(self, namespace: str, name: str) -> JSON | None: ...

    def labelled(self, namespace: str, label: str, value: str) -> list[JSON]: ...


@dataclass(frozen=True)
class Caches:
    """The three resources an ingress controller watches, cluster-wide."""

    ingresses: WatchCache
    services: WatchCache
    slices: WatchCache

    @classmethod
    def create(cls) -> Caches:
        return cls(
            ingresses=WatchCache("/apis/networking.k8s.io/v1/ingresses"),
            services=WatchCache("/api/v1/services"),
            slices=WatchCache("/apis/discovery.k8s.io/v1/endpointslices"),
        )

    def all(self) -> tuple[WatchCache, ...]:
        return (self.ingresses, self.services, self.slices)

    def start(self, kube: ListWatch, stop: threading.Event) -> None:
        for cache in self.all():
            cache.start(kube, stop)

    def wait_synced(self, timeout: float) -> list[str]:
        """The paths not listed within ``timeout`` (all caches share it); empty when synced."""
        deadline = time.monotonic() + timeout
        return [
            c.path for c in self.all() if not c.wait_synced(max(0.0, deadline - time.monotonic()))
        ]


class Router:
    """Answers what a request needs from the watch caches; never asks the API server itself."""

    def __init__(
        self,
        *,
        ingresses: Store,
        services: Store,
        slices: Store,
        ingress_class: str,
        network: PodNetwork,
    ) -> None:
        self.ingresses, self.services, self.slices = ingresses, services, slices
        self.ingress_class = ingress_class
        self.network = network

    @classmethod
    def from_caches(cls, caches: Caches, *, ingress_class: str, network: PodNetwork) -> Router:
        return cls(
            ingresses=caches.ingresses,
            services=caches.services,
            slices=caches.slices,
            ingress_class=ingress_class,
            network=network,
        )

    def backend(self, host: str, path: str) -> Backend | None:
        ingresses = self.ingresses.items()
        return select_backend(ingresses, host=host, path=path, ingress_class=self.ingress_class)

    def endpoint(self, backend: Backend) -> Endpoint | None:
        service = self.services.get(backend.namespace, backend.service)
        if service is None:
            return None
        slices = self.slices.labelled(backend.namespace, SERVICE_NAME_LABEL, backend.service)
        return select_endpoint(service, slices, backend)


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
    caches = Caches.create()
    caches.start(Kube(args.kubeconfig), threading.Event())
    # Like a controller, it serves once it knows the cluster: the lab's probe waits for the port.
    unsynced = caches.wait_synced(SYNC_TIMEOUT)
    if unsynced:
        raise SystemExit(f"ingress: no list of {', '.join(unsynced)} after {SYNC_TIMEOUT:.0f}s")
    router = Router.from_caches(caches, ingress_class=args.ingress_class, network=network)
    server = serve(args.listen, router)
    log.info(
        "routing Ingresses of class %r on %s from a watch cache (%d Ingresses, %d Services, "
        "%d EndpointSlices)",
        args.ingress_class,
        args.listen,
        len(caches.ingresses),
        len(caches.services),
        len(caches.slices),
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
