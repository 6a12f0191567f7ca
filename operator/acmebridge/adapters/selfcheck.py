"""HTTP-01 self check: fetch the challenge URL the way the ACME server will, before answering.

Answering a challenge the CA cannot yet reach fails the whole order (RFC 8555 §7.1.6: one
invalid authorization makes the order invalid), so the operator first fetches
``http://<identifier>:<port>/.well-known/acme-challenge/<token>`` itself and answers only when it
gets the key authorization back. Internal networks often resolve names differently inside the
cluster than the CA does; ``nameservers`` lets the check use the resolvers the CA uses.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.resolver

MAX_BODY = 4096


@dataclass(frozen=True)
class SelfCheckResult:
    ok: bool
    detail: str


def _resolve(name: str, nameservers: Sequence[str]) -> str:
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        pass
    if not nameservers:
        return str(socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)[0][4][0])
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = []
    ports = set()
    for ns in nameservers:
        host, _, port = ns.rpartition(":") if ns.count(":") == 1 else (ns, "", "")
        resolver.nameservers.append(host)
        ports.add(int(port) if port else 53)
    resolver.port = ports.pop() if len(ports) == 1 else 53
    resolver.lifetime = 5.0
    answer = resolver.resolve(name, "A")
    return str(answer[0])


def check_http01(
    *,
    identifier: str,
    token: str,
    expected: str,
    port: int,
    nameservers: Sequence[str] = (),
    timeout: float = 5.0,
) -> SelfCheckResult:
    """GET the challenge URL; ok only when the body is exactly the key authorization."""
    path = f"/.well-known/acme-challenge/{token}"
    url = f"http://{identifier}:{port}{path}" if port != 80 else f"http://{identifier}{path}"
    try:
        address = _resolve(identifier, nameservers)
    except (OSError, dns.exception.DNSException) as e:
        return SelfCheckResult(False, f"cannot resolve {identifier}: {e}")
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": identifier, "User-Agent": "acmebridge"})
        resp = conn.getresponse()
        body = resp.read(MAX_BODY).decode("ascii", "replace").strip()
    except (OSError, http.client.HTTPException) as e:
        return SelfCheckResult(False, f"GET {url} failed: {e}")
    finally:
        conn.close()
    if resp.status != 200:
        return SelfCheckResult(False, f"GET {url} returned HTTP {resp.status}")
    if body != expected:
        return SelfCheckResult(False, f"GET {url} returned a different key authorization")
    return SelfCheckResult(True, f"GET {url} served the key authorization")
