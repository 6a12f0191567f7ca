"""Reading from servers that misbehave (too big, too slow, redirecting, compressed): the AIA
fetch, and the body reader under every ACME request.

Whoever runs the CA, or creates an Issuer pointing at a server of their choosing, picks the
server at the other end; an AIA URL comes from a certificate that CA issued. A small server on
127.0.0.1 plays each part; the reader must give up rather than hold a worker thread or memory.
The outcome is asserted, not the time it took: a reader without the deadline would still be
reading when the test's own timeout ends it.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmebridge.adapters import aia
from acmebridge.adapters.acme_transport import HttpError, _read_limited

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROOT_DER = x509.load_pem_x509_certificate((FIXTURES / "root.pem").read_bytes()).public_bytes(
    serialization.Encoding.DER
)

Handler = Callable[[socket.socket], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], str]]:
    """Serves one handler per test on a free loopback port; returns the URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(handler: Handler) -> str:
        def loop() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.recv(65536)  # the request; its content does not matter here
                    # The client hangs up early in several tests: that is the point.
                    with contextlib.suppress(OSError):
                        handler(conn)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)
        return f"http://127.0.0.1:{listener.getsockname()[1]}/root.der"

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)
    listener.close()


def respond(body: bytes, *, status: str = "200 OK", headers: str = "") -> Handler:
    def handler(conn: socket.socket) -> None:
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
        conn.sendall(head.encode() + body)

    return handler


def test_fetches_a_der_certificate(serve: Callable[[Handler], str]) -> None:
    url = serve(respond(ROOT_DER, headers="Content-Type: application/pkix-cert\r\n"))
    [cert] = aia.fetch_ca_issuers(url)
    assert cert.public_bytes(serialization.Encoding.DER) == ROOT_DER


@pytest.mark.parametrize(
    ("handler", "says"),
    [
        pytest.param(
            respond(b"x" * (aia.MAX_AIA_BYTES + 1)),
            "larger than",
            id="a declared body over 64 KiB is not read",
        ),
        pytest.param(
            lambda conn: conn.sendall(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * (aia.MAX_AIA_BYTES + 1)
            ),
            "larger than",
            id="an undeclared body is cut off after 64 KiB",
        ),
        pytest.param(
            respond(b"", status="302 Found", headers="Location: http://169.254.169.254/\r\n"),
            "HTTP 302",
            id="a redirect is not followed",
        ),
        pytest.param(
            respond(
                gzip.compress(b"\0" * (10 * aia.MAX_AIA_BYTES)),
                headers="Content-Encoding: gzip\r\n",
            ),
            "not a certificate",
            id="a compressed body is not unpacked",
        ),
    ],
)
def test_gives_up_on_a_misbehaving_server(
    serve: Callable[[Handler], str],
    caplog: pytest.LogCaptureFixture,
    handler: Handler,
    says: str,
) -> None:
    url = serve(handler)
    with caplog.at_level(logging.INFO, logger="acmebridge.aia"):
        assert aia.fetch_ca_issuers(url) == []
    assert says in caplog.text


def test_gives_up_on_a_server_that_sends_one_byte_at_a_time(
    serve: Callable[[Handler], str], caplog: pytest.LogCaptureFixture
) -> None:
    # Each byte arrives well within the per-read timeout; only the overall deadline stops it.
    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n")
        for _ in range(65536):
            conn.sendall(b"x")
            time.sleep(0.05)

    url = serve(drip)
    with caplog.at_level(logging.INFO, logger="acmebridge.aia"):
        assert aia.fetch_ca_issuers(url, timeout=0.5) == []
    assert "did not arrive within" in caplog.text


# --- the ACME body reader --------------------------------------------------------------------

LIMIT = 1024 * 1024


def read(url: str, *, seconds: float = 5.0) -> bytes:
    with requests.get(url, stream=True, timeout=(2, 2)) as response:
        return _read_limited(response, LIMIT, seconds)


def test_reads_a_body_within_the_limits(serve: Callable[[Handler], str]) -> None:
    assert read(serve(respond(b'{"status": "valid"}'))) == b'{"status": "valid"}'


@pytest.mark.parametrize(
    ("handler", "error", "says"),
    [
        pytest.param(
            respond(b"x" * (LIMIT + 1)),
            HttpError,
            "the limit is",
            id="a declared body over the limit is not read",
        ),
        pytest.param(
            lambda conn: conn.sendall(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * (LIMIT + 1)
            ),
            HttpError,
            "more than",
            id="an undeclared body is cut off at the limit",
        ),
        pytest.param(
            respond(gzip.compress(b"\0" * (20 * LIMIT)), headers="Content-Encoding: gzip\r\n"),
            HttpError,
            "more than",
            id="a small compressed body that unpacks past the limit is cut off",
        ),
    ],
)
def test_refuses_a_body_over_the_limit(
    serve: Callable[[Handler], str], handler: Handler, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        read(serve(handler))


def test_gives_up_on_an_acme_server_that_sends_one_byte_at_a_time(
    serve: Callable[[Handler], str],
) -> None:
    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n")
        for _ in range(65536):
            conn.sendall(b"x")
            time.sleep(0.05)

    with pytest.raises(requests.exceptions.ReadTimeout, match="did not finish in time"):
        read(serve(drip), seconds=0.5)
