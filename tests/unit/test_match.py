"""What an issued certificate says, and whether it still matches the Certificate's names."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from acmebridge.domain.keys import load_private_key, public_key_fingerprint
from acmebridge.domain.match import CertSummary, cert_mismatch, cert_summary

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def cert(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((FIXTURES / name).read_bytes())


LEAF = cert_summary(cert("leaf.pem"))

# What the fixture leaf was issued for (tests/fixtures/make_fixtures.py).
REQUESTED: dict[str, Any] = {
    "dns_names": ["web.example.test", "www.example.test"],
    "ip_addresses": ["192.0.2.10", "2001:db8::10"],
    "uris": ["spiffe://example.test/ns/shop/sa/web"],
    "email_addresses": ["ops@example.test"],
    "common_name": "web.example.test",
}


def test_summarises_a_leaf() -> None:
    key = load_private_key((FIXTURES / "leaf-key.pem").read_bytes())
    summary = cert_summary(cert("leaf.pem"))
    assert summary == CertSummary(
        common_name="web.example.test",
        dns_names=("web.example.test", "www.example.test"),
        ip_addresses=("192.0.2.10", "2001:db8::10"),
        uris=("spiffe://example.test/ns/shop/sa/web",),
        email_addresses=("ops@example.test",),
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=datetime(2124, 1, 1, tzinfo=UTC),
        serial="1a2b3c4d5e6f",
        issuer_common_name="acmebridge Test Intermediate CA",
        public_key_fingerprint=public_key_fingerprint(key),
        key_algorithm="ECDSA",
        key_size=256,
    )
    assert summary.not_before.utcoffset() == summary.not_after.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("fixture", "algorithm", "size"),
    [
        pytest.param("intermediate.pem", "RSA", 2048, id="reports an RSA key with its bit size"),
        pytest.param("root.pem", "ECDSA", 384, id="reports an ECDSA key with its curve size"),
        pytest.param("ed25519-leaf.pem", "Ed25519", 0, id="reports an Ed25519 key with size 0"),
    ],
)
def test_summarises_the_key(fixture: str, algorithm: str, size: int) -> None:
    summary = cert_summary(cert(fixture))
    assert (summary.key_algorithm, summary.key_size) == (algorithm, size)


def test_summarises_a_certificate_without_sans() -> None:
    summary = cert_summary(cert("root.pem"))
    assert summary.dns_names == summary.ip_addresses == summary.uris == ()
    assert summary.common_name == summary.issuer_common_name == "acmebridge Test Root CA"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({}, None, id="matches the names it was issued for"),
        pytest.param(
            {"dns_names": ["www.example.test", "web.example.test", "www.example.test"]},
            None,
            id="ignores order and duplicates",
        ),
        pytest.param(
            {
                "dns_names": ["WEB.example.test", "www.example.test"],
                "common_name": "Web.Example.Test",
            },
            None,
            id="compares DNS names and the common name without case",
        ),
        pytest.param(
            {"ip_addresses": ["192.0.2.10", "2001:DB8:0:0::10"]},
            None,
            id="compares IP addresses in canonical form",
        ),
        pytest.param(
            {"email_addresses": ["ops@EXAMPLE.test"]},
            None,
            id="compares the domain of an email address without case",
        ),
        pytest.param(
            {"common_name": None},
            None,
            id="does not re-issue when no common name is asked for but the CA set one",
        ),
        pytest.param(
            {"dns_names": ["web.example.test", "www.example.test", "api.example.test"]},
            "certificate lacks dnsNames [api.example.test]",
            id="reports a requested DNS name the certificate lacks",
        ),
        pytest.param(
            {"dns_names": ["web.example.test", "api.example.test"]},
            "certificate lacks dnsNames [api.example.test]; has extra dnsNames [www.example.test]",
            id="reports lacking and extra names together",
        ),
        pytest.param(
            {"ip_addresses": ["192.0.2.10"]},
            "certificate has extra ipAddresses [2001:db8::10]",
            id="reports an extra IP address",
        ),
        pytest.param(
            {"uris": ["spiffe://example.test/ns/shop/sa/api"]},
            "certificate lacks uris [spiffe://example.test/ns/shop/sa/api]; "
            "has extra uris [spiffe://example.test/ns/shop/sa/web]",
            id="compares URIs exactly",
        ),
        pytest.param(
            {"email_addresses": []},
            "certificate has extra emailAddresses [ops@example.test]",
            id="reports an email address no longer asked for",
        ),
        pytest.param(
            {"common_name": "api.example.test"},
            "certificate has commonName 'web.example.test', the spec asks for 'api.example.test'",
            id="reports a changed common name",
        ),
    ],
)
def test_cert_mismatch(changes: dict[str, Any], expected: str | None) -> None:
    assert cert_mismatch(LEAF, **{**REQUESTED, **changes}) == expected


def test_reports_a_missing_common_name() -> None:
    bare = dataclasses.replace(cert_summary(cert("ed25519-leaf.pem")), common_name=None)
    assert (
        cert_mismatch(
            bare,
            dns_names=["ed.example.test"],
            ip_addresses=[],
            uris=[],
            email_addresses=[],
            common_name="ed.example.test",
        )
        == "certificate has no commonName, the spec asks for 'ed.example.test'"
    )


def test_refuses_to_summarise_a_certificate_with_two_san_extensions() -> None:
    with pytest.raises(ValueError, match="duplicated extension"):
        cert_summary(cert("duplicate-san.pem"))
