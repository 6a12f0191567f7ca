"""An ACME server behind an HTTP proxy: the operator honours HTTP_PROXY/HTTPS_PROXY and NO_PROXY
from its environment, as requests does (the session reads them once per origin, not per
request: acme_transport.Transport)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from acmebridge.adapters.acme_client import AcmeSession

DIRECTORY = json.dumps(
    {
        "newNonce": "http://acme.internal.test/nonce",
        "newAccount": "http://acme.internal.test/account",
        "newOrder": "http://acme.internal.test/order",
    }
).encode()


class Recorder:
    """A loopback HTTP server that answers every request with the directory and keeps each
    request line: as a proxy it sees absolute URLs (``GET http://host/path``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                request = conn.recv(65536).decode("latin-1")
                self.lines.append(request.split("\r\n", 1)[0])
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(DIRECTORY)}\r\nConnection: close\r\n\r\n"
                )
                conn.sendall(head.encode() + DIRECTORY)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Recorder, Recorder]]:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    proxy, direct = Recorder(), Recorder()
    try:
        yield proxy, direct
    finally:
        proxy.close()
        direct.close()


def test_the_directory_is_fetched_through_the_proxy_the_environment_names(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, _ = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with AcmeSession("http://acme.internal.test/directory") as session:
        assert session.directory().new_order == "http://acme.internal.test/order"
        session.directory(refresh=True)
    assert proxy.lines == ["GET http://acme.internal.test/directory HTTP/1.1"] * 2


def test_a_server_named_in_no_proxy_is_reached_directly(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, direct = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with AcmeSession(f"{direct.url}/directory") as session:
        session.directory()
    assert (proxy.lines, direct.lines) == ([], ["GET /directory HTTP/1.1"])
