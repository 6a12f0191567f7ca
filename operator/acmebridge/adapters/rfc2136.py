"""DNS-01 over RFC 2136: add and remove one TXT value, find zones, follow CNAMEs, check servers.

Synchronous, for the operator's thread pool, and bounded: every function takes a ``timeout`` in
seconds (an UpdateServer carries its own) and returns or raises within it, looking up a server
given by name included, whatever the servers do. Failures raise
:class:`~acmebridge.domain.errors.DnsProblem`, whose message names the server and what it
answered (``NOTAUTH (BADSIG)``, ``REFUSED``), and whose ``severity`` says whether to retry: no
answer, an unreachable server and SERVFAIL are TEMPORARY, refusals PERMANENT.

Updates touch exactly one value. RFC 2136 §2.5.1 adds one RR to an RRset and §2.5.4 deletes one
RR from it, so the ``_acme-challenge`` name a wildcard shares with its apex can hold both values
at once, and another client's values (a second operator, a person) stay. Both are idempotent
(§3.4.2.2 ignores a duplicate add; deleting an absent RR is a no-op), which is what makes a retry
after a lost UDP reply, or after an operator restart, safe.

Messages go out through ``dns_transport``, which reads the rcode and TSIG error even of a reply
that refuses our signature.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update

from acmebridge.adapters import dns_transport
from acmebridge.domain.dns01 import (
    MAX_CNAME_HOPS,
    Propagation,
    Reply,
    absolute,
    cname_target,
    explain_rcode,
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
    deadline = dns_transport.deadline_in(timeout)
    targets = dns_transport.resolvers(nameservers, deadline=deadline)
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
    deadline = dns_transport.deadline_in(timeout)
    targets = dns_transport.resolvers(nameservers, deadline=deadline)
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
    deadline = dns_transport.deadline_in(timeout)
    targets = dns_transport.resolvers(nameservers, deadline=deadline)
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
            found += [dns_transport.join(address, port) for address in addresses]
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
        deadline = dns_transport.deadline_in(timeout)
        try:
            target = dns_transport.parse_target(server, deadline=deadline)
            answers.append(
                dns_transport.query(target, owner, "TXT", deadline, tcp=protocol == "TCP")
            )
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
    deadline = dns_transport.deadline_in(server.timeout)
    target = dns_transport.parse_target(server.address, deadline=deadline)
    reply = dns_transport.exchange(
        update, target, tcp=server.protocol == "TCP", deadline=deadline, what=what
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


def _ask(targets: Sequence[dns_transport.Target], name: str, rdtype: str, deadline: float) -> Reply:
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
            reply = dns_transport.query(
                target, name, rdtype, min(deadline, dns_transport.deadline_in(PER_TRY))
            )
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
