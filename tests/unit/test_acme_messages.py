"""The ACME adapter's wire extensions and pure functions, without a network."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from josepy.json_util import JSONObjectWithFields

from acmebridge.adapters import acme_messages as wire
from acmebridge.adapters.acme_client import AcmeSession, generate_account_key, key_authorization
from acmebridge.adapters.acme_messages import AccountRef, ChallengeInfo
from acmebridge.adapters.acme_transport import HttpError, Network, load_account_key
from acmebridge.domain.errors import AcmeProblem
from acmebridge.domain.renewal import RenewalWindow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "acme"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
RFC9773_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def _json(obj: JSONObjectWithFields) -> object:
    return json.loads(obj.json_dumps())


# -- order extensions ---------------------------------------------------------------------------


def test_new_order_carries_replaces_as_rfc_9773_shows_it() -> None:
    order = wire.NewOrder(
        identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="example.com")],
        replaces=RFC9773_ID,
    )
    assert _json(order) == {
        "identifiers": [{"type": "dns", "value": "example.com"}],
        "replaces": RFC9773_ID,
    }


def test_new_order_carries_profile_and_omits_what_is_unset() -> None:
    order = wire.NewOrder(
        identifiers=[messages.Identifier(typ=messages.IDENTIFIER_IP, value="10.0.0.1")],
        profile="shortlived",
    )
    assert _json(order) == {
        "identifiers": [{"type": "ip", "value": "10.0.0.1"}],
        "profile": "shortlived",
    }


def test_an_order_reflects_replaces_and_profile() -> None:
    body = wire.Order.from_json(
        {
            "status": "processing",
            "expires": "2026-03-02T00:00:00Z",
            "identifiers": [{"type": "dns", "value": "a.example"}],
            "authorizations": ["https://ca/authz/1"],
            "finalize": "https://ca/finalize/1",
            "profile": "tlsserver",
            "replaces": RFC9773_ID,
        }
    )
    info = wire.order_info("https://ca/order/1", body, retry_after=timedelta(seconds=3))
    assert info == wire.OrderInfo(
        url="https://ca/order/1",
        status="processing",
        identifiers=(("dns", "a.example"),),
        authorizations=("https://ca/authz/1",),
        finalize="https://ca/finalize/1",
        certificate=None,
        expires=datetime(2026, 3, 2, tzinfo=UTC),
        error=None,
        profile="tlsserver",
        replaces=RFC9773_ID,
        retry_after=timedelta(seconds=3),
    )


def test_an_invalid_order_keeps_its_problem_with_subproblems() -> None:
    body = wire.Order.from_json(
        {
            "status": "invalid",
            "identifiers": [{"type": "dns", "value": "a.example"}],
            "authorizations": [],
            "finalize": "https://ca/finalize/1",
            "error": {
                "type": "urn:ietf:params:acme:error:compound",
                "detail": "two names failed",
                "subproblems": [
                    {
                        "type": "urn:ietf:params:acme:error:caa",
                        "detail": "CAA forbids",
                        "identifier": {"type": "dns", "value": "a.example"},
                    }
                ],
            },
        }
    )
    error = wire.order_info("https://ca/order/1", body).error
    assert error is not None
    assert error.type == "urn:ietf:params:acme:error:compound"
    assert error.subproblems == (
        wire.ProblemInfo(
            type="urn:ietf:params:acme:error:caa",
            detail="CAA forbids",
            identifier=("dns", "a.example"),
        ),
    )


# -- authorizations and challenges --------------------------------------------------------------

_TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"


def test_an_expired_authorization_parses() -> None:
    body = messages.Authorization.from_json(
        {
            "identifier": {"type": "dns", "value": "example.org"},
            "status": "expired",
            "expires": "2026-03-01T00:00:00Z",
            "wildcard": True,
            "challenges": [
                {"type": "dns-01", "url": "https://ca/chall/1", "token": _TOKEN},
                {"type": "dns-persist-01", "url": "https://ca/chall/2", "status": "pending"},
            ],
        }
    )
    info = wire.authorization_info("https://ca/authz/1", body)
    assert (info.status, info.identifier, info.wildcard) == (
        "expired",
        ("dns", "example.org"),
        True,
    )
    assert [(c.type, c.token, c.status) for c in info.challenges] == [
        ("dns-01", _TOKEN, "pending"),
        ("dns-persist-01", None, "pending"),
    ]


def test_a_failed_challenge_carries_its_problem_and_validation_time() -> None:
    body = messages.ChallengeBody.from_json(
        {
            "type": "http-01",
            "url": "https://ca/chall/1",
            "token": _TOKEN,
            "status": "invalid",
            "validated": "2026-03-01T11:59:00Z",
            "error": {"type": "urn:ietf:params:acme:error:connection", "detail": "refused"},
        }
    )
    info = wire.challenge_info(body)
    assert info.status == "invalid"
    assert info.validated == datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    assert info.error == wire.ProblemInfo("urn:ietf:params:acme:error:connection", "refused")


def test_the_challenge_answer_is_an_empty_object_not_an_empty_payload() -> None:
    class Fieldless(JSONObjectWithFields):
        pass

    # What the library would send for a fieldless object: it signs b'' for anything falsy.
    assert not Fieldless()
    assert wire.ChallengeAnswer()
    assert wire.ChallengeAnswer().json_dumps() == "{}"


def _jwk_thumbprint_ec(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 by hand: SHA-256 of the members crv, kty, x, y in that order, no spaces."""
    numbers = public_key.public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    canonical = f'{{"crv":"P-256","kty":"EC","x":"{b64(numbers.x)}","y":"{b64(numbers.y)}"}}'
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_key_authorizations_follow_rfc_8555_and_rfc_7638() -> None:
    key_pem = generate_account_key()
    account = AccountRef(uri="https://ca/acct/1", key_pem=key_pem)
    private = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    expected = f"{_TOKEN}.{_jwk_thumbprint_ec(private.public_key())}"

    def challenge(kind: str) -> ChallengeInfo:
        return ChallengeInfo(kind, "https://ca/chall/1", _TOKEN, "pending", None, None)

    assert key_authorization(account, challenge("http-01")) == expected
    txt = base64.urlsafe_b64encode(hashlib.sha256(expected.encode()).digest()).rstrip(b"=")
    assert key_authorization(account, challenge("dns-01")) == txt.decode()
    with pytest.raises(ValueError, match="not supported"):
        key_authorization(account, challenge("tls-alpn-01"))


