"""The HTTP-01 self check against the real solver server on loopback: it answers only when the
solver serves exactly the key authorization."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from acmebridge.adapters.selfcheck import check_http01
from acmebridge.solver import make_handler


@pytest.fixture
def solver() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler("127.0.0.1", "tok", "tok.thumb"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("token", "expected", "ok", "detail"),
    [
        pytest.param(
            "tok", "tok.thumb", True, "served the key authorization", id="passes when served"
        ),
        pytest.param("other", "other.thumb", False, "HTTP 404", id="fails on a 404"),
        pytest.param(
            "tok",
            "tok.other",
            False,
            "different key authorization",
            id="fails when another key authorization is served",
        ),
    ],
)
def test_self_check(solver: int, token: str, expected: str, ok: bool, detail: str) -> None:
    result = check_http01(identifier="127.0.0.1", token=token, expected=expected, port=solver)
    assert result.ok is ok
    assert detail in result.detail


def test_self_check_reports_an_unreachable_solver() -> None:
    result = check_http01(identifier="127.0.0.1", token="t", expected="t.k", port=9, timeout=1)
    assert not result.ok
    assert "failed" in result.detail
