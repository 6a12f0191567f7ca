"""domain.assess: what a TLS Secret holds, judged against the spec, from the Secret's body."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from acmebridge.domain.assess import assess_secret, usable
from acmebridge.domain.secret import (
    CERTIFICATE_NAME_LABEL,
    CERTIFICATE_UID_ANNOTATION,
    ISSUER_KIND_ANNOTATION,
    ISSUER_NAME_ANNOTATION,
    Ownership,
)
from acmebridge.domain.spec import CertificateSpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LEAF = (FIXTURES / "leaf.pem").read_bytes()
KEY = (FIXTURES / "leaf-key.pem").read_bytes()
OTHER_KEY_CERT = (FIXTURES / "intermediate.pem").read_bytes()
UID = "3f1c9e2a-0000-4000-8000-000000000001"
SPEC = CertificateSpec.from_body(
    {
        "secretName": "web-tls",
        "issuerRef": {"name": "ca"},
        "dnsNames": ["web.example.test", "www.example.test"],
        "ipAddresses": ["192.0.2.10", "2001:db8::10"],
        "uris": ["spiffe://example.test/ns/shop/sa/web"],
        "emailAddresses": ["ops@example.test"],
    }
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret(data: dict[str, bytes] | None = None, **meta: Any) -> dict[str, Any]:
    annotations = {
        CERTIFICATE_UID_ANNOTATION: UID,
        ISSUER_NAME_ANNOTATION: "ca",
        ISSUER_KIND_ANNOTATION: "Issuer",
        **meta.pop("annotations", {}),
    }
    return {
        "metadata": {
            "name": "web-tls",
            "labels": {CERTIFICATE_NAME_LABEL: "web"},
            "annotations": annotations,
            **meta,
        },
        "data": {k: b64(v) for k, v in (data or {"tls.crt": LEAF, "tls.key": KEY}).items()},
    }


def assess(body: dict[str, Any] | None, spec: CertificateSpec = SPEC) -> Any:
    return assess_secret(body, spec, certificate_name="web", certificate_uid=UID)


def test_a_matching_secret_is_usable_and_says_what_it_holds() -> None:
    view = assess(secret())
    assert view.ownership is Ownership.OURS and usable(view)
    s = view.state
    assert s.key_matches_cert and s.names_mismatch is None and s.issuer_annotation_matches
    assert view.leaf is not None and view.leaf.dns_names == ("web.example.test", "www.example.test")
    # The fixture has no Authority Key Identifier: it has no ARI identifier.
    assert view.cert_id is None


@pytest.mark.parametrize(
    ("body", "check"),
    [
        pytest.param(None, lambda v: not v.state.exists, id="no Secret: it does not exist"),
        pytest.param(
            secret({"tls.crt": LEAF}), lambda v: not v.state.has_key, id="a Secret without a key"
        ),
        pytest.param(
            secret({"tls.crt": b"junk", "tls.key": KEY}),
            lambda v: v.state.cert_error is not None,
            id="a certificate that does not parse is a reason, not an error",
        ),
        pytest.param(
            secret({"tls.crt": LEAF, "tls.key": b"junk"}),
            lambda v: v.state.key_error is not None,
            id="a key that does not parse likewise",
        ),
        pytest.param(
            secret({"tls.crt": OTHER_KEY_CERT, "tls.key": KEY}),
            lambda v: not v.state.key_matches_cert and not usable(v),
            id="a key that is not the certificate's is not usable",
        ),
        pytest.param(
            secret(annotations={ISSUER_NAME_ANNOTATION: "other"}),
            lambda v: not v.state.issuer_annotation_matches,
            id="a certificate from another issuer is noticed",
        ),
        pytest.param(
            secret(annotations={CERTIFICATE_UID_ANNOTATION: "someone-else"}),
            lambda v: v.ownership is Ownership.FOREIGN and v.conflict,
            id="a Secret of another Certificate is foreign, with a message",
        ),
    ],
)
def test_what_the_secret_holds(body: dict[str, Any] | None, check: Any) -> None:
    assert check(assess(body))


def test_names_that_differ_from_the_spec_are_named() -> None:
    spec = CertificateSpec.from_body(
        {"secretName": "web-tls", "issuerRef": {"name": "ca"}, "dnsNames": ["new.example.test"]}
    )
    view = assess(secret(), spec)
    assert view.state.names_mismatch and "new.example.test" in view.state.names_mismatch
