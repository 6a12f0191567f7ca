"""The RFC 2136 adapter against the lab's real BIND 9, and DNS-01 orders validated through it.

Every record a test adds is removed again (the ``txt`` fixture), and every name is made up per
test under the lab's zone, so tests and engineers sharing the lab never see each other's values.
"What BIND serves" is always read with a plain DNS query to BIND, never through the adapter.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmebridge.adapters import rfc2136
from acmebridge.adapters.acme_client import AcmeSession, generate_account_key, key_authorization
from acmebridge.adapters.acme_messages import AccountRef
from acmebridge.domain.dns01 import challenge_name, parse_server
from acmebridge.domain.errors import DnsProblem, Severity, classify
from tests.lab import labbind
from tests.lab.pebbles import PebbleFactory, pebble_factory  # noqa: F401

pytestmark = pytest.mark.lab

WAIT = 30.0  # seconds an ACME authorization or order may take to change state here


@dataclass(frozen=True)
class Bind:
    address: str
    zone: str
    alias_zone: str
    server: rfc2136.UpdateServer
    log: Path

    def with_key(self, **changes: str) -> rfc2136.UpdateServer:
        assert self.server.tsig is not None
        key = rfc2136.TsigKey(
            name=changes.get("name", self.server.tsig.name),
            algorithm=changes.get("algorithm", self.server.tsig.algorithm),
            secret=changes.get("secret", self.server.tsig.secret),
        )
        return rfc2136.UpdateServer(self.address, key)

    def name(self, label: str = "t") -> str:
        """A made-up name in the updatable zone, unique to this call."""
        return f"{label}-{secrets.token_hex(4)}.{self.zone}"

    def txt_at(self, name: str) -> set[str]:
        """The TXT values BIND serves at ``name`` (following a CNAME), by a plain DNS query."""
        host, port = parse_server(self.address)
        reply = dns.query.udp(dns.message.make_query(name, "TXT"), host, port=port, timeout=3)
        return {
            b"".join(rdata.strings).decode()
            for rrset in reply.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for rdata in rrset
        }


@pytest.fixture(scope="module")
def bind(lab: Any) -> Bind:
    env = lab.env
    key = rfc2136.TsigKey(
        env["BIND_TSIG_NAME"], env["BIND_TSIG_ALGORITHM"], env["BIND_TSIG_SECRET"]
    )
    return Bind(
        address=env["BIND_ADDR"],
        zone=env["BIND_ZONE"],
        alias_zone=env["BIND_ALIAS_ZONE"],
        server=rfc2136.UpdateServer(env["BIND_ADDR"], key),
        log=Path(env["LAB_DIR"]) / "logs" / f"{labbind.NAMED}.log",
    )


Add = Callable[..., None]


@pytest.fixture
def txt(bind: Bind) -> Iterator[Add]:
    """``txt(name, value, zone=..., server=...)`` adds a value; all are removed after the test."""
    added: list[tuple[rfc2136.UpdateServer, str, str, str]] = []

    def add(
        name: str, value: str, *, zone: str | None = None, server: Any = None, **kw: Any
    ) -> None:
        server = server or bind.server
        zone = zone or bind.zone
        added.append((server, zone, name, value))
        rfc2136.add_txt(server, zone=zone, name=name, value=value, **kw)

    yield add
    for server, zone, name, value in added:
        rfc2136.remove_txt(server, zone=zone, name=name, value=value)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A UDP and TCP endpoint on loopback that takes requests and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(8)
        port = tcp.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", port))
            yield f"127.0.0.1:{port}"


# --- adding and removing values -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["UDP", "TCP"])
def test_a_value_added_is_served_by_bind_and_gone_once_removed(bind: Bind, protocol: str) -> None:
    server = rfc2136.UpdateServer(bind.address, bind.server.tsig, protocol=protocol)
    name = challenge_name(bind.name())
    value = secrets.token_urlsafe(32)
    rfc2136.add_txt(server, zone=bind.zone, name=name, value=value)
    try:
        assert bind.txt_at(name) == {value}
    finally:
        rfc2136.remove_txt(server, zone=bind.zone, name=name, value=value)
    assert bind.txt_at(name) == set()


def test_a_wildcard_and_its_apex_hold_two_values_and_removing_one_leaves_the_other(
    bind: Bind, txt: Add
) -> None:
    base = bind.name("wild")
    name = challenge_name(f"*.{base}")
    assert name == challenge_name(base)
    apex_value, wildcard_value, foreign = (secrets.token_urlsafe(32) for _ in range(3))
    txt(name, foreign)  # a value someone else put there: it must survive everything below
    txt(name, apex_value)
    txt(name, wildcard_value)
    assert bind.txt_at(name) == {foreign, apex_value, wildcard_value}

    rfc2136.remove_txt(bind.server, zone=bind.zone, name=name, value=wildcard_value)
    assert bind.txt_at(name) == {foreign, apex_value}
    # Removing again, as after a restart that lost track, changes nothing.
    rfc2136.remove_txt(bind.server, zone=bind.zone, name=name, value=wildcard_value)
    assert bind.txt_at(name) == {foreign, apex_value}


def test_adding_a_value_twice_keeps_one_copy(bind: Bind, txt: Add) -> None:
    name = challenge_name(bind.name())
    value = secrets.token_urlsafe(32)
    txt(name, value)
    txt(name, value)  # a retry after a lost UDP reply
    host, port = parse_server(bind.address)
    reply = dns.query.udp(dns.message.make_query(name, "TXT"), host, port=port, timeout=3)
    assert [len(rrset) for rrset in reply.answer] == [1]


# --- what BIND says when it refuses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_change", "tsig_error"),
    [
        pytest.param({"secret": "c2VjcmV0IHRoYXQgaXMgbm90IHRoZSBsYWIncyBrZXk="}, "BADSIG",
                     id="a wrong TSIG secret is BADSIG"),
        pytest.param({"name": "no-such-key"}, "BADKEY", id="an unknown key name is BADKEY"),
        pytest.param({"algorithm": "HMACSHA512"}, "BADKEY",
                     id="the wrong algorithm is BADKEY"),
    ],
)  # fmt: skip
def test_a_tsig_mismatch_names_bind_its_rcode_and_the_tsig_error(
    bind: Bind, key_change: dict[str, str], tsig_error: str
) -> None:
    name = challenge_name(bind.name())
    with pytest.raises(DnsProblem) as raised:
        rfc2136.add_txt(bind.with_key(**key_change), zone=bind.zone, name=name, value="x")
    problem = raised.value
    assert (problem.server, problem.rcode, problem.tsig_error) == (
        bind.address,
        "NOTAUTH",
        tsig_error,
    )
    assert f"DNS server {bind.address} answered NOTAUTH ({tsig_error})" in str(problem)
    assert classify(problem) is Severity.PERMANENT
    assert bind.txt_at(name) == set()


@pytest.mark.parametrize(
    ("zone", "label", "rcode"),
    [
        pytest.param("unknown.lab.test", "_acme-challenge.x.unknown.lab.test", "NOTAUTH",
                     id="a zone BIND does not serve is NOTAUTH"),
        pytest.param(None, "", "REFUSED", id="the zone apex, outside the key's grant, is REFUSED"),
        pytest.param("alias", "_acme-challenge.x", "REFUSED",
                     id="a zone without update-policy is REFUSED"),
    ],
)  # fmt: skip
def test_a_refused_update_names_bind_and_its_rcode(
    bind: Bind, zone: str | None, label: str, rcode: str
) -> None:
    zone = {"alias": bind.alias_zone, None: bind.zone}.get(zone, zone)
    assert zone is not None
    name = label if "." in label and label.endswith("lab.test") else f"{label}.{zone}".lstrip(".")
    with pytest.raises(DnsProblem) as raised:
        rfc2136.add_txt(bind.server, zone=zone, name=name, value="x")
    assert raised.value.rcode == rcode
    assert f"DNS server {bind.address} answered {rcode}" in str(raised.value)
    assert f"(zone {zone}.)" in str(raised.value)
    assert classify(raised.value) is Severity.PERMANENT


@pytest.mark.parametrize("protocol", ["UDP", "TCP"])
def test_a_server_that_does_not_answer_is_a_temporary_problem(
    bind: Bind, silent_server: str, protocol: str
) -> None:
    server = rfc2136.UpdateServer(silent_server, bind.server.tsig, protocol=protocol, timeout=1)
    with pytest.raises(DnsProblem) as raised:
        rfc2136.add_txt(server, zone=bind.zone, name=challenge_name(bind.name()), value="x")
    assert raised.value.rcode is None
    assert f"DNS server {silent_server} did not answer" in str(raised.value)
    assert f"over {protocol}" in str(raised.value)
    assert classify(raised.value) is Severity.TEMPORARY


def test_a_closed_port_is_a_temporary_problem(bind: Bind) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    server = rfc2136.UpdateServer(address, bind.server.tsig, protocol="TCP", timeout=2)
    with pytest.raises(DnsProblem) as raised:
        rfc2136.add_txt(server, zone=bind.zone, name=challenge_name(bind.name()), value="x")
    assert f"cannot reach DNS server {address} over TCP" in str(raised.value)
    assert classify(raised.value) is Severity.TEMPORARY


# --- zones, CNAMEs, authoritative servers ---------------------------------------------------------


def test_the_soa_walk_finds_each_zone(bind: Bind) -> None:
    deep = challenge_name(f"a.b.{bind.name()}")
    assert rfc2136.find_zone(deep, nameservers=[bind.address]) == f"{bind.zone}."
    assert rfc2136.find_zone(bind.zone, nameservers=[bind.address]) == f"{bind.zone}."
    alias = f"_acme-challenge.www.{bind.alias_zone}"
    # A CNAME at the name: its SOA answer is the target zone's, which must not be taken.
    assert rfc2136.find_zone(alias, nameservers=[bind.address]) == f"{bind.alias_zone}."


def test_cname_follow_ends_where_the_ca_reads_and_an_update_there_is_served_at_the_alias(
    bind: Bind, txt: Add
) -> None:
    alias = challenge_name(f"chain.{bind.alias_zone}")  # two hops inside BIND's zones
    target = rfc2136.follow_cname(alias, nameservers=[bind.address])
    assert target == f"chain.{labbind.DELEGATED}."
    assert rfc2136.find_zone(target, nameservers=[bind.address]) == f"{bind.zone}."
    value = secrets.token_urlsafe(32)
    txt(target, value)
    assert value in bind.txt_at(alias)
    # Without a CNAME, Follow changes nothing.
    plain = challenge_name(bind.name())
    assert rfc2136.follow_cname(plain, nameservers=[bind.address]) == plain


def test_an_update_at_a_cname_without_follow_is_dropped_by_bind_and_caught_by_the_check(
    bind: Bind,
) -> None:
    alias = challenge_name(f"cname.{bind.zone}")
    value = secrets.token_urlsafe(32)
    # BIND answers NOERROR and drops the record: no other data may sit beside a CNAME.
    rfc2136.add_txt(bind.server, zone=bind.zone, name=alias, value=value)
    try:
        check = rfc2136.check_txt(alias, value, servers=[bind.address])
    finally:
        rfc2136.remove_txt(bind.server, zone=bind.zone, name=alias, value=value)
    assert not check.complete
    assert f"{alias} is a CNAME to cname.{labbind.DELEGATED}." in check.message()
    assert "cnameStrategy: Follow would update that" in check.message()


def test_the_authoritative_servers_come_from_the_zones_ns_records(bind: Bind) -> None:
    _, port = parse_server(bind.address)
    servers = rfc2136.authoritative_servers(bind.zone, nameservers=[bind.address], port=port)
    assert servers == (bind.address,)


# --- the propagation check ------------------------------------------------------------------------


def test_the_check_names_each_server_that_does_not_answer_the_value_yet(
    bind: Bind, txt: Add, silent_server: str
) -> None:
    name = challenge_name(bind.name())
    value = secrets.token_urlsafe(32)
    before = rfc2136.check_txt(name, value, servers=[bind.address])
    assert not before.complete
    assert f"{bind.address}: answered no TXT record" in before.message()

    txt(name, value)
    after = rfc2136.check_txt(name, value, servers=[bind.address])
    assert after.complete, after.message()

    both = rfc2136.check_txt(name, value, servers=[bind.address, silent_server], timeout=1)
    assert [m.server for m in both.missing] == [silent_server]
    assert f"1 of 2 server(s) do not answer the TXT value at {name}" in both.message()
    assert f"{silent_server}: no answer over UDP" in both.message()

    other = rfc2136.check_txt(name, "another value", servers=[bind.address])
    assert "answered 1 other value(s)" in other.message()


# --- DNS-01 end to end: a wildcard and its apex, validated by a CA that asks BIND ----------------


@dataclass(frozen=True)
class Ca:
    directory_url: str
    tls_ca: Path
    profile: str | None


def _issue_through_bind(ca: Ca, bind: Bind, base: str, *, follow: bool = False) -> list[str]:
    """Orders ``*.base`` and ``base``, presents both values in BIND with the adapter, answers,
    finalizes; returns the issued certificate's DNS names. Each value is removed afterwards."""
    names = [f"*.{base}", base]
    session = AcmeSession(ca.directory_url, ca_bundle=ca.tls_ca.read_bytes())
    presented: list[tuple[str, str, str]] = []
    try:
        key = generate_account_key()
        account = AccountRef(session.register_account(key, email="pki@example.com").uri, key)
        order = session.new_order(
            account, identifiers=[("dns", n) for n in names], profile=ca.profile
        )
        pending = []
        for url in order.authorizations:
            authz = session.get_authorization(account, url)
            if authz.status != "pending":
                continue
            challenge = next(c for c in authz.challenges if c.type == "dns-01")
            owner = challenge_name(authz.identifier[1])
            if follow:
                owner = rfc2136.follow_cname(owner, nameservers=[bind.address])
            zone = rfc2136.find_zone(owner, nameservers=[bind.address])
            value = key_authorization(account, challenge)
            rfc2136.add_txt(bind.server, zone=zone, name=owner, value=value)
            presented.append((zone, owner, value))
            pending.append((authz, challenge))
        for zone, owner, value in presented:
            servers = rfc2136.authoritative_servers(
                zone, nameservers=[bind.address], port=parse_server(bind.address)[1]
            )
            check = rfc2136.check_txt(owner, value, servers=servers)
            assert check.complete, check.message()
        # The wildcard and the apex share one name: both values are served at once.
        shared = challenge_name(base)
        assert {v for _, _, v in presented} <= bind.txt_at(shared)
        # From here on only the CA asks BIND for the record: what BIND logs after this offset.
        log_offset = bind.log.stat().st_size
        began = time.monotonic()
        for _, challenge in pending:
            session.answer_challenge(account, challenge.url)
        for authz, _ in pending:
            final = _until(
                lambda a=authz: session.get_authorization(account, a.url),
                lambda a: a.status != "pending",
            )
            assert final.status == "valid", final
        print(f"DNS-01 validation of {len(pending)} authorization(s): "
              f"{time.monotonic() - began:.2f}s")  # fmt: skip
        # The CA asked BIND for the TXT record while validating (BIND's query log).
        with bind.log.open("rb") as log:
            log.seek(log_offset)
            asked = log.read().decode(errors="replace")
        assert f"query: {shared.rstrip('.')} IN TXT" in asked
        order = _until(
            lambda: session.get_order(account, order.url), lambda o: o.status != "pending"
        )
        assert order.status == "ready", order
        order = session.finalize(account, order, _csr(names))
        order = _until(
            lambda: session.get_order(account, order.url),
            lambda o: o.status not in ("ready", "processing"),
        )
        assert order.status == "valid" and order.certificate, order
        chain = session.download_chains(account, order.certificate)[0]
    finally:
        for zone, owner, value in presented:
            rfc2136.remove_txt(bind.server, zone=zone, name=owner, value=value)
        session.close()
    assert not {v for _, _, v in presented} & bind.txt_at(challenge_name(base))
    leaf = x509.load_pem_x509_certificate(chain)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(sans.get_values_for_type(x509.DNSName))


