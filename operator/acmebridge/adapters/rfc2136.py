"""DNS-01 over RFC 2136: add and remove one TXT value, find zones, follow CNAMEs, check servers.

Synchronous, for the operator's thread pool, and bounded: every function takes a ``timeout`` in
seconds and returns or raises within it (plus the few milliseconds of parsing), whatever the
servers do. Failures raise :class:`~acmebridge.domain.errors.DnsProblem`, whose message names the
server and what it answered (``NOTAUTH (BADSIG)``, ``REFUSED``), and whose ``severity`` says
whether to retry: no answer, an unreachable server and SERVFAIL are TEMPORARY, refusals PERMANENT.

Updates touch exactly one value. RFC 2136 §2.5.1 adds one RR to an RRset and §2.5.4 deletes one
RR from it, so the ``_acme-challenge`` name a wildcard shares with its apex can hold both values
at once, and another client's values (a second operator, a person) stay. Both are idempotent
(§3.4.2.2 ignores a duplicate add; deleting an absent RR is a no-op), which is what makes a retry
after a lost UDP reply, or after an operator restart, safe.

Messages go through this module's own small UDP/TCP exchange rather than ``dns.query``: when a
server rejects a TSIG signature, dnspython's query functions raise before the reply's rcode can
be read, and the rcode and TSIG error are exactly what the user needs to see. Replies are
validated (id, question, TSIG) the same way ``dns.query`` does.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.resolver
import dns.rrset
import dns.tsig
import dns.update

from acmebridge.domain.dns01 import (
    MAX_CNAME_HOPS,
    Propagation,
    Record,
    Reply,
    absolute,
    cname_target,
    explain_rcode,
    parse_server,
    propagation,
    rcode_severity,
    soa_step,
    tsig_algorithm,
)
from acmebridge.domain.errors import DnsProblem, Severity

__all__ = [
    "DEFAULT_TTL",
    "TsigKey",
    "UpdateServer",
    "add_txt",
    "authoritative_servers",
    "check_txt",
    "find_zone",
    "follow_cname",
    "remove_txt",
]

# cert-manager's rfc2136 provider writes its records with a TTL of 60 s too.
DEFAULT_TTL = 60
UPDATE_TIMEOUT = 10.0
LOOKUP_TIMEOUT = 10.0
CHECK_TIMEOUT = 3.0
# One server gets at most this long per question before the next one is asked.
PER_TRY = 2.0
# A name has at most 127 labels; the SOA walk cannot take more steps than that.
_MAX_WALK = 128


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key as the Issuer gives it: name, algorithm (``HMACSHA256``), base64 secret."""

    name: str
    algorithm: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class UpdateServer:
    """Where updates go: the Issuer's ``nameserver`` (host:port), key and ``protocol``."""

    address: str
    tsig: TsigKey | None = None
    protocol: str = "UDP"
    timeout: float = UPDATE_TIMEOUT


@dataclass(frozen=True)
class _Target:
    """A server to send to: the text the user wrote (for messages) and the socket address."""

    label: str
    host: str
    port: int


# --- the operations the reconcile core calls ------------------------------------------------------


def add_txt(
    server: UpdateServer, *, zone: str, name: str, value: str, ttl: int = DEFAULT_TTL
) -> None:
    """Adds ``value`` to the TXT RRset at ``name`` in ``zone``; other values stay (§2.5.1)."""
    update = _update_message(server, zone)
    update.add(absolute(name), ttl, _txt(value))
    _send_update(server, update, f"the update adding a TXT value at {_where(name, zone)}")


def remove_txt(server: UpdateServer, *, zone: str, name: str, value: str) -> None:
    """Deletes exactly ``value`` from the TXT RRset at ``name`` (§2.5.4); no-op if absent."""
    update = _update_message(server, zone)
    update.delete(absolute(name), _txt(value))
    _send_update(server, update, f"the update removing a TXT value at {_where(name, zone)}")


def find_zone(
    name: str, *, nameservers: Sequence[str] = (), timeout: float = LOOKUP_TIMEOUT
) -> str:
    """The zone ``name`` belongs to (its apex, absolute), by walking SOA queries up the labels.

    ``nameservers`` are recursive resolvers or the zone's own servers (``host[:port]``); empty
    means the system's resolvers (/etc/resolv.conf).
    """
    targets, deadline = _resolvers(nameservers), _deadline(timeout)
    candidate: str | None = absolute(name)
    last: Reply | None = None
    for _ in range(_MAX_WALK):
        if candidate is None:
            break
        last = _ask(targets, candidate, "SOA", deadline)
        step = soa_step(candidate, last)
        if step.zone is not None:
            return step.zone
        candidate = step.next_name
    assert last is not None
    raise DnsProblem(
        f"no zone found for {absolute(name)}: the SOA walk reached the root, and "
        f"{last.server} last answered {last.rcode} ({explain_rcode(last.rcode)})",
        server=last.server,
        rcode=last.rcode,
        severity=rcode_severity(last.rcode),
    )