# -- directory ----------------------------------------------------------------------------------


def test_the_directory_becomes_plain_values() -> None:
    directory = messages.Directory.from_json(
        {
            "newNonce": "https://ca/nonce",
            "newAccount": "https://ca/acct",
            "newOrder": "https://ca/order",
            "renewalInfo": "https://ca/ari",
            "meta": {
                "termsOfService": "https://ca/tos",
                "externalAccountRequired": True,
                "profiles": {"tlsserver": "TLS server", "shortlived": "Six days"},
                "unknownMember": 1,
            },
        }
    )
    info = wire.directory_info(directory)
    assert info.renewal_info == "https://ca/ari"
    assert dict(info.profiles) == {"tlsserver": "TLS server", "shortlived": "Six days"}
    assert info.external_account_required is True
    assert (info.terms_of_service, info.website) == ("https://ca/tos", None)


def test_a_directory_without_ari_or_profiles() -> None:
    directory = messages.Directory.from_json(
        {"newNonce": "n", "newAccount": "a", "newOrder": "o", "meta": {}}
    )
    info = wire.directory_info(directory)
    assert (info.renewal_info, dict(info.profiles), info.external_account_required) == (
        None,
        {},
        False,
    )


# -- ARI ----------------------------------------------------------------------------------------


def test_ari_identifier_of_the_rfc_9773_appendix_a_certificate() -> None:
    # RFC 9773 §4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4 and serial
    # 00:87:65:43:21 give aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE.
    assert wire.ari_cert_id((FIXTURES / "rfc9773-appendix-a.pem").read_bytes()) == RFC9773_ID


