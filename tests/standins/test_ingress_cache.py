"""The ingress stand-in routes from its watch cache, and keeps answering while the API is gone.

A private instance of the stand-in (its own port, its own ingress class) watches the lab's real
API server through a small TCP relay owned by the test. Once it routes a real Ingress, the relay
stops listening, so every list and watch of the instance is refused, as during an API server
restart; the instance still answers from what it saw. An Ingress created meanwhile stays unknown
to it until the relay listens again and its watch lists again. The shared lab is never touched.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.lab.labenv import Lab
from tests.lab.standins._kube import Kube
from tests.lab.standins._podnet import PodNetwork
from tests.lab.standins.ingress import Caches, Router, serve
from tests.lab.waits import wait_for

pytestmark = pytest.mark.lab

JSON = dict[str, Any]
NETWORK = PodNetwork()
SLOT = 248  # a loopback pod address for the backend; the port is picked by the kernel
WAIT = 30.0


class Relay:
    """Forwards 127.0.0.1:port to the API server; `stop` closes the port and every connection."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                # shutdown, not only close: it ends the accept() blocked in the other thread,
                # which would otherwise keep the port listening.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class Counting:
    """The instance's API client, counting the lists and watches that failed."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.failures = 0

    def get(self, path: str, query: Mapping[str, str] | None = None) -> JSON:
        try:
            return self.kube.get(path, query)
        except Exception:
            self.failures += 1
            raise

    def watch(
        self, path: str, *, resource_version: str, query: Mapping[str, str]
    ) -> Iterator[JSON]:
        try:
            yield from self.kube.watch(path, resource_version=resource_version, query=query)
        except Exception:
            self.failures += 1
            raise


class Backend(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"served {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def backend_port() -> Iterator[int]:
    server = ThreadingHTTPServer((NETWORK.local_ip(SLOT), 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def relayed_kubeconfig(lab: Lab, port: int, path: Path) -> Path:
    config = json.loads(lab.kubeconfig.read_text())
    server = urlsplit(config["clusters"][0]["cluster"]["server"])
    config["clusters"][0]["cluster"]["server"] = f"{server.scheme}://127.0.0.1:{port}"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def api_port(lab: Lab) -> int:
    config = json.loads(lab.kubeconfig.read_text())
    port = urlsplit(config["clusters"][0]["cluster"]["server"]).port
    assert port is not None
    return port


def objects(namespace: str, ingress_class: str, backend_port: int) -> list[JSON]:
    """A Service without selector, its EndpointSlice (the backend) and two Ingresses."""

    def ingress(name: str) -> JSON:
        backend = {"service": {"name": "web", "port": {"number": 80}}}
        paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "ingressClassName": ingress_class,
                "rules": [{"host": f"{name}.{namespace}.example", "http": {"paths": paths}}],
            },
        }

    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": backend_port}]},
    }
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-1",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": "web",
                "endpointslice.kubernetes.io/managed-by": "acmebridge-test",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": backend_port}],
        "endpoints": [{"addresses": [NETWORK.pod_ip(SLOT)], "conditions": {"ready": True}}],
    }
    return [service, endpoint_slice, ingress("early"), ingress("late")]


def get(port: int, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/.well-known/acme-challenge/t", headers={"Host": host})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_it_answers_from_its_cache_while_the_api_server_is_unreachable(
    lab: Lab, namespace: str, backend_port: int, tmp_path: Path
) -> None:
    ingress_class = f"cache-{namespace}"
    service, endpoint_slice, early, late = objects(namespace, ingress_class, backend_port)
    for obj in (service, endpoint_slice, early):
        lab.kubectl("apply", "-f", "-", stdin=json.dumps(obj))

    relay = Relay(api_port(lab))
    relay.start()
    kube = Counting(Kube(str(relayed_kubeconfig(lab, relay.port, tmp_path / "kubeconfig"))))
    stop = threading.Event()
    caches = Caches.create()
    caches.start(kube, stop)
    server = None
    try:
        assert not caches.wait_synced(WAIT), "the instance did not list everything"
        router = Router.from_caches(caches, ingress_class=ingress_class, network=NETWORK)
        server = serve("127.0.0.1:0", router)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        early_host = f"early.{namespace}.example"
        wait_for(lambda: get(port, early_host) == 200, timeout=WAIT, describe="the first route")

        relay.stop()
        lab.kubectl("apply", "-f", "-", stdin=json.dumps(late))
        # Each of the three caches has failed to watch and then to list again: it is cut off.
        wait_for(
            lambda: kube.failures >= 6,
            timeout=WAIT,
            describe=lambda: f"failed lists and watches ({kube.failures})",
        )
        assert get(port, early_host) == 200, "the cached route stopped working"
        assert get(port, f"late.{namespace}.example") == 404, "it cannot know the new Ingress"

        relay.start()  # the same port: the API server is back
        wait_for(
            lambda: get(port, f"late.{namespace}.example") == 200,
            timeout=WAIT,
            describe="the Ingress created while it was cut off, after it listed again",
        )
        assert get(port, early_host) == 200
    finally:
        stop.set()
        relay.stop()
        if server is not None:
            server.shutdown()
