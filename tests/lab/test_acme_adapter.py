"""The ACME adapter against a real Pebble and pebble-challtestsrv (DNS-01).

The main Pebble is the lab's; configurations the lab does not run (external account binding
required, alternate roots) get a Pebble of the test's own from tests/lab/pebbles.py.

Waiting happens here, in the tests, with bounded deadlines: the adapter itself never waits.
"""

from __future__ import annotations

import base64
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmebridge.adapters.acme_client import AcmeSession, generate_account_key, key_authorization
from acmebridge.adapters.acme_messages import (
    AccountRef,
    AuthorizationInfo,
    OrderInfo,
    ari_cert_id,
    choose_chain,
)
from acmebridge.domain.errors import AcmeProblem, AcmeUnavailable, TLSTrustError
from tests.lab import labpki, labproc
from tests.lab.pebbles import PebbleFactory, pebble_factory  # noqa: F401

pytestmark = pytest.mark.lab

WAIT = 20.0  # seconds any single ACME state change may take in these tests


@dataclass(frozen=True)
class Pebble:
    directory_url: str
    tls_ca_file: Path
    mgmt_url: str | None
    challtestsrv_url: str

    @property
    def tls_ca_pem(self) -> bytes:
        return self.tls_ca_file.read_bytes()

    def session(self, **kwargs: Any) -> AcmeSession:
        return AcmeSession(self.directory_url, ca_bundle=self.tls_ca_pem, **kwargs)

    def root_pem(self, index: int = 0) -> bytes:
        """The issuing root Pebble generated at start (its management API)."""
        assert self.mgmt_url is not None, "this Pebble has no management URL"
        url = f"{self.mgmt_url}/roots/{index}"
        response = requests.get(url, verify=str(self.tls_ca_file), timeout=5)
        response.raise_for_status()
        return response.content