def follow_cname(
    name: str, *, nameservers: Sequence[str] = (), timeout: float = LOOKUP_TIMEOUT
) -> str:
    """Where the CNAME chain at ``name`` ends (``name`` itself when it is no CNAME).

    With ``cnameStrategy: Follow`` that is the name to update: the CA reads the TXT record at the
    chain's end. A server that does not recurse answers one hop at a time, so this asks again
    from the end of each answer until the chain stops.
    """
    targets, deadline = _resolvers(nameservers), _deadline(timeout)
    current = absolute(name)
    for _ in range(MAX_CNAME_HOPS):
        reply = _ask(targets, current, "TXT", deadline)
        nxt = cname_target(current, reply)
        if nxt == current:
            return current
        current = nxt
    raise DnsProblem(
        f"the CNAME chain at {absolute(name)} is longer than {MAX_CNAME_HOPS} CNAMEs",
        server=targets[0].label,
        severity=Severity.PERMANENT,
    )


def authoritative_servers(
    zone: str,
    *,
    nameservers: Sequence[str] = (),
    port: int = 53,
    timeout: float = LOOKUP_TIMEOUT,
) -> tuple[str, ...]:
    """``ip:port`` of every server the zone's NS records name, found through ``nameservers``.

    IPv4 addresses, and IPv6 ones only for servers without IPv4: many clusters have no IPv6
    route, and checking an unreachable address would hold the check back forever.
    """
    targets, deadline = _resolvers(nameservers), _deadline(timeout)
    apex = absolute(zone)
    reply = _ask(targets, apex, "NS", deadline)
    hosts = sorted({r.data for r in reply.answer if r.type == "NS" and r.name == apex})
    if not hosts:
        raise DnsProblem(
            f"{reply.server} gives no NS records for {apex} (it answered {reply.rcode})",
            server=reply.server,
            rcode=reply.rcode,
            severity=Severity.TEMPORARY
            if reply.rcode in ("NOERROR", "SERVFAIL")
            else rcode_severity(reply.rcode),
        )
    found: list[str] = []
    for host in hosts:
        for rdtype in ("A", "AAAA"):
            answer = _ask(targets, host, rdtype, deadline)
            addresses = [r.data for r in answer.answer if r.type == rdtype]
            found += [_join(address, port) for address in addresses]
            if addresses:
                break
    if not found:
        raise DnsProblem(
            f"none of the name servers of {apex} ({', '.join(hosts)}) has an address",
            server=reply.server,
            severity=Severity.TEMPORARY,
        )
    return tuple(dict.fromkeys(found))


def check_txt(
    name: str,
    value: str,
    *,
    servers: Sequence[str],
    timeout: float = CHECK_TIMEOUT,
    protocol: str = "UDP",
) -> Propagation:
    """Asks each of ``servers`` for the TXT RRset at ``name``: which do not answer ``value`` yet.

    ``timeout`` bounds each server (so the whole check takes at most ``len(servers) * timeout``).
    A server that times out or refuses is reported as missing, with what happened, instead of
    raising: the CA may ask exactly that server, so the check is not complete without it.
    """
    owner = absolute(name)
    answers: list[Reply | DnsProblem] = []
    for server in servers:
        try:
            target = _target(server)
            answers.append(_query(target, owner, "TXT", _deadline(timeout), tcp=protocol == "TCP"))
        except DnsProblem as e:
            answers.append(e)
    return propagation(owner, value, answers, servers=servers)


# --- updates --------------------------------------------------------------------------------------


def _txt(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    # As an rdata object, so that no quoting of the value as zone-file text is involved.
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode()])


def _update_message(server: UpdateServer, zone: str) -> dns.update.UpdateMessage:
    if server.tsig is None:
        return dns.update.UpdateMessage(absolute(zone))
    key = server.tsig
    try:
        secret = base64.b64decode(key.secret.strip(), validate=True)
        algorithm = tsig_algorithm(key.algorithm)
    except (binascii.Error, ValueError) as e:
        why = str(e) if isinstance(e, ValueError) and "TSIG" in str(e) else "it is not base64"
        raise DnsProblem(
            f"the TSIG secret of key {key.name!r} cannot be used: {why}",
            server=server.address,
            severity=Severity.PERMANENT,
        ) from None
    tsig = dns.tsig.Key(absolute(key.name), secret, algorithm)
    return dns.update.UpdateMessage(absolute(zone), keyring=tsig)


