"""Chains: parsing hostile PEM, ordering, signature checks, and proving the root for ca.crt."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from hypothesis import given, settings
from hypothesis import strategies as st

from acmebridge.domain.chain import (
    MAX_CHAIN_CERTS,
    MAX_PEM_BYTES,
    RootCandidate,
    aia_ca_issuers_urls,
    encode_pem_certificates,
    is_self_signed,
    order_chain,
    parse_aia_response,
    parse_pem_certificates,
    resolve_root,
    verifies,
    without_self_signed_root,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def pem(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def cert(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem(name))


ROOT = cert("root.pem")
INTERMEDIATE = cert("intermediate.pem")
LEAF = cert("leaf.pem")
LEAF_PSS = cert("leaf-pss.pem")
IMPOSTOR = cert("impostor-root.pem")
OLD_ROOT = cert("old-root.pem")
ROOT_CROSS = cert("root-cross.pem")
INTERMEDIATE_CROSS = cert("intermediate-cross.pem")
ED_ROOT = cert("ed25519-root.pem")
ED_LEAF = cert("ed25519-leaf.pem")

BEGIN = b"-----BEGIN CERTIFICATE-----"
END = b"-----END CERTIFICATE-----"


def cn(c: x509.Certificate) -> str:
    return str(c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


# --- parsing ------------------------------------------------------------------------------


def test_parses_a_served_chain_with_text_between_blocks() -> None:
    assert parse_pem_certificates(pem("chain-with-text.pem")) == [LEAF, INTERMEDIATE, ROOT]


def test_ignores_other_pem_blocks() -> None:
    key_block = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    assert parse_pem_certificates(key_block + pem("leaf.pem")) == [LEAF]


def test_accepts_exactly_the_certificate_limit() -> None:
    assert len(parse_pem_certificates(pem("root.pem") * MAX_CHAIN_CERTS)) == MAX_CHAIN_CERTS


def test_encoding_round_trips() -> None:
    chain = [LEAF, INTERMEDIATE]
    assert parse_pem_certificates(encode_pem_certificates(chain)) == chain


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        pytest.param(
            pem("leaf.pem"),
            {"max_bytes": 100},
            "the limit is 100 bytes",
            id="refuses input over the size limit",
        ),
        pytest.param(
            pem("root.pem") * (MAX_CHAIN_CERTS + 1),
            {},
            "more than 10 certificates",
            id="refuses more certificates than the limit",
        ),
        pytest.param(
            pem("root.pem") * 3,
            {"max_certs": 2},
            "more than 2 certificates",
            id="honours a lower certificate limit",
        ),
        pytest.param(b"", {}, "no PEM certificate", id="refuses empty input"),
        pytest.param(b"hello", {}, "no PEM certificate", id="refuses text without a certificate"),
        pytest.param(
            pem("leaf.pem")[:-30], {}, "has no END line", id="refuses a truncated certificate"
        ),
        pytest.param(
            BEGIN + b"\n" + pem("leaf.pem"),
            {},
            "BEGIN line inside",
            id="refuses a BEGIN line inside a block",
        ),
        pytest.param(
            BEGIN + b"\nAAAA\n" + END,
            {},
            "certificate 1 is not a valid X.509",
            id="refuses a block that is not a certificate",
        ),
        pytest.param(
            pem("leaf.pem") + BEGIN + b"\n!!!!\n" + END,
            {},
            "certificate 2 is not a valid X.509",
            id="says which certificate is malformed",
        ),
    ],
)
def test_refuses_bad_pem(data: bytes, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pem_certificates(data, **kwargs)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            BEGIN * (MAX_PEM_BYTES // len(BEGIN)), "has no END line", id="1 MiB of BEGIN lines"
        ),
        pytest.param(
            (BEGIN + b"\n") + b"A" * (MAX_PEM_BYTES - 100),
            "has no END line",
            id="one BEGIN then a megabyte without END",
        ),
        pytest.param(
            (BEGIN + END) * (MAX_PEM_BYTES // len(BEGIN + END)),
            "not a valid X.509",
            id="a megabyte of empty blocks stops at the first",
        ),
        pytest.param(
            END * (MAX_PEM_BYTES // len(END)), "no PEM certificate", id="1 MiB of END lines"
        ),
        pytest.param(
            b"-----BEGIN CERTIFICATE----\n" * (MAX_PEM_BYTES // 27),
            "no PEM certificate",
            id="1 MiB of almost-markers",
        ),
        pytest.param(
            pem("root.pem") * (MAX_PEM_BYTES // len(pem("root.pem"))),
            "more than 10",
            id="a megabyte of valid certificates stops at the limit",
        ),
    ],
)
def test_pathological_input_gets_the_right_answer(data: bytes, message: str) -> None:
    assert len(data) <= MAX_PEM_BYTES
    with pytest.raises(ValueError, match=message):
        parse_pem_certificates(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_nothing_but_value_error(data: bytes) -> None:
    try:
        certs = parse_pem_certificates(data)
    except ValueError:
        return
    assert certs


_PIECES = [BEGIN, END, b"\n", b"MIIB", b"====", b"-----", pem("leaf.pem"), pem("root.pem")[:200]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30))
def test_arbitrary_marker_soup_raises_nothing_but_value_error(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    try:
        certs = parse_pem_certificates(data)
    except ValueError:
        return
    assert 1 <= len(certs) <= data.count(BEGIN)


# --- AIA ----------------------------------------------------------------------------------


def test_aia_urls_keep_http_once_and_drop_ldap() -> None:
    assert aia_ca_issuers_urls(LEAF) == ["http://pki.example.test/intermediate.der"]
    assert aia_ca_issuers_urls(INTERMEDIATE) == ["http://pki.example.test/root.der"]
    assert aia_ca_issuers_urls(ROOT) == []


def test_aia_urls_of_a_certificate_with_broken_extensions_are_none() -> None:
    assert aia_ca_issuers_urls(cert("duplicate-san.pem")) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            ROOT.public_bytes(serialization.Encoding.DER), [ROOT], id="reads a DER certificate"
        ),
        pytest.param(pem("root.pem"), [ROOT], id="reads a PEM certificate"),
        pytest.param(
            pkcs7.serialize_certificates([INTERMEDIATE, ROOT], serialization.Encoding.DER),
            [INTERMEDIATE, ROOT],
            id="reads a DER PKCS#7 bundle",
        ),
        pytest.param(
            pkcs7.serialize_certificates([ROOT], serialization.Encoding.PEM),
            [ROOT],
            id="reads a PEM PKCS#7 bundle",
        ),
    ],
)
def test_reads_aia_responses(data: bytes, expected: list[x509.Certificate]) -> None:
    # PKCS#7 holds a SET OF certificates: DER sorts it, so compare without order.
    found = parse_aia_response(data)
    assert len(found) == len(expected) and set(found) == set(expected)


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        pytest.param(b"<html>not found</html>", {}, "neither", id="refuses an HTML error page"),
        pytest.param(
            b"x" * 200, {"max_bytes": 100}, "limit", id="refuses a response over the limit"
        ),
        pytest.param(
            pkcs7.serialize_certificates([ROOT] * 3, serialization.Encoding.DER),
            {"max_certs": 2},
            "more than 2",
            id="refuses a PKCS#7 bundle with too many certificates",
        ),
    ],
)
def test_refuses_bad_aia_responses(data: bytes, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_aia_response(data, **kwargs)


# --- signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("child", "parent", "expected"),
    [
        pytest.param(LEAF, INTERMEDIATE, True, id="verifies an RSA PKCS#1 v1.5 signature"),
        pytest.param(LEAF_PSS, INTERMEDIATE, True, id="verifies an RSA-PSS signature"),
        pytest.param(INTERMEDIATE, ROOT, True, id="verifies an ECDSA signature"),
        pytest.param(ED_LEAF, ED_ROOT, True, id="verifies an Ed25519 signature"),
        pytest.param(LEAF, ROOT, False, id="refuses a parent whose name is not the issuer"),
        pytest.param(
            INTERMEDIATE, IMPOSTOR, False, id="refuses a parent that matches by name but not by key"
        ),
        pytest.param(
            INTERMEDIATE, ROOT_CROSS, True, id="accepts any certificate of the same name and key"
        ),
        pytest.param(INTERMEDIATE_CROSS, OLD_ROOT, True, id="verifies a cross-signed intermediate"),
    ],
)
def test_verifies(child: x509.Certificate, parent: x509.Certificate, expected: bool) -> None:
    assert verifies(child, parent) is expected


@pytest.mark.parametrize(
    ("certificate", "expected"),
    [
        pytest.param(ROOT, True, id="an ECDSA root is self-signed"),
        pytest.param(OLD_ROOT, True, id="an RSA root is self-signed"),
        pytest.param(ED_ROOT, True, id="an Ed25519 root is self-signed"),
        pytest.param(IMPOSTOR, True, id="the impostor is self-signed too"),
        pytest.param(ROOT_CROSS, False, id="a cross-signed root is not self-signed"),
        pytest.param(INTERMEDIATE, False, id="an intermediate is not self-signed"),
        pytest.param(LEAF, False, id="a leaf is not self-signed"),
    ],
)
def test_is_self_signed(certificate: x509.Certificate, expected: bool) -> None:
    assert is_self_signed(certificate) is expected


# --- ordering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_certs", "expected"),
    [
        pytest.param(
            [LEAF, INTERMEDIATE, ROOT], [LEAF, INTERMEDIATE, ROOT], id="keeps an ordered chain"
        ),
        pytest.param(
            [ROOT, LEAF, INTERMEDIATE], [LEAF, INTERMEDIATE, ROOT], id="orders a shuffled chain"
        ),
        pytest.param(
            [LEAF, INTERMEDIATE, LEAF, INTERMEDIATE], [LEAF, INTERMEDIATE], id="drops duplicates"
        ),
        pytest.param(
            [INTERMEDIATE_CROSS, LEAF], [LEAF, INTERMEDIATE_CROSS], id="orders a cross-signed chain"
        ),
        pytest.param(
            [OLD_ROOT, ROOT_CROSS, INTERMEDIATE, LEAF],
            [LEAF, INTERMEDIATE, ROOT_CROSS, OLD_ROOT],
            id="orders a chain through a cross-signed root",
        ),
        pytest.param([LEAF], [LEAF], id="a lone leaf is a chain"),
    ],
)
def test_orders_a_chain(
    given_certs: list[x509.Certificate], expected: list[x509.Certificate]
) -> None:
    assert order_chain(given_certs) == expected


@pytest.mark.parametrize(
    ("given_certs", "message"),
    [
        pytest.param(
            [LEAF, ROOT], "intermediate missing", id="refuses a chain missing its intermediate"
        ),
        pytest.param(
            [LEAF, INTERMEDIATE, ED_LEAF],
            "expected one leaf",
            id="refuses an unrelated extra certificate",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE, IMPOSTOR],
            "expected one leaf",
            id="refuses a root that matches by name but not by signature",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE, INTERMEDIATE_CROSS],
            "ambiguous chain",
            id="refuses two issuers for one certificate",
        ),
        pytest.param([], "no certificates", id="refuses an empty list"),
        pytest.param(
            [LEAF, INTERMEDIATE, ROOT],
            "the limit is 2",
            id="refuses more certificates than the limit",
        ),
    ],
)
def test_refuses_broken_chains(given_certs: list[x509.Certificate], message: str) -> None:
    kwargs = {"max_certs": 2} if "limit" in message else {}
    with pytest.raises(ValueError, match=message):
        order_chain(given_certs, **kwargs)


def test_names_the_certificates_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match=r"'CN=ed\.example\.test,O=acmebridge tests'"):
        order_chain([LEAF, INTERMEDIATE, ED_LEAF])


@pytest.mark.parametrize(
    ("ordered", "expected"),
    [
        pytest.param(
            [LEAF, INTERMEDIATE, ROOT],
            [LEAF, INTERMEDIATE],
            id="drops a self-signed root from tls.crt",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE],
            [LEAF, INTERMEDIATE],
            id="keeps a chain that ends in an intermediate",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE, ROOT_CROSS],
            [LEAF, INTERMEDIATE, ROOT_CROSS],
            id="keeps a cross-signed root, which clients need to reach the old root",
        ),
        pytest.param([ROOT], [ROOT], id="keeps a self-signed certificate that is the whole chain"),
    ],
)
def test_without_self_signed_root(
    ordered: list[x509.Certificate], expected: list[x509.Certificate]
) -> None:
    assert without_self_signed_root(ordered) == expected


# --- root resolution ----------------------------------------------------------------------


def _root_from(candidates: list[tuple[x509.Certificate, str]]) -> list[RootCandidate]:
    return [RootCandidate(c, source) for c, source in candidates]


@pytest.mark.parametrize(
    ("chain", "candidates", "root", "source"),
    [
        pytest.param(
            [LEAF, INTERMEDIATE, ROOT],
            [],
            ROOT,
            "served-chain",
            id="takes a self-signed root the CA served",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE],
            [(ROOT, "caBundle")],
            ROOT,
            "caBundle",
            id="proves a root from the caBundle",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE],
            [(IMPOSTOR, "issuingCABundle"), (OLD_ROOT, "issuingCABundle"), (ROOT, "caBundle")],
            ROOT,
            "caBundle",
            id="finds the one candidate that verifies among several",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE],
            [(ROOT, "caBundle"), (ROOT, "issuingCABundle"), (ROOT, "aia")],
            ROOT,
            "aia",
            id="prefers aia over issuingCABundle over caBundle",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE_CROSS],
            [(ROOT, "caBundle"), (OLD_ROOT, "caBundle")],
            OLD_ROOT,
            "caBundle",
            id="proves the root that cross-signed the intermediate",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE, ROOT_CROSS],
            [(ROOT, "issuingCABundle"), (OLD_ROOT, "caBundle")],
            OLD_ROOT,
            "caBundle",
            id="follows a served cross-signed root to the root that signed it",
        ),
        pytest.param(
            [ED_LEAF],
            [(ED_ROOT, "issuingCABundle")],
            ED_ROOT,
            "issuingCABundle",
            id="proves an Ed25519 root",
        ),
    ],
)
def test_resolves_the_root(
    chain: list[x509.Certificate],
    candidates: list[tuple[x509.Certificate, str]],
    root: x509.Certificate,
    source: str,
) -> None:
    resolution = resolve_root(chain, _root_from(candidates))
    assert (resolution.root, resolution.source) == (root, source)
    assert cn(root) in resolution.reason


@pytest.mark.parametrize(
    ("chain", "candidates", "reason"),
    [
        pytest.param(
            [LEAF, INTERMEDIATE],
            [(IMPOSTOR, "issuingCABundle")],
            "1 from issuingCABundle (1 has the issuer's name but its key did not sign the chain)",
            id="refuses a root that matches by name but not by signature",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE],
            [(ROOT_CROSS, "aia")],
            "1 from aia (1 signed the chain but is not self-signed)",
            id="refuses a cross-signed root: the real root is further up",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE],
            [(OLD_ROOT, "caBundle"), (ED_ROOT, "caBundle")],
            "2 from caBundle (2 is a different CA)",
            id="refuses unrelated roots",
        ),
        pytest.param(
            [LEAF],
            [(ROOT, "caBundle")],
            "1 from caBundle (1 is a different CA)",
            id="refuses a root that only signed a certificate further up the chain",
        ),
        pytest.param(
            [LEAF, INTERMEDIATE],
            [],
            "there were no candidates to try",
            id="says when there was nothing to try",
        ),
    ],
)
def test_refuses_unproven_roots(
    chain: list[x509.Certificate], candidates: list[tuple[x509.Certificate, str]], reason: str
) -> None:
    resolution = resolve_root(chain, _root_from(candidates))
    assert (resolution.root, resolution.source) == (None, None)
    assert reason in resolution.reason
    assert (
        f"no self-signed candidate signed '{chain[-1].subject.rfc4514_string()}'"
        in resolution.reason
    )


def test_explains_a_refusal_in_one_readable_sentence() -> None:
    resolution = resolve_root(
        [LEAF, INTERMEDIATE], _root_from([(OLD_ROOT, "caBundle"), (IMPOSTOR, "issuingCABundle")])
    )
    assert resolution.reason == (
        "no self-signed candidate signed 'CN=acmebridge Test Intermediate CA,O=acmebridge tests' "
        "(issued by 'CN=acmebridge Test Root CA,O=acmebridge tests'); candidates tried: "
        "1 from issuingCABundle (1 has the issuer's name but its key did not sign the chain); "
        "1 from caBundle (1 is a different CA)"
    )


def _self_signed(
    key: ec.EllipticCurvePrivateKey, name: x509.Name, not_after: datetime
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def test_prefers_the_longest_lived_of_two_roots_with_one_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Re-issued Root")])
    old = _self_signed(key, name, datetime(2030, 1, 1, tzinfo=UTC))
    new = _self_signed(key, name, datetime(2040, 1, 1, tzinfo=UTC))
    child_key = ec.generate_private_key(ec.SECP256R1())
    child = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Child")]))
        .issuer_name(name)
        .public_key(child_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2029, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    resolution = resolve_root([child], _root_from([(old, "caBundle"), (new, "caBundle")]))
    assert resolution.root == new


def test_refuses_an_empty_chain_and_an_unknown_source() -> None:
    with pytest.raises(ValueError, match="empty chain"):
        resolve_root([], [])
    with pytest.raises(ValueError, match="unknown root source"):
        RootCandidate(ROOT, "trust-store")