@pytest.fixture
def start_pebble(
    lab: Any,
    pebble_factory: PebbleFactory,  # noqa: F811
) -> Callable[..., Pebble]:
    """A Pebble of this test's own (tests/lab/pebbles.py) with extra config and environment,
    with a second, six-day profile beside the default."""

    def start(*, config: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Pebble:
        extra = pebble_factory(
            profiles={
                "default": {"description": "ninety days", "validityPeriod": 7776000},
                "shortlived": {"description": "six days", "validityPeriod": 518400},
            },
            env=env,
            config={"retryAfter": {"authz": 1, "order": 1}, **(config or {})},
        )
        return Pebble(
            directory_url=extra.directory_url,
            tls_ca_file=extra.tls_ca,
            mgmt_url=extra.mgmt_url,
            challtestsrv_url=lab.env["CHALLTESTSRV_URL"],
        )

    return start


@pytest.fixture(scope="module")
def pebble(lab: Any) -> Pebble:
    """The lab's Pebble."""
    env = lab.env
    return Pebble(
        directory_url=env["PEBBLE_DIRECTORY_URL"],
        tls_ca_file=Path(env["PEBBLE_TLS_CA"]),
        mgmt_url=env.get("PEBBLE_MGMT_URL"),
        challtestsrv_url=env["CHALLTESTSRV_URL"],
    )


# -- an ACME client's work, done the way the operator will do it across reconcile calls ---------


def _profile(session: AcmeSession) -> str | None:
    """Pebble gives an order without profile a random one: always name one it offers."""
    profiles = session.directory().profiles
    if not profiles:
        return None
    return "default" if "default" in profiles else sorted(profiles)[0]


def _until(what: str, probe: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {WAIT}s; last: {value}")
        time.sleep(0.1)


def _solve_dns01(
    session: AcmeSession, pebble: Pebble, account: AccountRef, authz: AuthorizationInfo
) -> None:
    challenge = next(c for c in authz.challenges if c.type == "dns-01")
    host = f"_acme-challenge.{authz.identifier[1]}."
    value = key_authorization(account, challenge)
    requests.post(
        f"{pebble.challtestsrv_url}/set-txt", json={"host": host, "value": value}, timeout=5
    ).raise_for_status()
    try:
        answered = session.answer_challenge(account, challenge.url)
        assert answered.url == challenge.url
        assert answered.status in ("pending", "processing", "valid")
        final = _until(
            f"authorization {authz.url} leaving pending",
            lambda: session.get_authorization(account, authz.url),
            lambda a: a.status != "pending",
        )
    finally:
        requests.post(
            f"{pebble.challtestsrv_url}/clear-txt", json={"host": host}, timeout=5
        ).raise_for_status()
    assert final.status == "valid", final
    solved = next(c for c in final.challenges if c.url == challenge.url)
    assert solved.status == "valid" and solved.validated is not None and solved.error is None


def _csr(names: list[str]) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM), key


def _issue(
    session: AcmeSession,
    pebble: Pebble,
    account: AccountRef,
    names: list[str],
    *,
    replaces: str | None = None,
) -> tuple[OrderInfo, list[bytes], ec.EllipticCurvePrivateKey]:
    order = session.new_order(
        account,
        identifiers=[("dns", n) for n in names],
        profile=_profile(session),
        replaces=replaces,
    )
    assert order.status in ("pending", "ready")
    assert sorted(v for _, v in order.identifiers) == sorted(names)
    assert order.replaces == replaces
    for url in order.authorizations:
        authz = session.get_authorization(account, url)
        if authz.status == "pending":  # Pebble reuses a valid authorization half of the time
            _solve_dns01(session, pebble, account, authz)
    order = _until(
        "order ready",
        lambda: session.get_order(account, order.url),
        lambda o: o.status != "pending",
    )
    assert order.status == "ready", order
    csr_pem, key = _csr(names)
    order = session.finalize(account, order, csr_pem)
    assert order.status in ("processing", "valid"), order
    order = _until(
        "order valid",
        lambda: session.get_order(account, order.url),
        lambda o: o.status not in ("ready", "processing"),
    )
    assert order.status == "valid" and order.certificate, order
    return order, session.download_chains(account, order.certificate), key


def _account(session: AcmeSession) -> AccountRef:
    key = generate_account_key()
    return AccountRef(uri=session.register_account(key, email="pki@example.com").uri, key_pem=key)


def _names(n: int) -> list[str]:
    tag = secrets.token_hex(4)
    return [f"svc{i}-{tag}.acmebridge.test" for i in range(n)]


# -- tests --------------------------------------------------------------------------------------


def test_the_directory_is_read_into_plain_values(pebble: Pebble) -> None:
    with pebble.session() as session:
        directory = session.directory()
    assert directory.new_account.startswith("https://127.0.0.1")
    assert directory.renewal_info is not None
    assert directory.external_account_required is False
    assert directory.terms_of_service


def test_an_account_registers_and_the_same_key_finds_it_again(pebble: Pebble) -> None:
    key = generate_account_key()
    with pebble.session() as session:
        created = session.register_account(key, email="pki@example.com")
        again = session.register_account(key, email="pki@example.com")
        found = session.register_account(key, only_return_existing=True)
    assert created.status == "valid"
    assert again == created
    assert found == created


def test_only_return_existing_does_not_create_an_account(pebble: Pebble) -> None:
    with pebble.session() as session, pytest.raises(AcmeProblem) as raised:
        session.register_account(generate_account_key(), only_return_existing=True)
    assert raised.value.type.endswith(":accountDoesNotExist")
    assert raised.value.status == 400


def test_a_two_name_order_is_issued_through_dns01(pebble: Pebble) -> None:
    names = _names(2)
    with pebble.session() as session:
        account = _account(session)
        order, chains, key = _issue(session, pebble, account, names)
        assert order.profile == _profile(session)
    leaf, *intermediates = x509.load_pem_x509_certificates(chains[0])
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    assert leaf.public_key() == key.public_key()
    leaf.verify_directly_issued_by(intermediates[0])
    if pebble.mgmt_url:
        root = x509.load_pem_x509_certificate(pebble.root_pem(0))
        intermediates[-1].verify_directly_issued_by(root)


def test_renewal_information_and_a_replacing_order(pebble: Pebble) -> None:
    names = _names(2)
    with pebble.session() as session:
        account = _account(session)
        _, chains, _ = _issue(session, pebble, account, names)
        leaf = x509.load_pem_x509_certificate(chains[0])
        cert_id = ari_cert_id(chains[0])

        info = session.renewal_info(cert_id)
        assert info is not None
        assert leaf.not_valid_before_utc <= info.start < info.end <= leaf.not_valid_after_utc
        assert info.retry_after is not None and info.retry_after.total_seconds() > 0

        # The renewal names its predecessor; the server reflects it (RFC 9773 §5).
        _, renewed, _ = _issue(session, pebble, account, names, replaces=cert_id)
        assert ari_cert_id(renewed[0]) != cert_id

        # A second replacement of the same certificate: 409 alreadyReplaced, which certbot's
        # library would have turned into a bare ConflictError.
        with pytest.raises(AcmeProblem) as raised:
            session.new_order(
                account,
                identifiers=[("dns", n) for n in names],
                profile=_profile(session),
                replaces=cert_id,
            )
    assert raised.value.type == "urn:ietf:params:acme:error:alreadyReplaced"
    assert raised.value.status == 409


def test_an_unknown_profile_is_a_problem_document(pebble: Pebble) -> None:
    with pebble.session() as session:
        account = _account(session)
        if not session.directory().profiles:
            pytest.skip("this Pebble offers no profiles")
        with pytest.raises(AcmeProblem) as raised:
            session.new_order(account, identifiers=[("dns", "x.acmebridge.test")], profile="nope")
    assert raised.value.type == "urn:ietf:params:acme:error:invalidProfile"
    assert "nope" in raised.value.detail


def test_preferred_chain_selects_the_alternate_root(
    start_pebble: Callable[..., Pebble],
) -> None:
    pebble = start_pebble(env={"PEBBLE_ALTERNATE_ROOTS": "1"})
    root_cns = [
        x509.load_pem_x509_certificate(pebble.root_pem(i))
        .subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
        .value
        for i in (0, 1)
    ]
    with pebble.session() as session:
        account = _account(session)
        _, chains, _ = _issue(session, pebble, account, _names(1))
    assert len(chains) == 2
    tops = [x509.load_pem_x509_certificates(c)[-1] for c in chains]
    issuers = [str(t.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value) for t in tops]
    assert sorted(issuers) == sorted(root_cns)
    # Same leaf in both chains, different roots above the intermediate.
    assert len({x509.load_pem_x509_certificates(c)[0].serial_number for c in chains}) == 1
    assert choose_chain(chains, issuers[1]) == chains[1]
    assert choose_chain(chains, issuers[0]) == chains[0]
    assert choose_chain(chains, "No Such Root") == chains[0]
    assert choose_chain(chains, None) == chains[0]


def test_external_account_binding_is_required_and_accepted(
    start_pebble: Callable[..., Pebble],
) -> None:
    hmac_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    pebble = start_pebble(
        config={
            "externalAccountBindingRequired": True,
            "externalAccountMACKeys": {"kid-1": hmac_key},
        }
    )
    key = generate_account_key()
    with pebble.session() as session:
        assert session.directory().external_account_required is True
        with pytest.raises(AcmeProblem) as without:
            session.register_account(key)
        wrong = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        with pytest.raises(AcmeProblem) as bad_mac:
            session.register_account(key, eab=("kid-1", wrong, "HS256"))
        account = session.register_account(key, eab=("kid-1", hmac_key, "HS256"))
    assert without.value.type == "urn:ietf:params:acme:error:externalAccountRequired"
    assert bad_mac.value.status is not None and 400 <= bad_mac.value.status < 500
    assert account.status == "valid"


def test_a_rejected_nonce_is_retried_once_with_the_nonce_the_error_carried(
    pebble: Pebble,
) -> None:
    sent: list[tuple[str, str, int]] = []

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        sent.append((response.request.method or "", response.url, response.status_code))

    with pebble.session() as session:
        account = _account(session)
        order = session.new_order(
            account, identifiers=[("dns", _names(1)[0])], profile=_profile(session)
        )
        session._transport.session.hooks["response"].append(record)
        # A well-formed nonce the server never issued: the first POST fails with badNonce.
        session._transport.nonces.put(secrets.token_bytes(16))
        assert session.get_order(account, order.url).url == order.url
    # Two POSTs, the first refused; no HEAD to newNonce: the retry used the error's nonce.
    assert [(m, u) for m, u, _ in sent] == [("POST", order.url), ("POST", order.url)]
    assert [c for _, _, c in sent] == [400, 200]


def test_a_wrong_ca_bundle_is_a_tls_trust_error_a_user_can_act_on(pebble: Pebble) -> None:
    other_ca = labpki.make_ca("some other CA").cert_pem()
    session = AcmeSession(pebble.directory_url, ca_bundle=other_ca)
    with session, pytest.raises(TLSTrustError) as raised:
        session.directory()
    message = str(raised.value)
    assert message.startswith(
        "the ACME server's TLS certificate is not trusted by spec.acme.caBundle: "
    )
    assert "unable to get local issuer certificate" in message


def test_the_ca_bundle_is_the_only_trust_not_an_addition(
    pebble: Pebble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Make the process-wide trust (requests' and OpenSSL's) trust Pebble...
    trusted = tmp_path / "env-trust.pem"
    trusted.write_bytes(pebble.tls_ca_pem)
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(var, str(trusted))
    with AcmeSession(pebble.directory_url) as session:
        assert session.directory().new_order
    # ...then a caBundle naming another CA must still fail: no fallback to that trust.
    other_ca = labpki.make_ca("some other CA").cert_pem()
    session = AcmeSession(pebble.directory_url, ca_bundle=other_ca)
    with session, pytest.raises(TLSTrustError):
        session.directory()


def test_without_a_ca_bundle_the_message_points_at_ca_bundle(pebble: Pebble) -> None:
    with AcmeSession(pebble.directory_url) as session, pytest.raises(TLSTrustError) as raised:
        session.directory()
    assert "set spec.acme.caBundle" in str(raised.value)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_skip_tls_verify_connects_without_trust(pebble: Pebble) -> None:
    with AcmeSession(pebble.directory_url, skip_tls_verify=True) as session:
        assert session.directory().new_account


def test_a_refused_connection_is_unavailable_at_once() -> None:
    port = labproc.free_port()
    started = time.monotonic()
    session = AcmeSession(f"https://127.0.0.1:{port}/dir")
    with session, pytest.raises(AcmeUnavailable) as raised:
        session.directory()
    assert not isinstance(raised.value, TLSTrustError)
    assert time.monotonic() - started < 2
    assert "cannot reach the ACME server" in str(raised.value)


def test_a_silent_server_times_out_as_unavailable() -> None:
    # The kernel completes the handshake for the backlog; nobody ever answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        session = AcmeSession(f"https://127.0.0.1:{port}/dir", timeout=(1, 1))
        with session, pytest.raises(AcmeUnavailable) as raised:
            session.directory()
    assert not isinstance(raised.value, TLSTrustError)
    assert time.monotonic() - started < 5


def test_a_response_over_the_size_limit_is_refused(pebble: Pebble) -> None:
    with pebble.session(max_response_bytes=64) as session, pytest.raises(AcmeUnavailable) as raised:
        session.directory()
    assert "limit is 64" in str(raised.value) or "more than 64 bytes" in str(raised.value)


def test_every_call_is_timed_and_reported(pebble: Pebble) -> None:
    calls: list[tuple[str, str, float]] = []
    with pebble.session(on_request=lambda *c: calls.append(c)) as session:
        session.directory()
        with pytest.raises(AcmeProblem):
            session.register_account(generate_account_key(), only_return_existing=True)
    assert [(k, o) for k, o, _ in calls] == [
        ("directory", "ok"),
        ("new_account", "accountDoesNotExist"),
    ]
    assert all(0 <= s < WAIT for _, _, s in calls)


def test_the_ca_bundle_file_is_removed_on_close(pebble: Pebble) -> None:
    session = pebble.session()
    ca_file = session._transport.verify
    assert isinstance(ca_file, str) and Path(ca_file).exists()
    session.close()
    assert not Path(ca_file).exists()


def test_one_directory_serves_concurrent_accounts(pebble: Pebble) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with pebble.session() as session:
        accounts = [_account(session) for _ in range(4)]

        def orders(account: AccountRef) -> list[str]:
            urls = []
            for name in _names(3):
                order = session.new_order(
                    account, identifiers=[("dns", name)], profile=_profile(session)
                )
                urls.append(session.get_order(account, order.url).url)
            return urls

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(orders, accounts))
    assert all(len(r) == 3 for r in results)
