"""Private keys and CSRs: what a Certificate's privateKey and usages turn into."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from acmebridge.domain import keys
from acmebridge.domain.keys import (
    MAX_KEY_PEM_BYTES,
    build_csr,
    encode_private_key,
    generate_private_key,
    key_matches_spec,
    load_private_key,
    public_key_fingerprint,
)

E = TypeVar("E", bound=x509.ExtensionType)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Keys are made once per module: RSA generation is the slow part of these tests.
EC256 = ec.generate_private_key(ec.SECP256R1())
EC384 = ec.generate_private_key(ec.SECP384R1())
RSA2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED25519 = ed25519.Ed25519PrivateKey.generate()


def fixture_cert(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((FIXTURES / name).read_bytes())


# --- generation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "size", "check"),
    [
        pytest.param(
            "ECDSA", 256, lambda k: isinstance(k.curve, ec.SECP256R1), id="ECDSA 256 is P-256"
        ),
        pytest.param(
            "ECDSA", 384, lambda k: isinstance(k.curve, ec.SECP384R1), id="ECDSA 384 is P-384"
        ),
        pytest.param(
            "ECDSA", 521, lambda k: isinstance(k.curve, ec.SECP521R1), id="ECDSA 521 is P-521"
        ),
        pytest.param(
            "ECDSA", 0, lambda k: isinstance(k.curve, ec.SECP256R1), id="ECDSA defaults to P-256"
        ),
        pytest.param(
            "RSA",
            2048,
            lambda k: k.key_size == 2048 and k.public_key().public_numbers().e == 65537,
            id="RSA 2048 uses exponent 65537",
        ),
        pytest.param("RSA", 3072, lambda k: k.key_size == 3072, id="RSA 3072"),
        pytest.param("RSA", 4096, lambda k: k.key_size == 4096, id="RSA 4096"),
        pytest.param("RSA", 0, lambda k: k.key_size == 2048, id="RSA defaults to 2048 bits"),
        pytest.param(
            "Ed25519",
            0,
            lambda k: isinstance(k, ed25519.Ed25519PrivateKey),
            id="Ed25519 ignores the size",
        ),
        pytest.param(
            "Ed25519",
            256,
            lambda k: isinstance(k, ed25519.Ed25519PrivateKey),
            id="Ed25519 ignores a given size too, as cert-manager does",
        ),
    ],
)
def test_generates_the_requested_key(algorithm: str, size: int, check: object) -> None:
    key = generate_private_key(algorithm, size)
    assert key_matches_spec(key, algorithm, size)
    assert callable(check) and check(key)


@pytest.mark.parametrize(
    ("algorithm", "size", "message"),
    [
        pytest.param("RSA", 1024, "RSA key size", id="refuses RSA keys below 2048 bits"),
        pytest.param("RSA", 8192, "RSA key size", id="refuses RSA 8192"),
        pytest.param("ECDSA", 224, "ECDSA key size", id="refuses a curve it does not issue for"),
        pytest.param("rsa", 2048, "unknown key algorithm", id="algorithm names are exact"),
        pytest.param("DSA", 2048, "unknown key algorithm", id="refuses DSA"),
    ],
)
def test_refuses_keys_it_does_not_issue(algorithm: str, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_private_key(algorithm, size)


# --- encoding and loading -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "encoding", "header"),
    [
        pytest.param(RSA2048, "PKCS1", b"RSA PRIVATE KEY", id="RSA in PKCS1 is RSA PRIVATE KEY"),
        pytest.param(RSA2048, "PKCS8", b"-----BEGIN PRIVATE KEY", id="RSA in PKCS8"),
        pytest.param(EC256, "PKCS1", b"EC PRIVATE KEY", id="ECDSA in PKCS1 is EC PRIVATE KEY"),
        pytest.param(EC256, "PKCS8", b"-----BEGIN PRIVATE KEY", id="ECDSA in PKCS8"),
        pytest.param(
            ED25519, "PKCS1", b"-----BEGIN PRIVATE KEY", id="Ed25519 is PKCS8 even when PKCS1"
        ),
        pytest.param(ED25519, "PKCS8", b"-----BEGIN PRIVATE KEY", id="Ed25519 in PKCS8"),
    ],
)
def test_encodes_and_loads_back_the_same_key(
    key: keys.PrivateKey, encoding: str, header: bytes
) -> None:
    pem = encode_private_key(key, encoding)
    assert pem.startswith(b"-----BEGIN ") and header in pem.splitlines()[0]
    assert public_key_fingerprint(load_private_key(pem)) == public_key_fingerprint(key)


def test_refuses_an_unknown_encoding() -> None:
    with pytest.raises(ValueError, match="unknown key encoding"):
        encode_private_key(EC256, "DER")


def _pem(
    key: PrivateKeyTypes, fmt: serialization.PrivateFormat, password: bytes | None = None
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        pytest.param(
            b"A" * (MAX_KEY_PEM_BYTES + 1), "limit", id="refuses a key PEM over the limit"
        ),
        pytest.param(b"not a key", "malformed", id="refuses bytes that are not a key"),
        pytest.param(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "malformed",
            id="refuses a PEM block with garbage inside",
        ),
        pytest.param(
            _pem(EC256, serialization.PrivateFormat.PKCS8, b"secret"),
            "encrypted",
            id="refuses an encrypted key",
        ),
        pytest.param(
            _pem(x25519.X25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8),
            "not supported",
            id="refuses an X25519 key, which cannot sign",
        ),
        pytest.param(
            _pem(dsa.generate_private_key(2048), serialization.PrivateFormat.PKCS8),
            "not supported",
            id="refuses a DSA key",
        ),
    ],
)
def test_refuses_unusable_private_keys(pem: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        load_private_key(pem)
    assert b"PRIVATE KEY" not in str(caught.value).encode(), "never echo key material"


# --- matching -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "algorithm", "size", "expected"),
    [
        pytest.param(EC256, "ECDSA", 256, True, id="a P-256 key matches ECDSA 256"),
        pytest.param(EC256, "ECDSA", 0, True, id="a P-256 key matches the ECDSA default"),
        pytest.param(EC256, "ECDSA", 384, False, id="a P-256 key does not match ECDSA 384"),
        pytest.param(EC384, "ECDSA", 384, True, id="a P-384 key matches ECDSA 384"),
        pytest.param(
            ec.generate_private_key(ec.SECP256K1()),
            "ECDSA",
            256,
            False,
            id="a secp256k1 key does not match ECDSA 256 although both have 256 bits",
        ),
        pytest.param(RSA2048, "RSA", 2048, True, id="an RSA 2048 key matches RSA 2048"),
        pytest.param(RSA2048, "RSA", 0, True, id="an RSA 2048 key matches the RSA default"),
        pytest.param(RSA2048, "RSA", 4096, False, id="an RSA 2048 key does not match RSA 4096"),
        pytest.param(RSA2048, "ECDSA", 256, False, id="an RSA key does not match ECDSA"),
        pytest.param(ED25519, "Ed25519", 0, True, id="an Ed25519 key matches Ed25519"),
        pytest.param(EC256, "Ed25519", 0, False, id="an ECDSA key does not match Ed25519"),
    ],
)
def test_key_matches_spec(key: keys.PrivateKey, algorithm: str, size: int, expected: bool) -> None:
    assert key_matches_spec(key, algorithm, size) is expected


def test_key_matches_spec_refuses_an_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unknown key algorithm"):
        key_matches_spec(EC256, "ecdsa", 256)


def test_fingerprint_pairs_a_key_with_its_certificate_only() -> None:
    leaf = fixture_cert("leaf.pem")
    leaf_key = load_private_key((FIXTURES / "leaf-key.pem").read_bytes())
    assert public_key_fingerprint(leaf_key) == public_key_fingerprint(leaf)
    assert public_key_fingerprint(leaf_key.public_key()) == public_key_fingerprint(leaf)
    assert public_key_fingerprint(EC256) != public_key_fingerprint(leaf)
    assert len(public_key_fingerprint(leaf)) == 64


# --- CSRs ---------------------------------------------------------------------------------


def _csr(key: keys.PrivateKey = EC256, **overrides: Any) -> x509.CertificateSigningRequest:
    arguments: dict[str, Any] = {
        "common_name": None,
        "dns_names": ["web.example.test"],
        "ip_addresses": [],
        "uris": [],
        "email_addresses": [],
        "usages": [],
    }
    arguments.update(overrides)
    return x509.load_pem_x509_csr(build_csr(key, **arguments))


def _extension(csr: x509.CertificateSigningRequest, kind: type[E]) -> x509.Extension[E]:
    return csr.extensions.get_extension_for_class(kind)


def test_csr_carries_every_kind_of_name_and_is_signed_by_the_key() -> None:
    csr = _csr(
        RSA2048,
        common_name="web.example.test",
        dns_names=["web.example.test", "www.example.test", "web.example.test"],
        ip_addresses=["192.0.2.10", "2001:db8::10"],
        uris=["spiffe://example.test/ns/shop/sa/web"],
        email_addresses=["ops@example.test"],
    )
    assert csr.is_signature_valid
    assert public_key_fingerprint(csr) == public_key_fingerprint(RSA2048)
    sans = _extension(csr, x509.SubjectAlternativeName)
    assert sans.critical is False
    assert sans.value.get_values_for_type(x509.DNSName) == ["web.example.test", "www.example.test"]
    assert [str(ip) for ip in sans.value.get_values_for_type(x509.IPAddress)] == [
        "192.0.2.10",
        "2001:db8::10",
    ]
    assert sans.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://example.test/ns/shop/sa/web"
    ]
    assert sans.value.get_values_for_type(x509.RFC822Name) == ["ops@example.test"]
    assert csr.subject.rfc4514_string() == "CN=web.example.test"


@pytest.mark.parametrize(
    ("key", "hash_name"),
    [
        pytest.param(EC256, "sha256", id="signs a P-256 CSR with SHA-256"),
        pytest.param(EC384, "sha384", id="signs a P-384 CSR with SHA-384"),
        pytest.param(RSA2048, "sha256", id="signs an RSA 2048 CSR with SHA-256"),
        pytest.param(ED25519, None, id="signs an Ed25519 CSR with Ed25519"),
    ],
)
def test_csr_signature_algorithm_follows_the_key(
    key: keys.PrivateKey, hash_name: str | None
) -> None:
    csr = _csr(key)
    assert csr.is_signature_valid
    algorithm = csr.signature_hash_algorithm
    assert (algorithm.name if algorithm else None) == hash_name


def test_csr_without_common_name_has_an_empty_subject_and_a_critical_san() -> None:
    csr = _csr(common_name=None)
    assert len(csr.subject) == 0
    assert _extension(csr, x509.SubjectAlternativeName).critical is True


def test_csr_orders_subject_fields_as_cert_manager_does() -> None:
    csr = _csr(
        common_name="web.example.test",
        subject={
            "organizations": ["Example"],
            "countries": ["DE"],
            "serialNumber": "1234",
            "organizationalUnits": ["Web", "Ops"],
        },
    )
    assert [a.oid for a in csr.subject] == [
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
        NameOID.SERIAL_NUMBER,
    ]
    assert csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "1234"
    assert _extension(csr, x509.SubjectAlternativeName).critical is False


_SGC_MICROSOFT = ObjectIdentifier("1.3.6.1.4.1.311.10.3.3")
_IPSEC_USER = ObjectIdentifier("1.3.6.1.5.5.7.3.7")


@pytest.mark.parametrize(
    ("key", "usages", "key_usage_bits", "extended"),
    [
        pytest.param(
            RSA2048,
            [],
            {"digital_signature", "key_encipherment"},
            None,
            id="an RSA key defaults to digital signature and key encipherment",
        ),
        pytest.param(
            EC256,
            [],
            {"digital_signature"},
            None,
            id="an ECDSA key defaults to digital signature only (RFC 8813)",
        ),
        pytest.param(
            EC256,
            ["digital signature", "server auth", "client auth"],
            {"digital_signature"},
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            id="splits usages into KeyUsage and ExtendedKeyUsage",
        ),
        pytest.param(
            EC256,
            ["server auth"],
            None,
            [ExtendedKeyUsageOID.SERVER_AUTH],
            id="omits KeyUsage when only extended usages are asked for",
        ),
        pytest.param(
            EC256,
            ["signing", "s/mime", "email protection"],
            {"digital_signature"},
            [ExtendedKeyUsageOID.EMAIL_PROTECTION],
            id="maps the synonyms signing and s/mime once each",
        ),
        pytest.param(
            EC256,
            ["cert sign", "crl sign", "content commitment", "data encipherment"],
            {"key_cert_sign", "crl_sign", "content_commitment", "data_encipherment"},
            None,
            id="maps the CA and commitment bits",
        ),
        pytest.param(
            EC256,
            ["key agreement", "encipher only"],
            {"key_agreement", "encipher_only"},
            None,
            id="maps encipher only together with key agreement",
        ),
        pytest.param(
            EC256,
            ["microsoft sgc", "ipsec user", "any"],
            None,
            [_SGC_MICROSOFT, _IPSEC_USER, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE],
            id="maps the rarer extended usages to their OIDs",
        ),
    ],
)
def test_csr_usages(
    key: keys.PrivateKey,
    usages: list[str],
    key_usage_bits: set[str] | None,
    extended: list[ObjectIdentifier] | None,
) -> None:
    csr = _csr(key, usages=usages)
    if key_usage_bits is None:
        with pytest.raises(x509.ExtensionNotFound):
            _extension(csr, x509.KeyUsage)
    else:
        extension = _extension(csr, x509.KeyUsage)
        assert extension.critical is True
        bits = {
            name
            for name in (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
            )
            if getattr(extension.value, name)
        }
        if extension.value.key_agreement:
            bits |= {n for n in ("encipher_only", "decipher_only") if getattr(extension.value, n)}
        assert bits == key_usage_bits
    if extended is None:
        with pytest.raises(x509.ExtensionNotFound):
            _extension(csr, x509.ExtendedKeyUsage)
    else:
        eku = _extension(csr, x509.ExtendedKeyUsage)
        assert eku.critical is False
        assert list(eku.value) == extended


def test_every_documented_usage_is_known() -> None:
    assert set(keys.USAGES) == {
        "signing", "digital signature", "content commitment", "key encipherment",
        "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
        "decipher only", "any", "server auth", "client auth", "code signing",
        "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
        "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
    }  # fmt: skip
    _csr(usages=[u for u in keys.USAGES if u not in ("encipher only", "decipher only")])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"usages": ["server-auth"]}, "unknown usages", id="refuses an unknown usage"),
        pytest.param(
            {"usages": ["decipher only"]},
            "require",
            id="refuses decipher only without key agreement",
        ),
        pytest.param(
            {"common_name": "a" * 65}, "at most 64", id="refuses a common name over 64 characters"
        ),
        pytest.param(
            {"ip_addresses": ["10.0.0.300"]}, "does not appear", id="refuses an invalid IP address"
        ),
        pytest.param(
            {"dns_names": ["bücher.example"]}, "A-label", id="refuses a DNS name not in A-labels"
        ),
        pytest.param({"dns_names": []}, "at least one", id="refuses a CSR without any name"),
        pytest.param(
            {"subject": {"organisation": ["x"]}},
            "unknown subject fields",
            id="refuses an unknown subject field",
        ),
    ],
)
def test_csr_refuses_bad_input(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _csr(**overrides)


def test_csr_accepts_a_common_name_of_exactly_64_characters() -> None:
    cn = "a" * 64
    assert _csr(common_name=cn).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn


def test_csr_hashes_are_what_an_acme_ca_accepts() -> None:
    # RSA 4096 and P-521 raise the hash strength, as cert-manager's SignatureAlgorithm does.
    p521 = ec.generate_private_key(ec.SECP521R1())
    algorithm = _csr(p521).signature_hash_algorithm
    assert isinstance(algorithm, hashes.SHA512)