def _where(name: str, zone: str) -> str:
    return f"{absolute(name)} (zone {absolute(zone)})"


def _send_update(server: UpdateServer, update: dns.update.UpdateMessage, what: str) -> None:
    target = _target(server.address)
    reply = _exchange(
        update, target, tcp=server.protocol == "TCP", deadline=_deadline(server.timeout), what=what
    )
    rcode = dns.rcode.to_text(reply.rcode())
    if rcode != "NOERROR":
        raise DnsProblem(
            f"DNS server {target.label} answered {rcode} to {what}: {explain_rcode(rcode)}",
            server=target.label,
            rcode=rcode,
            severity=rcode_severity(rcode),
        )


# --- queries --------------------------------------------------------------------------------------


def _ask(targets: Sequence[_Target], name: str, rdtype: str, deadline: float) -> Reply:
    """The first useful answer among ``targets`` (in order); raises when none answered at all.

    A server that fails, refuses or cannot answer (SERVFAIL) makes way for the next; if none
    gives NOERROR or NXDOMAIN, the last reply is returned for the caller to judge.
    """
    last_reply: Reply | None = None
    last_problem: DnsProblem | None = None
    for target in targets:
        if time.monotonic() >= deadline:
            break
        try:
            reply = _query(target, name, rdtype, min(deadline, _deadline(PER_TRY)))
        except DnsProblem as e:
            last_problem = e
            continue
        if reply.rcode in ("NOERROR", "NXDOMAIN"):
            return reply
        last_reply = reply
    if last_reply is not None:
        return last_reply
    if last_problem is not None:
        raise last_problem
    raise DnsProblem(
        f"no DNS server answered {rdtype}? {name} in time",
        server=", ".join(t.label for t in targets),
        severity=Severity.TEMPORARY,
    )


def _query(target: _Target, name: str, rdtype: str, deadline: float, *, tcp: bool = False) -> Reply:
    query = dns.message.make_query(name, rdtype)
    message = _exchange(query, target, tcp=tcp, deadline=deadline, what=f"{rdtype}? {name}")
    return Reply(
        server=target.label,
        rcode=dns.rcode.to_text(message.rcode()),
        answer=_records(message.answer),
        authority=_records(message.authority),
        authoritative=bool(message.flags & dns.flags.AA),
    )


def _records(section: Sequence[dns.rrset.RRset]) -> tuple[Record, ...]:
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


# --- the exchange ---------------------------------------------------------------------------------


def _exchange(
    request: dns.message.Message, target: _Target, *, tcp: bool, deadline: float, what: str
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
        return _exchange(request, target, tcp=True, deadline=deadline, what=what)
    return reply


def _parse(
    raw: bytes, request: dns.message.Message, target: _Target, what: str
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


def _tsig_refusal(raw: bytes, target: _Target, what: str, cause: Exception) -> DnsProblem:
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


def _unusable(target: _Target, what: str, cause: Exception) -> DnsProblem:
    return DnsProblem(
        f"DNS server {target.label} sent a reply to {what} that cannot be used: {cause}",
        server=target.label,
        severity=Severity.TEMPORARY,
        short="unusable reply",
    )


def _udp(wire: bytes, query_id: int, target: _Target, deadline: float) -> bytes:
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


def _tcp(wire: bytes, target: _Target, deadline: float) -> bytes:
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


def _deadline(seconds: float) -> float:
    return time.monotonic() + seconds


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


# --- addresses ------------------------------------------------------------------------------------


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _target(server: str) -> _Target:
    """``host[:port]`` -> a socket address; a host name is resolved with a bounded lookup."""
    try:
        host, port = parse_server(server)
    except ValueError as e:
        raise DnsProblem(str(e), server=server, severity=Severity.PERMANENT) from None
    try:
        return _Target(server, str(ipaddress.ip_address(host)), port)
    except ValueError:
        pass
    # getaddrinfo has no timeout of its own: a bounded dnspython lookup through the system's
    # resolvers instead (search domains apply, as for a cluster-local Service name).
    resolver = _system_resolver(server)
    resolver.lifetime = LOOKUP_TIMEOUT
    for rdtype in ("A", "AAAA"):
        try:
            answer = resolver.resolve(host, rdtype, search=True)
        except dns.exception.DNSException:
            continue
        return _Target(server, str(answer[0].address), port)
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


def _resolvers(nameservers: Sequence[str]) -> list[_Target]:
    """The servers lookups go to: ``nameservers``, or the system's resolvers when empty."""
    if nameservers:
        return [_target(server) for server in nameservers]
    configured = _system_resolver("the system resolver").nameservers
    return [_target(_join(str(ns), 53)) for ns in configured]
