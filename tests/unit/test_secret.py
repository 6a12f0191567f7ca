"""The TLS Secret and the pending-key Secret: their bodies, and who may write or read them."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmebridge.domain import secret as s
from acmebridge.domain.chain import order_chain, parse_pem_certificates, verifies
from acmebridge.domain.keys import encode_private_key

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LEAF_PEM = (FIXTURES / "leaf.pem").read_bytes()
INTERMEDIATE_PEM = (FIXTURES / "intermediate.pem").read_bytes()
ROOT_PEM = (FIXTURES / "root.pem").read_bytes()
KEY_PEM = (FIXTURES / "leaf-key.pem").read_bytes()
OTHER_KEY_PEM = encode_private_key(ec.generate_private_key(ec.SECP256R1()), "PKCS8")

UID = "0b9a7c5e-1111-4e5f-9a0b-123456789abc"
OTHER_UID = "7d1e2f3a-2222-4b5c-8d9e-abcdef012345"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def meta(labels: Any = None, annotations: Any = None, **extra: Any) -> dict[str, Any]:
    return {"name": "web-tls", "labels": labels, "annotations": annotations, **extra}


def tls_secret(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "name": "web-tls",
        "namespace": "shop",
        "certificate_name": "web",
        "certificate_uid": UID,
        "issuer_name": "internal-ca",
        "issuer_kind": "Issuer",
        "chain_pem": LEAF_PEM + INTERMEDIATE_PEM,
        "key_pem": KEY_PEM,
        "ca_pem": ROOT_PEM,
    }
    arguments.update(overrides)
    return s.build_tls_secret(**arguments)


# --- ownership ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param(None, s.Ownership.ABSENT, id="a missing Secret is absent"),
        pytest.param(
            meta({s.CERTIFICATE_NAME_LABEL: "web"}, {s.CERTIFICATE_UID_ANNOTATION: UID}),
            s.Ownership.OURS,
            id="a Secret with our name label and UID is ours",
        ),
        pytest.param(
            meta({s.CERTIFICATE_NAME_LABEL: "web"}, {"team": "shop"}),
            s.Ownership.FOREIGN,
            id="a Secret with our label but no UID annotation is not adopted",
        ),
        pytest.param(
            meta({s.CERTIFICATE_NAME_LABEL: "web"}, {s.CERTIFICATE_UID_ANNOTATION: ""}),
            s.Ownership.FOREIGN,
            id="a Secret with our label and an empty UID annotation is foreign",
        ),
        pytest.param(
            meta(
                {s.CERTIFICATE_NAME_LABEL: "web", s.ACCOUNT_KEY_LABEL: "Issuer.ca"},
                {s.CERTIFICATE_UID_ANNOTATION: UID},
            ),
            s.Ownership.FOREIGN,
            id="an ACME account key Secret is never taken as the TLS Secret",
        ),
        pytest.param(
            meta({s.CERTIFICATE_NAME_LABEL: "web"}, {s.CERTIFICATE_UID_ANNOTATION: OTHER_UID}),
            s.Ownership.FOREIGN,
            id="a Secret written for an earlier Certificate of the same name is foreign",
        ),
        pytest.param(
            meta({s.CERTIFICATE_NAME_LABEL: "api"}, {s.CERTIFICATE_UID_ANNOTATION: OTHER_UID}),
            s.Ownership.FOREIGN,
            id="a Secret of another Certificate sharing the secretName is foreign",
        ),
        pytest.param(
            meta({s.CERTIFICATE_NAME_LABEL: "api"}),
            s.Ownership.FOREIGN,
            id="another Certificate's label without a UID is still foreign",
        ),
        pytest.param(meta(), s.Ownership.FOREIGN, id="an unlabelled Secret is foreign"),
        pytest.param(
            meta({"app": "web"}, {s.CERTIFICATE_UID_ANNOTATION: UID}),
            s.Ownership.FOREIGN,
            id="a UID annotation without our label is foreign",
        ),
        pytest.param(
            meta({s.CERTIFICATE_NAME_LABEL: "web", s.PENDING_KEY_FOR_LABEL: UID}),
            s.Ownership.FOREIGN,
            id="a pending-key Secret is never taken as the TLS Secret",
        ),
        pytest.param(
            meta("not-a-map", ["nor", "this"]),
            s.Ownership.FOREIGN,
            id="malformed metadata is foreign",
        ),
    ],
)
def test_ownership(metadata: dict[str, Any] | None, expected: s.Ownership) -> None:
    assert s.ownership(metadata, certificate_name="web", certificate_uid=UID) is expected


def test_a_certificate_without_a_uid_owns_nothing() -> None:
    metadata = meta({s.CERTIFICATE_NAME_LABEL: "web"}, {s.CERTIFICATE_UID_ANNOTATION: ""})
    assert s.ownership(metadata, certificate_name="web", certificate_uid="") is s.Ownership.FOREIGN


def test_ownership_of_a_certificate_with_a_long_name() -> None:
    name = "a-very-long-certificate-name-" * 5
    label = s.certificate_name_label(name)
    metadata = meta({s.CERTIFICATE_NAME_LABEL: label}, {s.CERTIFICATE_UID_ANNOTATION: UID})
    assert s.ownership(metadata, certificate_name=name, certificate_uid=UID) is s.Ownership.OURS
    assert s.ownership(metadata, certificate_name=name + "x", certificate_uid=UID) is (
        s.Ownership.FOREIGN
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("web", "web", id="keeps a short name as the label value"),
        pytest.param("a" * 63, "a" * 63, id="keeps a 63-character name"),
    ],
)
def test_certificate_name_label_keeps_short_names(name: str, expected: str) -> None:
    assert s.certificate_name_label(name) == expected


def test_certificate_name_label_hashes_long_names_into_a_valid_label() -> None:
    first = s.certificate_name_label("web." + "x" * 100 + ".one")
    second = s.certificate_name_label("web." + "x" * 100 + ".two")
    # Cut where the hash is appended, these would end in '-' and '.', which no label value may.
    hyphen = s.certificate_name_label("a" * 51 + "-" + "b" * 20)
    dot = s.certificate_name_label("a" * 51 + "." + "b" * 20)
    assert len({first, second, hyphen, dot}) == 4
    for value in (first, second, hyphen, dot):
        assert len(value) <= 63 and LABEL_VALUE.match(value)


@pytest.mark.parametrize(
    ("metadata", "hint"),
    [
        pytest.param(
            meta(),
            "was not written by acmebridge; choose another spec.secretName",
            id="says that an unlabelled Secret is someone else's",
        ),
        pytest.param(
            meta({s.CERTIFICATE_NAME_LABEL: "web"}),
            f"annotate it acmebridge.io/certificate-uid={UID}",
            id="says how to hand a Secret without the UID annotation over",
        ),
        pytest.param(
            meta({s.ACCOUNT_KEY_LABEL: "Issuer.internal-ca"}),
            "holds the ACME account key of Issuer 'internal-ca'",
            id="names the Issuer whose account key the Secret holds",
        ),
        pytest.param(
            meta({s.CERTIFICATE_NAME_LABEL: "api"}, {s.CERTIFICATE_NAME_ANNOTATION: "api"}),
            "belongs to Certificate 'api'",
            id="names the Certificate that owns the Secret",
        ),
        pytest.param(
            meta({s.CERTIFICATE_NAME_LABEL: "web"}, {s.CERTIFICATE_UID_ANNOTATION: OTHER_UID}),
            f"annotate it acmebridge.io/certificate-uid={UID}",
            id="says how a recreated Certificate takes its Secret back",
        ),
        pytest.param(
            meta({s.PENDING_KEY_FOR_LABEL: OTHER_UID}),
            "holds a pending private key",
            id="says that a pending-key Secret is not a TLS Secret",
        ),
    ],
)
def test_conflict_message_says_what_to_do(metadata: dict[str, Any], hint: str) -> None:
    message = s.conflict_message(metadata, certificate_name="web", certificate_uid=UID)
    assert hint in message and "'web-tls'" in message


# --- the TLS Secret -----------------------------------------------------------------------


def test_builds_a_tls_secret_whose_chain_verifies() -> None:
    body = tls_secret()
    assert body["apiVersion"] == "v1" and body["kind"] == "Secret"
    assert body["type"] == "kubernetes.io/tls"
    assert body["metadata"]["name"] == "web-tls" and body["metadata"]["namespace"] == "shop"
    assert "ownerReferences" not in body["metadata"]
    contents = s.tls_secret_contents(body["data"])
    assert contents == s.TLSSecretContents(LEAF_PEM + INTERMEDIATE_PEM, KEY_PEM, ROOT_PEM)
    assert contents.chain_pem is not None and contents.ca_pem is not None
    leaf, intermediate = order_chain(parse_pem_certificates(contents.chain_pem))
    (root,) = parse_pem_certificates(contents.ca_pem)
    assert verifies(leaf, intermediate) and verifies(intermediate, root)


def test_annotates_the_secret_from_the_certificate_itself() -> None:
    metadata = tls_secret()["metadata"]
    assert metadata["labels"] == {s.CERTIFICATE_NAME_LABEL: "web"}
    assert metadata["annotations"] == {
        "acmebridge.io/certificate-name": "web",
        "acmebridge.io/certificate-uid": UID,
        "acmebridge.io/issuer-name": "internal-ca",
        "acmebridge.io/issuer-kind": "Issuer",
        "acmebridge.io/common-name": "web.example.test",
        "acmebridge.io/alt-names": "web.example.test,www.example.test",
        "acmebridge.io/ip-sans": "192.0.2.10,2001:db8::10",
        "acmebridge.io/uri-sans": "spiffe://example.test/ns/shop/sa/web",
        "acmebridge.io/email-sans": "ops@example.test",
    }
    assert s.ownership(metadata, certificate_name="web", certificate_uid=UID) is s.Ownership.OURS


def test_omits_ca_crt_when_no_root_was_proven() -> None:
    assert set(tls_secret(ca_pem=None)["data"]) == {"tls.crt", "tls.key"}


def test_a_template_cannot_forge_ownership() -> None:
    metadata = tls_secret(
        template_labels={
            "app": "web",
            s.CERTIFICATE_NAME_LABEL: "api",
            s.PENDING_KEY_FOR_LABEL: UID,
        },
        template_annotations={
            "reloader.example/watch": "true",
            s.CERTIFICATE_UID_ANNOTATION: OTHER_UID,
            "acmebridge.io/anything": "x",
        },
    )["metadata"]
    assert metadata["labels"] == {"app": "web", s.CERTIFICATE_NAME_LABEL: "web"}
    assert metadata["annotations"]["reloader.example/watch"] == "true"
    assert metadata["annotations"][s.CERTIFICATE_UID_ANNOTATION] == UID
    assert "acmebridge.io/anything" not in metadata["annotations"]


def test_adds_an_owner_reference_only_when_asked() -> None:
    reference = s.certificate_owner_reference(certificate_name="web", certificate_uid=UID)
    metadata = tls_secret(owner_reference=reference)["metadata"]
    assert metadata["ownerReferences"] == [reference]
    assert (
        reference["kind"] == "Certificate" and reference["apiVersion"] == "acmebridge.io/v1alpha1"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"key_pem": OTHER_KEY_PEM}, "does not match", id="refuses a key that is not the leaf's"
        ),
        pytest.param(
            {"chain_pem": b"junk"}, "no PEM certificate", id="refuses a chain that does not parse"
        ),
        pytest.param({"key_pem": b"junk"}, "malformed", id="refuses a key that does not parse"),
        pytest.param(
            {"ca_pem": b"junk"}, "no PEM certificate", id="refuses a ca.crt that does not parse"
        ),
    ],
)
def test_refuses_an_inconsistent_secret(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tls_secret(**overrides)


# --- reading a Secret's data --------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            None, s.TLSSecretContents(None, None, None), id="a Secret without data holds nothing"
        ),
        pytest.param(
            {"tls.crt": _b64(LEAF_PEM)},
            s.TLSSecretContents(LEAF_PEM, None, None),
            id="reports the keys that are absent as None",
        ),
    ],
)
def test_tls_secret_contents(data: dict[str, str] | None, expected: s.TLSSecretContents) -> None:
    assert s.tls_secret_contents(data) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"tls.key": "!!!"}, "not valid base64", id="refuses data that is not base64"),
        pytest.param(
            {"tls.key": _b64(b"k" * 20000)}, "at most", id="refuses a key larger than the limit"
        ),
        pytest.param({"tls.crt": 42}, "not base64", id="refuses data that is not a string"),
    ],
)
def test_tls_secret_contents_refuses_bad_data(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        s.tls_secret_contents(data)


# --- pending keys -------------------------------------------------------------------------

OWNER = s.certificate_owner_reference(certificate_name="web", certificate_uid=UID)


def test_builds_a_pending_key_secret() -> None:
    body = s.pending_key_secret(
        certificate_name="web", certificate_uid=UID, namespace="shop", key_pem=KEY_PEM
    )
    assert body["type"] == "Opaque"
    # Named from the Certificate's name and UID, never from status (cert-manager PR #9224).
    assert (
        body["metadata"]["name"] == s.pending_key_name("web", UID) == f"web-acmebridge-pk-{UID[:8]}"
    )
    assert body["metadata"]["labels"] == {
        "acmebridge.io/certificate-name": "web",
        "acmebridge.io/pending-key-for": UID,
    }
    assert body["metadata"]["ownerReferences"] == [OWNER]
    assert OWNER["controller"] is True and OWNER["blockOwnerDeletion"] is False
    assert s.tls_secret_contents(body["data"]).key_pem == KEY_PEM
    assert s.is_pending_key_secret_for(body["metadata"], UID)
    assert s.ownership(body["metadata"], certificate_name="web", certificate_uid=UID) is (
        s.Ownership.FOREIGN
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("web", id="a short name is kept"),
        pytest.param("w" * 250, id="a long name is cut to fit"),
        pytest.param("a" * 199 + ".b", id="a cut never ends in a dot"),
        pytest.param("a" * 199 + "-b", id="a cut never ends in a dash"),
    ],
)
def test_pending_key_names_are_valid(name: str) -> None:
    result = s.pending_key_name(name, UID)
    assert len(result) <= 253 and result[0].isalnum()
    assert ".-" not in result and "--acmebridge" not in result


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"certificate_uid": ""}, "UID", id="refuses an empty UID"),
        pytest.param({"key_pem": b"junk"}, "malformed", id="refuses a key that does not parse"),
    ],
)
def test_pending_key_secret_refuses_bad_input(overrides: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "certificate_name": "web",
        "certificate_uid": UID,
        "namespace": "shop",
        "key_pem": KEY_PEM,
    }
    with pytest.raises(ValueError, match=message):
        s.pending_key_secret(**{**arguments, **overrides})


PENDING_LABEL = {s.PENDING_KEY_FOR_LABEL: UID}


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param(
            meta(PENDING_LABEL, ownerReferences=[OWNER]),
            True,
            id="accepts the label with a controller reference",
        ),
        pytest.param(meta(PENDING_LABEL), False, id="refuses a label without an ownerReference"),
        pytest.param(
            meta({"app": "web"}, ownerReferences=[OWNER]),
            False,
            id="refuses an ownerReference without the label",
        ),
        pytest.param(
            meta({s.PENDING_KEY_FOR_LABEL: OTHER_UID}, ownerReferences=[OWNER]),
            False,
            id="refuses another Certificate's pending key",
        ),
        pytest.param(
            meta(PENDING_LABEL, ownerReferences=[{**OWNER, "uid": OTHER_UID}]),
            False,
            id="refuses a Secret owned by another Certificate",
        ),
        pytest.param(
            meta(PENDING_LABEL, ownerReferences=[{**OWNER, "controller": False}]),
            False,
            id="refuses an ownerReference that is not the controller",
        ),
        pytest.param(
            meta(PENDING_LABEL, ownerReferences=[{**OWNER, "apiVersion": "cert-manager.io/v1"}]),
            False,
            id="refuses an owner of another API group",
        ),
        pytest.param(
            meta(PENDING_LABEL, ownerReferences="garbage"),
            False,
            id="refuses malformed ownerReferences",
        ),
        pytest.param(None, False, id="refuses a missing Secret"),
    ],
)
def test_is_pending_key_secret_for(metadata: dict[str, Any] | None, expected: bool) -> None:
    assert s.is_pending_key_secret_for(metadata, UID) is expected


def test_an_empty_uid_matches_no_pending_key() -> None:
    metadata = meta({s.PENDING_KEY_FOR_LABEL: ""}, ownerReferences=[{**OWNER, "uid": ""}])
    assert not s.is_pending_key_secret_for(metadata, "")