def _until(probe: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + WAIT
    while not done(value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no change within {WAIT}s; last: {value}")
        time.sleep(0.1)
    return value


def _csr(names: list[str]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[-1])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def test_the_labs_pebble_issues_a_wildcard_and_its_apex_validated_through_bind(
    lab: Any, bind: Bind
) -> None:
    ca = Ca(lab.pebble_directory_url, lab.pebble_tls_ca, profile="default")
    base = bind.name("pebble")
    assert _issue_through_bind(ca, bind, base) == sorted([f"*.{base}", base])


def test_step_ca_issues_a_wildcard_and_its_apex_validated_through_bind(
    lab: Any, bind: Bind
) -> None:
    ca = Ca(lab.env["STEPCA_DIRECTORY_URL"], Path(lab.env["STEPCA_TLS_CA"]), profile=None)
    base = bind.name("stepca")
    assert _issue_through_bind(ca, bind, base) == sorted([f"*.{base}", base])


def test_a_delegated_challenge_is_followed_and_validated_by_a_pebble_resolving_through_bind(
    bind: Bind,
    pebble_factory: PebbleFactory,  # noqa: F811
) -> None:
    # dns01-alias.lab.test's _acme-challenge is a CNAME into the updatable zone; the CA reads
    # the alias and follows it, the adapter updates the target. A private Pebble, so that this
    # test proves a Pebble pointed at BIND (pebbles.ExtraPebble's dns_server) as well.
    pebble = pebble_factory(dns_server=bind.address)
    ca = Ca(pebble.directory_url, pebble.tls_ca, profile="default")
    base = bind.alias_zone
    assert _issue_through_bind(ca, bind, base, follow=True) == sorted([f"*.{base}", base])
