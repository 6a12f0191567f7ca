"""DNS-01 decisions that need no network: record names, TSIG names, reading DNS answers, retrying.

The RFC 2136 adapter (``adapters/rfc2136.py``) talks to DNS servers and turns each reply into a
plain :class:`Reply`; everything it then has to decide is here, pure and table-tested:

* which name carries the TXT record (RFC 8555 §8.4: ``_acme-challenge.`` + the identifier, a
  wildcard's ``*.`` removed, so ``*.example.com`` and ``example.com`` share one name and one RRset);
* the dnspython name of a TSIG algorithm as cert-manager spells it (``HMACSHA256``);
* one step of the SOA walk that finds the zone of a name;
* where a CNAME chain ends (``cnameStrategy: Follow``: the record goes to the chain's end);
* whether a server's answer carries the value, and the message that names the servers that do not
  yet (the propagation check);
* whether a DNS failure is worth retrying as it is (:class:`~acmebridge.domain.errors.Severity`).

Names here are absolute, lower-case and end in a dot (``_acme-challenge.www.example.com.``), the
form DNS messages use, so comparing two names is comparing two strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from acmebridge.domain.errors import DnsProblem, Severity

__all__ = [
    "CHALLENGE_LABEL",
    "CNAME_STRATEGIES",
    "MAX_CNAME_HOPS",
    "PROTOCOLS",
    "TSIG_ALGORITHMS",
    "Miss",
    "Propagation",
    "Record",
    "Reply",
    "ZoneStep",
    "absolute",
    "challenge_name",
    "cname_target",
    "explain_rcode",
    "is_within",
    "parse_server",
    "propagation",
    "rcode_severity",
    "soa_step",
    "tsig_algorithm",
    "txt_values",
]

CHALLENGE_LABEL = "_acme-challenge"
PROTOCOLS = ("UDP", "TCP")
CNAME_STRATEGIES = ("None", "Follow")
# cert-manager's names (its rfc2136 provider) -> the names RFC 8945 §6 registers, which is how
# dnspython and BIND's `algorithm` statement spell them.
TSIG_ALGORITHMS: Mapping[str, str] = {
    "HMACMD5": "hmac-md5.sig-alg.reg.int.",
    "HMACSHA1": "hmac-sha1.",
    "HMACSHA256": "hmac-sha256.",
    "HMACSHA512": "hmac-sha512.",
}
_SERVER = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]\s/]+)(?::([0-9]{1,5}))?", re.ASCII)
# A chain longer than this is a loop or a misconfiguration; resolvers give up around here too
# (BIND follows at most 16 CNAMEs in one answer).
MAX_CNAME_HOPS = 16

# What each refusal means for someone fixing it. TEMPORARY rcodes: the server could not answer
# now (SERVFAIL: it failed to load or reach the zone's data). Everything else repeats itself until
# someone changes the Issuer or the DNS server, so retrying the same request is pointless.
_RCODES: Mapping[str, tuple[Severity, str]] = {
    "SERVFAIL": (Severity.TEMPORARY, "the server failed to process the request"),
    "FORMERR": (Severity.PERMANENT, "the server could not parse the request"),
    "NXDOMAIN": (Severity.PERMANENT, "the name does not exist"),
    "NOTIMP": (Severity.PERMANENT, "the server does not implement this request"),
    "REFUSED": (
        Severity.PERMANENT,
        "the server refused it: the key may not change this name or type, or updates are not "
        "allowed from here (BIND: update-policy or allow-update)",
    ),
    "YXDOMAIN": (Severity.PERMANENT, "a prerequisite failed: the name exists"),
    "YXRRSET": (Severity.PERMANENT, "a prerequisite failed: the RRset exists"),
    "NXRRSET": (Severity.PERMANENT, "a prerequisite failed: the RRset does not exist"),
    "NOTAUTH": (
        Severity.PERMANENT,
        "the server is not authoritative for the zone, or does not accept the TSIG key",
    ),
    "NOTZONE": (Severity.PERMANENT, "the name is not inside the zone"),
}
# RFC 8945 §5.2: the TSIG error travels in the TSIG record of a NOTAUTH answer.
_TSIG_ERRORS: Mapping[str, str] = {
    "BADSIG": "the server rejected the signature: the TSIG secret or algorithm does not match "
    "the key it has under this name",
    "BADKEY": "the server does not know a TSIG key of this name and algorithm",
    "BADTIME": "the server's clock and this machine's differ by more than the allowed fudge: "
    "synchronise the clocks",
    "BADTRUNC": "the server rejected the truncated signature",
}


@dataclass(frozen=True)
class Record:
    """One resource record: absolute owner name, type, and its data as text (TXT: the value)."""

    name: str
    type: str
    data: str


@dataclass(frozen=True)
class Reply:
    """A DNS answer as the adapter read it: who answered, the rcode name, and two sections."""

    server: str
    rcode: str
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    authoritative: bool = False


@dataclass(frozen=True)
class ZoneStep:
    """One step of the SOA walk: the zone when found, else the next name to ask about."""

    zone: str | None = None
    next_name: str | None = None


@dataclass(frozen=True)
class Miss:
    """A server that does not answer the value yet, and what it answered instead."""

    server: str
    why: str


@dataclass(frozen=True)
class Propagation:
    """The result of asking every server for the TXT value."""

    name: str
    checked: tuple[str, ...]
    missing: tuple[Miss, ...]

    @property
    def complete(self) -> bool:
        return bool(self.checked) and not self.missing

    def message(self) -> str:
        """For a condition: which servers answer the value, which do not yet, and why."""
        if not self.checked:
            return f"no DNS server to check {self.name} on"
        if not self.missing:
            return f"all {len(self.checked)} server(s) answer the TXT value at {self.name}"
        waiting = "; ".join(f"{m.server}: {m.why}" for m in self.missing)
        return (
            f"{len(self.missing)} of {len(self.checked)} server(s) do not answer the TXT value "
            f"at {self.name} yet ({waiting})"
        )


def absolute(name: str) -> str:
    """``Example.COM`` -> ``example.com.``: the form every name here is compared in."""
    text = name.strip().lower()
    return text if text.endswith(".") else text + "."


def parse_server(text: str, *, default_port: int = 53) -> tuple[str, int]:
    """``10.0.0.53``, ``ns1.example.com:5353``, ``[2001:db8::53]:53`` -> (host, port).

    The host loses its brackets; ValueError says what is wrong (the spec parser has already
    refused such input in an Issuer; this also reads ``--dns01-nameservers``).
    """
    match = _SERVER.fullmatch(text.strip())
    port = int(match.group(2)) if match and match.group(2) else default_port
    if match is None or not 1 <= port <= 65535:
        raise ValueError(
            f"{text!r} must be host or host:port, with an IPv6 address in brackets, "
            "for example 10.0.0.53:53 or [2001:db8::53]:53"
        )
    host = match.group(1)
    return (host[1:-1] if host.startswith("[") else host), port


def challenge_name(identifier: str) -> str:
    """The TXT record's name for a DNS identifier (RFC 8555 §8.4), a wildcard's ``*.`` removed."""
    bare = identifier.strip().lower().rstrip(".")
    bare = bare.removeprefix("*.")
    if not bare or "*" in bare:
        raise ValueError(f"{identifier!r} is not a DNS name a DNS-01 challenge can be for")
    return f"{CHALLENGE_LABEL}.{bare}."


def tsig_algorithm(name: str) -> str:
    """The RFC 8945 name of a TSIG algorithm given as in the Issuer (``HMACSHA256``)."""
    try:
        return TSIG_ALGORITHMS[name.upper()]
    except KeyError:
        raise ValueError(
            f"unknown TSIG algorithm {name!r}: use one of {', '.join(TSIG_ALGORITHMS)}"
        ) from None


def is_within(name: str, zone: str) -> bool:
    """True when ``name`` is ``zone`` or below it (both absolute)."""
    return zone == "." or name == zone or name.endswith("." + zone)


def _parent(name: str) -> str | None:
    """``a.b.`` -> ``b.``, ``b.`` -> ``.``, ``.`` -> None."""
    if name == ".":
        return None
    _, _, rest = name.partition(".")
    return rest or "."


def soa_step(candidate: str, reply: Reply) -> ZoneStep:
    """Pure: what a reply to ``SOA? candidate`` says about the zone ``candidate`` belongs to.

    An SOA owned by ``candidate`` in the answer makes it the zone apex. A negative answer
    (NXDOMAIN, or no data) carries the zone's SOA in its authority section (RFC 2308 §3), which
    lets the walk jump there at once; only an SOA *above* the candidate counts, because a CNAME at
    the candidate brings the SOA of the CNAME target's zone, which says nothing about ours. Any
    other answer, SERVFAIL included, moves one label up, as lego and cert-manager walk.

    The adapter raises before calling this for rcodes that should stop the walk (REFUSED from
    every server, timeouts); here every reply leads somewhere, ending with ``zone=None,
    next_name=None`` when the root was passed.
    """
    for record in reply.answer:
        if record.type == "SOA" and record.name == candidate:
            return ZoneStep(zone=candidate)
    if reply.rcode in ("NOERROR", "NXDOMAIN"):
        for record in reply.authority:
            if (
                record.type == "SOA"
                and record.name != candidate
                and is_within(candidate, record.name)
            ):
                return ZoneStep(next_name=record.name)
    return ZoneStep(next_name=_parent(candidate))


def cname_target(name: str, reply: Reply, *, max_hops: int = MAX_CNAME_HOPS) -> str:
    """Pure: where the CNAME chain that starts at ``name`` ends, from one answer section.

    A recursive resolver asked for ``TXT? name`` puts the whole chain in the answer section, in
    order or not; the chain's end is the name whose records the CA will read, so with ``Follow``
    that is the name to update. ``name`` itself when it has no CNAME. A loop or a chain longer
    than ``max_hops`` is a DNS misconfiguration (PERMANENT).
    """
    cnames = {r.name: r.data for r in reply.answer if r.type == "CNAME"}
    current, seen = name, [name]
    while current in cnames:
        current = cnames[current]
        if current in seen or len(seen) > max_hops:
            chain = " -> ".join([*seen, current])
            why = "loops" if current in seen else f"is longer than {max_hops} CNAMEs"
            raise DnsProblem(
                f"the CNAME chain at {name} {why} ({chain}), as {reply.server} answers it: "
                "fix the CNAME records",
                server=reply.server,
                severity=Severity.PERMANENT,
            )
        seen.append(current)
    return current


def txt_values(name: str, reply: Reply) -> frozenset[str]:
    """Pure: the TXT values the answer gives for ``name``, following a CNAME chain in it."""
    owner = cname_target(name, reply)
    return frozenset(r.data for r in reply.answer if r.type == "TXT" and r.name == owner)


def rcode_severity(rcode: str) -> Severity:
    """Pure: TEMPORARY for SERVFAIL and rcodes we do not know, PERMANENT for refusals.

    An unknown rcode is retried with backoff, as errors.classify does for unknown ACME problems:
    a few wasted retries cost less than giving up on a server with its own extensions.
    """
    known = _RCODES.get(rcode.upper())
    return known[0] if known else Severity.TEMPORARY


def explain_rcode(rcode: str, tsig_error: str | None = None) -> str:
    """Pure: what an rcode (and a TSIG error, RFC 8945 §5.2) means for whoever fixes it."""
    if tsig_error and tsig_error.upper() in _TSIG_ERRORS:
        return _TSIG_ERRORS[tsig_error.upper()]
    known = _RCODES.get(rcode.upper())
    return known[1] if known else f"the server answered {rcode}"


def propagation(
    name: str, value: str, answers: Sequence[Reply | DnsProblem], *, servers: Sequence[str]
) -> Propagation:
    """Pure: which of ``servers`` answered ``value`` at ``name``; ``answers`` in the same order.

    A server that failed (timeout, refusal) counts as not answering the value: the CA may ask
    exactly that server.
    """
    missing: list[Miss] = []
    for server, answer in zip(servers, answers, strict=True):
        if isinstance(answer, DnsProblem):
            missing.append(Miss(server, answer.short))
        elif answer.rcode not in ("NOERROR", "NXDOMAIN"):
            missing.append(Miss(server, f"answered {answer.rcode}"))
        else:
            try:
                target = cname_target(name, answer)
            except DnsProblem as e:
                missing.append(Miss(server, e.short))
                continue
            values = {r.data for r in answer.answer if r.type == "TXT" and r.name == target}
            if value not in values:
                found = f"{len(values)} other value(s)" if values else "no TXT record"
                # An update at a CNAME's owner is silently dropped (RFC 2181 §10.1 forbids other
                # data beside a CNAME): say so, it is the usual reason a record never shows up.
                alias = (
                    f"; {name} is a CNAME to {target}, and cnameStrategy: Follow would update that"
                    if target != name
                    else ""
                )
                missing.append(Miss(server, f"answered {found}{alias}"))
    return Propagation(name=name, checked=tuple(servers), missing=tuple(missing))
