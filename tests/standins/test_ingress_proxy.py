"""The ingress stand-in proxies to a real local backend and answers 404/502/503 as it should.

These run without the lab: the watch caches are filled by hand with plain objects (what a list
would have put there), and the backend is a real HTTP server on a loopback pod address.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.lab.standins._podnet import PodNetwork
from tests.lab.standins.ingress import Caches, Router, serve

NETWORK = PodNetwork()
SLOT = 250  # high, so a node agent running on this machine is unlikely to use it


class Echo(BaseHTTPRequestHandler):
    """Streams back what it received, in two writes, without a Content-Length."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.send_response(203)
        self.send_header("X-Backend", "echo")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(f"path={self.path}\n".encode())
            self.wfile.flush()
            self.wfile.write(f"host={self.headers['Host']}\n".encode())

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def backend_port() -> Iterator[int]:
    server = ThreadingHTTPServer((NETWORK.local_ip(SLOT), 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _caches(backend_port: int) -> Caches:
    def endpoint_slice(service: str, address: str) -> dict[str, Any]:
        return {
            "metadata": {
                "name": f"{service}-s",
                "namespace": "ns",
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": backend_port}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        }

    def rule(host: str) -> dict[str, Any]:
        backend = {"service": {"name": host.split(".")[0], "port": {"number": 80}}}
        paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
        return {"host": host, "http": {"paths": paths}}

    names = ("up", "empty", "refused", "outside")
    ingress = {
        "metadata": {"name": "i", "namespace": "ns"},
        "spec": {"ingressClassName": "lab", "rules": [rule(f"{n}.example") for n in names]},
    }
    caches = Caches.create()
    caches.ingresses.replace([ingress])
    caches.services.replace(
        [
            {
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": backend_port}]},
            }
            for name in names
        ]
    )
    caches.slices.replace(
        [
            endpoint_slice("up", NETWORK.pod_ip(SLOT)),
            endpoint_slice("refused", NETWORK.pod_ip(SLOT - 1)),  # nothing listens there
            endpoint_slice("outside", "192.0.2.10"),
        ]
    )
    return caches


@pytest.fixture(scope="module")
def ingress_port(backend_port: int) -> Iterator[int]:
    router = Router.from_caches(_caches(backend_port), ingress_class="lab", network=NETWORK)
    server = serve("127.0.0.1:0", router)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _request(
    port: int, host: str, path: str, method: str = "GET"
) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers={"Host": f"{host}:5002"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def test_a_request_reaches_the_backend_with_path_query_and_host(ingress_port: int) -> None:
    status, headers, body = _request(ingress_port, "up.example", "/a/b?x=1&y=2")
    assert (status, headers.get("X-Backend")) == (203, "echo")
    assert body == "path=/a/b?x=1&y=2\nhost=up.example:5002\n"


def test_head_returns_the_backend_status_without_body(ingress_port: int) -> None:
    assert _request(ingress_port, "up.example", "/", method="HEAD")[::2] == (203, "")


@pytest.mark.parametrize(
    ("host", "status"),
    [
        pytest.param("nobody.example", 404, id="no rule for the host: 404"),
        pytest.param("empty.example", 503, id="a Service without endpoints: 503"),
        pytest.param("refused.example", 502, id="a backend that refuses connections: 502"),
        pytest.param("outside.example", 502, id="an endpoint off the pod network is never dialled"),
    ],
)
def test_failures_have_the_status_a_controller_gives(
    ingress_port: int, host: str, status: int
) -> None:
    assert _request(ingress_port, host, "/")[0] == status


def test_methods_other_than_get_and_head_are_refused(ingress_port: int) -> None:
    assert _request(ingress_port, "up.example", "/", method="POST")[0] == 405


def test_the_ingress_refuses_to_listen_beyond_loopback() -> None:
    router = Router.from_caches(Caches.create(), ingress_class="lab", network=NETWORK)
    with pytest.raises(ValueError, match="loopback only"):
        serve("0.0.0.0:0", router)
