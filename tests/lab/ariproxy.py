"""A test-only proxy in front of a Pebble that says "renew now" about every certificate.

It serves the directory with ``renewalInfo`` pointing at itself, and answers every renewal
information request with a window that ended an hour ago, as a CA does to force renewal after a
revocation (and as a misconfigured one does about certificates it has just issued). Everything
else in the directory still points at Pebble. It serves the lab's Pebble TLS certificate, so the
Issuer trusts it with the same caBundle. It is a fixture of the tests, never a switch in the
product.
"""

from __future__ import annotations

import json
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from tests.lab.pebbles import ExtraPebble


class PastWindowProxy:
    def __init__(self, pebble: ExtraPebble) -> None:
        self.pebble = pebble
        self.renewal_info_requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/dir":
                    body = proxy._directory()
                    self._send(200, body)
                elif self.path.startswith("/renewal-info/"):
                    proxy.renewal_info_requests += 1
                    now = datetime.now(UTC)
                    window = {
                        "start": (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "end": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                    self._send(200, {"suggestedWindow": window}, retry_after=1)
                else:
                    self._send(404, {"detail": "not proxied"})

            def _send(self, status: int, body: Any, *, retry_after: int | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                if retry_after is not None:
                    self.send_header("Retry-After", str(retry_after))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki: Path = pebble.layout.pebble
        context.load_cert_chain(pki / "tls.pem", pki / "tls-key.pem")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _directory(self) -> dict[str, Any]:
        got = requests.get(self.pebble.directory_url, verify=str(self.pebble.tls_ca), timeout=5)
        directory: dict[str, Any] = got.json()
        directory["renewalInfo"] = f"https://127.0.0.1:{self.port}/renewal-info"
        return directory

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
