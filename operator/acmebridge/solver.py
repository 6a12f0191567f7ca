"""The HTTP-01 solver process: ``acmebridge solve-http01``, run in a temporary solver Pod.

It answers exactly one challenge: ``GET /.well-known/acme-challenge/<token>`` for one domain
returns the key authorization (RFC 8555 §8.3), and ``/healthz`` answers the readiness probe.
Everything else is 404, so a solver exposed by a broad Ingress rule leaks nothing. The key
authorization is public by design (the ACME server fetches it over plain HTTP); no private key
is ever given to this process. It uses only the standard library so that it starts fast in a
restricted Pod with a read-only root filesystem.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
DEFAULT_PORT = 8089

log = logging.getLogger("acmebridge.solver")


def answer(
    *, path: str, host: str, domain: str, token: str, key_authorization: str
) -> bytes | None:
    """The body to serve for a request, or None for 404. Pure, so it is unit-tested."""
    if path.split("?", 1)[0] != CHALLENGE_PREFIX + token:
        return None
    # The ACME server sends Host: <identifier>; a port may follow, and IPv6 hosts are bracketed.
    hostname = host.strip().lower()
    if hostname.startswith("["):
        hostname = hostname[1 : hostname.find("]")]
    elif hostname.count(":") == 1:
        hostname = hostname.split(":", 1)[0]
    if hostname.rstrip(".") != domain.lower().rstrip("."):
        return None
    return key_authorization.encode("ascii")


def make_handler(domain: str, token: str, key_authorization: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "acmebridge-solver"
        sys_version = ""

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, b"ok")
                return
            body = answer(
                path=self.path,
                host=self.headers.get("Host", ""),
                domain=domain,
                token=token,
                key_authorization=key_authorization,
            )
            self._send(200 if body is not None else 404, body or b"not found")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.info("%s %s", self.address_string(), format % args)

    return Handler


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port or DEFAULT_PORT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="acmebridge solve-http01", description=__doc__)
    p.add_argument("--listen", default=f"0.0.0.0:{DEFAULT_PORT}", help="address:port to serve on")
    p.add_argument("--domain", required=True, help="the identifier being validated")
    p.add_argument("--token", required=True, help="the challenge token")
    p.add_argument("--key-authorization", required=True, help="token.thumbprint to serve")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    host, port = parse_listen(args.listen)
    server = ThreadingHTTPServer(
        (host, port), make_handler(args.domain, args.token, args.key_authorization)
    )
    # SIGTERM from the kubelet must end the process promptly and cleanly.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("serving the HTTP-01 challenge for %s on %s:%d", args.domain, host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