def _cert(
    serial: int, *, aki: bytes | None, issuer_cn: str = "CA", subject_cn: str = "leaf"
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    if aki is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(aki, None, None), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.mark.parametrize(
    ("serial", "encoded"),
    [
        pytest.param(0x87654321, "AIdlQyE", id="a top bit set gets a leading zero byte"),
        pytest.param(0x7F, "fw", id="a small serial is one byte"),
        pytest.param(0x80, "AIA", id="0x80 needs two bytes"),
        pytest.param(0x0100, "AQA", id="no zero padding beyond the sign"),
    ],
)
def test_ari_identifier_encodes_the_serial_as_der_content_octets(serial: int, encoded: str) -> None:
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert (
        wire.ari_cert_id(_pem(_cert(serial, aki=aki))) == f"aYhba4dGQEHhs3uEe6CuLN4ByNQ.{encoded}"
    )


def test_ari_identifier_needs_an_authority_key_identifier() -> None:
    with pytest.raises(ValueError, match="Authority Key Identifier"):
        wire.ari_cert_id(_pem(_cert(5, aki=None)))


def test_renewal_info_with_its_explanation() -> None:
    body = wire.RenewalInfoBody.from_json(
        {
            "suggestedWindow": {"start": "2021-01-03T00:00:00Z", "end": "2021-01-07T00:00:00Z"},
            "explanationURL": "https://example.com/docs/ari",
        }
    )
    info = wire.renewal_info(body, retry_after=timedelta(hours=6))
    assert info == RenewalWindow(
        start=datetime(2021, 1, 3, tzinfo=UTC),
        end=datetime(2021, 1, 7, tzinfo=UTC),
        explanation_url="https://example.com/docs/ari",
        retry_after=timedelta(hours=6),
    )


def test_a_renewal_window_that_ends_before_it_starts_is_no_answer() -> None:
    body = wire.RenewalInfoBody.from_json(
        {"suggestedWindow": {"start": "2021-01-07T00:00:00Z", "end": "2021-01-07T00:00:00Z"}}
    )
    with pytest.raises(ValueError, match="ends"):
        wire.renewal_info(body, retry_after=None)


# -- Retry-After --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("120", timedelta(seconds=120), id="delay-seconds"),
        pytest.param(" 5 ", timedelta(seconds=5), id="delay-seconds with spaces"),
        pytest.param("Sun, 01 Mar 2026 12:10:00 GMT", timedelta(minutes=10), id="an HTTP date"),
        pytest.param("Sun, 01 Mar 2026 12:10:00 -0000", timedelta(minutes=10), id="-0000 zone"),
        pytest.param("Sun, 01 Mar 2026 11:00:00 GMT", timedelta(0), id="a date in the past"),
        pytest.param("soon", None, id="unreadable"),
        pytest.param("-5", None, id="negative"),
        pytest.param("9" * 40, wire.MAX_RETRY_AFTER, id="absurdly large is capped"),
    ],
)
def test_retry_after(header: str | None, expected: timedelta | None) -> None:
    assert wire.parse_retry_after(header, now=NOW) == expected


# -- preferred chain ----------------------------------------------------------------------------


def _chain(root_cn: str) -> bytes:
    leaf = _cert(1, aki=None, issuer_cn="Issuing CA", subject_cn="web.example")
    intermediate = _cert(2, aki=None, issuer_cn=root_cn, subject_cn="Issuing CA")
    return _pem(leaf, intermediate)


@pytest.mark.parametrize(
    ("preferred", "expected"),
    [
        pytest.param("Root X2", 1, id="picks the alternate whose top is issued by the name"),
        pytest.param("Root X1", 0, id="the default chain wins when it matches"),
        pytest.param("Root X3", 0, id="no match falls back to the default chain"),
        pytest.param("root x2", 0, id="the match is exact, case included"),
        pytest.param("Issuing CA", 0, id="an intermediate's name is not a root's"),
        pytest.param(None, 0, id="no preference is the default chain"),
        pytest.param("", 0, id="an empty preference is the default chain"),
    ],
)
def test_choose_chain(preferred: str | None, expected: int) -> None:
    chains = [_chain("Root X1"), _chain("Root X2"), _chain("Root X2")]
    assert wire.choose_chain(chains, preferred) is chains[expected]


def test_choose_chain_needs_a_chain() -> None:
    with pytest.raises(ValueError):
        wire.choose_chain([], "Root X1")


# -- problem documents --------------------------------------------------------------------------


def _response(status: int, body: bytes, **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers)
    response.url = "https://ca/acme/order"
    return response


