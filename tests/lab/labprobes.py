"""Readiness probes for the lab's processes: each returns None when ready, or what is missing.

Standard library only (dnspython is imported when the DNS probe runs), and never through a proxy:
everything probed is on loopback.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.lab import labproc

Probe = Callable[[], str | None]


def http_get(
    url: str,
    *,
    ca: Path | None = None,
    client: tuple[Path, Path] | None = None,
    verify: bool = True,
    timeout: float = 2.0,
) -> tuple[int, bytes] | None:
    """(status, body), or None when nothing answered."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if url.startswith("https:"):
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if client:
            ctx.load_cert_chain(str(client[0]), str(client[1]))
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ssl.SSLError):
        return None


def expect_ok(
    url: str,
    *,
    ca: Path | None = None,
    client: tuple[Path, Path] | None = None,
    verify: bool = True,
) -> Probe:
    """Ready when ``url`` answers 200."""

    def probe() -> str | None:
        got = http_get(url, ca=ca, client=client, verify=verify)
        if got is None:
            return f"{url} does not answer"
        return None if got[0] == 200 else f"{url} answered {got[0]}: {got[1][:200]!r}"

    return probe


def dns_answers_loopback(port: int) -> str | None:
    """challtestsrv answers every A query with 127.0.0.1 (its -defaultIPv4)."""
    import dns.exception
    import dns.message
    import dns.query

    query = dns.message.make_query("lab-probe.test.", "A")
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=1)
    except (dns.exception.DNSException, OSError) as exc:
        return f"DNS on 127.0.0.1:{port} does not answer: {exc}"
    addresses = [rr.address for rrset in reply.answer for rr in rrset]
    return None if addresses == ["127.0.0.1"] else f"DNS answered {addresses}, not [127.0.0.1]"


def challtestsrv(*, management_port: int, dns_port: int) -> Probe:
    """Ready when both its management API and its DNS server answer."""

    def probe() -> str | None:
        # The management API has no health path; any HTTP answer (404 included) means it serves.
        if http_get(f"http://127.0.0.1:{management_port}/") is None:
            return f"management API on 127.0.0.1:{management_port} does not answer"
        return dns_answers_loopback(dns_port)

    return probe


def acme_directory(url: str, *, tls_ca: Path) -> Probe:
    """Ready when the ACME directory answers over TLS verified with ``tls_ca``."""

    def probe() -> str | None:
        got = http_get(url, ca=tls_ca)
        if got is None:
            return f"{url} does not answer over TLS with {tls_ca.name}"
        if got[0] != 200 or b"newOrder" not in got[1]:
            return f"{url} answered {got[0]}: {got[1][:200]!r}"
        return None

    return probe


def listening(port: int) -> Probe:
    """Ready when something accepts TCP connections on 127.0.0.1:``port``."""

    def probe() -> str | None:
        return None if labproc.accepts_tcp(port) else f"nothing listens on 127.0.0.1:{port}"

    return probe


def none() -> str | None:
    """For a process with no endpoint: ready as long as it runs (labctl checks that)."""
    return None
