"""One DNS question or update, sent and answered within a deadline: the RFC 2136 adapter's wire.

Its own small UDP/TCP exchange rather than ``dns.query``: when a server rejects a TSIG signature,
dnspython's query functions raise before the reply's rcode can be read, and the rcode and TSIG
error (RFC 8945 §5.2) are exactly what a user fixing the key needs to see. Replies are checked
as ``dns.query`` checks them (id, question, TSIG); a truncated UDP reply is asked again over TCP
(RFC 7766). Every failure is a :class:`~acmebridge.domain.errors.DnsProblem` naming the server:
no answer and an unreachable server are TEMPORARY, a TSIG refusal PERMANENT.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.tsig

from acmebridge.domain.dns01 import Record, Reply, explain_rcode, parse_server
from acmebridge.domain.errors import DnsProblem, Severity

__all__ = [
    "LOOKUP_TIMEOUT",
    "Target",
    "deadline_in",
    "exchange",
    "join",
    "parse_target",
    "query",
    "resolvers",
]

# The longest a server name (``ns1.example.com:53``) may take to resolve.
LOOKUP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Target:
    """A server to send to: the text the user wrote (for messages) and the socket address."""

    label: str
    host: str
    port: int


def query(target: Target, name: str, rdtype: str, deadline: float, *, tcp: bool = False) -> Reply:
    """Asks ``target`` one question (recursion desired) and reads its answer into a Reply."""
    request = dns.message.make_query(name, rdtype)
    message = exchange(request, target, tcp=tcp, deadline=deadline, what=f"{rdtype}? {name}")
    return Reply(
        server=target.label,
        rcode=dns.rcode.to_text(message.rcode()),
        answer=records(message.answer),
        authority=records(message.authority),
        authoritative=bool(message.flags & dns.flags.AA),
    )


def records(section: Sequence[dns.rrset.RRset]) -> tuple[Record, ...]:
    """A message section as plain records: names lower-case, TXT strings joined (as ACME reads)."""
    out: list[Record] = []
    for rrset in section:
        owner = rrset.name.to_text().lower()
        kind = dns.rdatatype.to_text(rrset.rdtype)
        for rdata in rrset:
            if kind == "TXT":
                data = b"".join(rdata.strings).decode("utf-8", "replace")
            elif kind in ("CNAME", "NS"):
                data = rdata.target.to_text().lower()
            elif kind in ("A", "AAAA"):
                data = rdata.address
            else:
                data = rdata.to_text()
            out.append(Record(owner, kind, data))
    return tuple(out)


def exchange(
    request: dns.message.Message, target: Target, *, tcp: bool, deadline: float, what: str
) -> dns.message.Message:
    """Sends ``request`` and returns the validated reply; UDP falls back to TCP on truncation."""
    wire = request.to_wire()  # signs with TSIG when the request has a key
    proto = "TCP" if tcp else "UDP"
    try:
        raw = _tcp(wire, target, deadline) if tcp else _udp(wire, request.id, target, deadline)
    except TimeoutError:
        raise DnsProblem(
            f"DNS server {target.label} did not answer {what} in time (over {proto})",
            server=target.label,
            severity=Severity.TEMPORARY,
            short=f"no answer over {proto}",
        ) from None
    except OSError as e:
        reason = e.strerror or str(e)
        raise DnsProblem(
            f"cannot reach DNS server {target.label} over {proto} for {what}: {reason}",
            server=target.label,
            severity=Severity.TEMPORARY,
            short=f"unreachable over {proto} ({reason})",
        ) from None
    reply = _parse(raw, request, target, what)
    if not tcp and reply.flags & dns.flags.TC:
        # RFC 1035 §4.2.1 / RFC 7766: a truncated UDP answer is asked again over TCP.
        return exchange(request, target, tcp=True, deadline=deadline, what=what)
    return reply


def _parse(
    raw: bytes, request: dns.message.Message, target: Target, what: str
) -> dns.message.Message:
    signed = request.had_tsig
    try:
        reply = dns.message.from_wire(
            raw, keyring=request.keyring if signed else None, request_mac=request.mac or b""
        )
    except (dns.tsig.PeerError, dns.exception.FormError, dns.message.UnknownTSIGKey) as e:
        if not signed:
            raise _unusable(target, what, e) from None
        # A server that rejects our signature answers unsigned or with a TSIG error (RFC 8945
        # §5.2): read the same bytes without validation to report what it said.
        raise _tsig_refusal(raw, target, what, e) from None
    except dns.exception.DNSException as e:
        raise _unusable(target, what, e) from None
    if not request.is_response(reply):
        raise _unusable(target, what, ValueError("the reply is for another question"))
    return reply


def _tsig_refusal(raw: bytes, target: Target, what: str, cause: Exception) -> DnsProblem:
    try:
        unsigned = dns.message.from_wire(raw, keyring=False)
    except dns.exception.DNSException:
        return _unusable(target, what, cause)
    rcode = dns.rcode.to_text(unsigned.rcode())
    tsig_error = None
    if unsigned.tsig:
        error = unsigned.tsig[0].error
        tsig_error = dns.rcode.to_text(error, True) if error else None
    if tsig_error is None and isinstance(cause, dns.tsig.PeerError):
        tsig_error = type(cause).__name__.removeprefix("Peer").replace("Bad", "BAD").upper()
    if rcode == "NOERROR" and tsig_error is None:
        # The server answered, but not with a signature our key verifies: not the server we
        # think, or a key mismatch on its side. Either way the reply cannot be trusted.
        return _unusable(target, what, cause)
    shown = f"{rcode} ({tsig_error})" if tsig_error else rcode
    return DnsProblem(
        f"DNS server {target.label} answered {shown} to {what}: {explain_rcode(rcode, tsig_error)}",
        server=target.label,
        rcode=rcode,
        tsig_error=tsig_error,
        severity=Severity.PERMANENT,
    )


def _unusable(target: Target, what: str, cause: Exception) -> DnsProblem:
    return DnsProblem(
        f"DNS server {target.label} sent a reply to {what} that cannot be used: {cause}",
        server=target.label,
        severity=Severity.TEMPORARY,
        short="unusable reply",
    )


def _udp(wire: bytes, query_id: int, target: Target, deadline: float) -> bytes:
    with socket.socket(_family(target.host), socket.SOCK_DGRAM) as sock:
        sock.settimeout(_remaining(deadline))
        sock.connect((target.host, target.port))
        sock.send(wire)
        while True:
            sock.settimeout(_remaining(deadline))
            raw = sock.recv(65535)
            # A stray datagram (an earlier query's late reply) is skipped, as dns.query does.
            if len(raw) >= 2 and struct.unpack("!H", raw[:2])[0] == query_id:
                return raw


def _tcp(wire: bytes, target: Target, deadline: float) -> bytes:
    with socket.create_connection((target.host, target.port), timeout=_remaining(deadline)) as sock:
        sock.settimeout(_remaining(deadline))
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", _read(sock, 2, deadline))
        return _read(sock, length, deadline)


def _read(sock: socket.socket, count: int, deadline: float) -> bytes:
    data = b""
    while len(data) < count:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionResetError(0, "the server closed the connection")
        data += chunk
    return data


def deadline_in(seconds: float) -> float:
    """The monotonic time ``seconds`` from now: what every function here is bounded by."""
    return time.monotonic() + seconds


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


# --- addresses ------------------------------------------------------------------------------------


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def join(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_target(server: str, *, deadline: float | None = None) -> Target:
    """``host[:port]`` -> a socket address; a host name is looked up, by ``deadline`` at the
    latest (LOOKUP_TIMEOUT from now when None)."""
    try:
        host, port = parse_server(server)
    except ValueError as e:
        raise DnsProblem(str(e), server=server, severity=Severity.PERMANENT) from None
    try:
        return Target(server, str(ipaddress.ip_address(host)), port)
    except ValueError:
        pass
    # getaddrinfo has no timeout of its own: a bounded dnspython lookup through the system's
    # resolvers instead (search domains apply, as for a cluster-local Service name).
    resolver = _system_resolver(server)
    until = deadline_in(LOOKUP_TIMEOUT) if deadline is None else deadline
    for rdtype in ("A", "AAAA"):
        try:
            resolver.lifetime = _remaining(until)
            answer = resolver.resolve(host, rdtype, search=True)
        except TimeoutError:
            break
        except dns.exception.DNSException:
            continue
        return Target(server, str(answer[0].address), port)
    raise DnsProblem(
        f"cannot resolve the DNS server name {host!r} (of {server})",
        server=server,
        severity=Severity.TEMPORARY,
    )


def _system_resolver(server: str) -> dns.resolver.Resolver:
    try:
        return dns.resolver.Resolver()
    except dns.exception.DNSException as e:
        raise DnsProblem(
            f"no system resolver to look up {server} with: {e}",
            server=server,
            severity=Severity.PERMANENT,
        ) from None


def resolvers(nameservers: Sequence[str], *, deadline: float | None = None) -> list[Target]:
    """The servers lookups go to: ``nameservers``, or the system's resolvers when empty."""
    if not nameservers:
        configured = _system_resolver("the system resolver").nameservers
        nameservers = [join(str(ns), 53) for ns in configured]
    return [parse_target(server, deadline=deadline) for server in nameservers]