def test_a_problem_document_keeps_status_and_retry_after() -> None:
    doc = {
        "type": "urn:ietf:params:acme:error:rateLimited",
        "detail": "too many new orders",
    }
    response = _response(
        429,
        json.dumps(doc).encode(),
        **{"Content-Type": "application/problem+json", "Retry-After": "30"},
    )
    with pytest.raises(messages.Error) as raised:
        Network._check_response(response)
    problem = wire.acme_problem(
        raised.value,
        status=getattr(raised.value, "http_status", None),
        retry_after=getattr(raised.value, "retry_after", None),
    )
    assert isinstance(problem, AcmeProblem)
    assert (problem.type, problem.detail, problem.status, problem.retry_after) == (
        "urn:ietf:params:acme:error:rateLimited",
        "too many new orders",
        429,
        timedelta(seconds=30),
    )


def test_a_409_problem_is_a_problem_not_a_bare_conflict() -> None:
    doc = {"type": "urn:ietf:params:acme:error:alreadyReplaced", "detail": "replaced"}
    with pytest.raises(messages.Error) as raised:
        Network._check_response(_response(409, json.dumps(doc).encode()))
    assert raised.value.typ == "urn:ietf:params:acme:error:alreadyReplaced"


def test_subproblems_name_their_identifier() -> None:
    error = messages.Error.from_json(
        {
            "type": "urn:ietf:params:acme:error:compound",
            "detail": "",
            "title": "several problems",
            "subproblems": [
                {
                    "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                    "detail": "no",
                    "identifier": {"type": "dns", "value": "x.example"},
                }
            ],
        }
    )
    problem = wire.acme_problem(error, status=403, retry_after=None)
    assert problem.detail == "several problems"
    [sub] = problem.subproblems
    assert (sub.type, sub.identifier, sub.status) == (
        "urn:ietf:params:acme:error:rejectedIdentifier",
        "x.example",
        None,
    )


def test_an_error_page_that_is_no_problem_document() -> None:
    with pytest.raises(HttpError, match="HTTP 502"):
        Network._check_response(_response(502, b"<html>Bad Gateway</html>"))


# -- inputs refused before any request ----------------------------------------------------------

_NOWHERE = "https://127.0.0.1:9/dir"  # discard port: a request would be refused, not a ValueError


def _pkcs8(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("key_pem", "alg"),
    [
        pytest.param(generate_account_key(), "ES256", id="the generated key is P-256"),
        pytest.param(_pkcs8(ec.generate_private_key(ec.SECP384R1())), "ES384", id="P-384"),
        pytest.param(_pkcs8(rsa.generate_private_key(65537, 2048)), "RS256", id="RSA"),
    ],
)
def test_account_keys_sign_with_the_matching_algorithm(key_pem: bytes, alg: str) -> None:
    assert load_account_key(key_pem).alg.name == alg


@pytest.mark.parametrize(
    "key_pem",
    [
        pytest.param(b"not a key", id="garbage, which josepy would load as an HMAC key"),
        pytest.param(_pkcs8(ed25519.Ed25519PrivateKey.generate()), id="Ed25519"),
    ],
)
def test_unusable_account_keys_are_refused_before_any_request(key_pem: bytes) -> None:
    with AcmeSession(_NOWHERE) as session, pytest.raises(ValueError, match="account key"):
        session.register_account(key_pem)


def test_a_ca_bundle_without_certificates_is_refused() -> None:
    with pytest.raises(ValueError, match="caBundle"):
        AcmeSession(_NOWHERE, ca_bundle=b"nothing here")


def test_ca_bundle_and_skip_tls_verify_exclude_each_other() -> None:
    bundle = _pem(_cert(1, aki=None))
    with pytest.raises(ValueError, match="mutually exclusive"):
        AcmeSession(_NOWHERE, ca_bundle=bundle, skip_tls_verify=True)


def test_an_order_needs_identifiers_of_a_known_type() -> None:
    account = AccountRef(uri="https://ca/acct/1", key_pem=generate_account_key())
    with AcmeSession(_NOWHERE) as session:
        with pytest.raises(ValueError, match="at least one"):
            session.new_order(account, identifiers=[])
        with pytest.raises(ValueError, match="'dns' or 'ip'"):
            session.new_order(account, identifiers=[("email", "a@b")])  # type: ignore[list-item]
