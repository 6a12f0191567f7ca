"""The TLS Secret and the pending-key Secret: their bodies, and whose a Secret is.

Pure: functions build Kubernetes Secret bodies as plain dicts and judge metadata that the
adapter read; the adapter does the reads and writes.

Ownership (DESIGN.md section 2): the operator writes a Secret only when it is absent or carries
this Certificate's name label *and* UID annotation. Anything else is ``SecretConflict`` and the
Secret is left alone. cert-manager re-adopts a Secret when a Certificate of the same name is
deleted and recreated; acmebridge does not, because "same name" is also what a second
Certificate in another Git repository, or a restore from an old backup, looks like. Nor does it
adopt a Secret that has the name label but no UID annotation: a label alone proves nothing
(cert-manager has overwritten and emptied users' Secrets on such guesses). Handing a
Secret to a recreated Certificate is a deliberate act by someone who may write Secrets: set its
``acmebridge.io/certificate-uid`` annotation to the new Certificate's UID; the operator then
keeps its certificate if it matches the spec and re-issues into it otherwise.
:func:`conflict_message` says how.

Pending keys: a private key generated for an issuance that has not finished lives in its own
Opaque Secret, never in status. The Certificate's status names that Secret, and whoever can
write status could name *another* Secret and make the operator issue a certificate for a key it
does not own (cert-manager PR #9224). :func:`is_pending_key_secret_for` therefore requires a
label and a controller ownerReference with the Certificate's UID, which only someone able to
write that Secret could forge.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from acmebridge.domain.chain import MAX_BUNDLE_CERTS, MAX_PEM_BYTES, parse_pem_certificates
from acmebridge.domain.keys import MAX_KEY_PEM_BYTES, load_private_key, public_key_fingerprint
from acmebridge.domain.match import cert_summary

GROUP = "acmebridge.io"
CERTIFICATE_API_VERSION = "acmebridge.io/v1alpha1"
RESERVED_PREFIX = "acmebridge.io/"
"""Label and annotation keys under this prefix are the operator's; templates cannot set them."""

CERTIFICATE_NAME_LABEL = "acmebridge.io/certificate-name"
PENDING_KEY_FOR_LABEL = "acmebridge.io/pending-key-for"
ACCOUNT_KEY_LABEL = "acmebridge.io/account-key-for"
"""On the ACME account key Secrets the operator generates, valued ``<Kind>.<issuer name>``."""

CERTIFICATE_NAME_ANNOTATION = "acmebridge.io/certificate-name"
CERTIFICATE_UID_ANNOTATION = "acmebridge.io/certificate-uid"
ISSUER_NAME_ANNOTATION = "acmebridge.io/issuer-name"
ISSUER_KIND_ANNOTATION = "acmebridge.io/issuer-kind"
COMMON_NAME_ANNOTATION = "acmebridge.io/common-name"
ALT_NAMES_ANNOTATION = "acmebridge.io/alt-names"
IP_SANS_ANNOTATION = "acmebridge.io/ip-sans"
URI_SANS_ANNOTATION = "acmebridge.io/uri-sans"
EMAIL_SANS_ANNOTATION = "acmebridge.io/email-sans"

SECRET_TYPE_TLS = "kubernetes.io/tls"
SECRET_TYPE_OPAQUE = "Opaque"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
CA_CERT = "ca.crt"

_LABEL_VALUE_MAX = 63
_HASH_SUFFIX = 10


def label_value(text: str) -> str:
    """``text`` as a label value: unchanged up to 63 characters, else a prefix and a hash.

    Label values are limited to 63 characters but object names may have 253. Cutting a name at
    63 is not enough: the cut may end in '-' or '.', which a label value may not, and the API
    server would refuse the object. A longer text becomes a prefix (without a trailing '-' or
    '.') plus a hash of the whole text, which stays unique.
    """
    if len(text) <= _LABEL_VALUE_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH_SUFFIX]
    prefix = text[: _LABEL_VALUE_MAX - _HASH_SUFFIX - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def certificate_name_label(certificate_name: str) -> str:
    """The value of the ``acmebridge.io/certificate-name`` label for a Certificate name.

    See :func:`label_value`; the full name is always in the ``acmebridge.io/certificate-name``
    annotation.
    """
    return label_value(certificate_name)


class Ownership(Enum):
    """Whose a Secret is, from this Certificate's point of view."""

    ABSENT = "absent"
    OURS = "ours"
    FOREIGN = "foreign"


def _strings(metadata: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = metadata.get(field)
    return value if isinstance(value, Mapping) else {}


def ownership(
    secret_metadata: Mapping[str, Any] | None, *, certificate_name: str, certificate_uid: str
) -> Ownership:
    """Whether the Certificate may write the Secret with this metadata (``None``: no Secret).

    ``OURS`` needs both our name label and our UID annotation (see the module docstring). A
    pending-key or account-key Secret is never ``OURS``: pointing ``secretName`` at one must
    not turn a private key store into a TLS Secret.
    """
    if secret_metadata is None:
        return Ownership.ABSENT
    labels = _strings(secret_metadata, "labels")
    uid = _strings(secret_metadata, "annotations").get(CERTIFICATE_UID_ANNOTATION)
    if (
        certificate_uid
        and uid == certificate_uid
        and labels.get(CERTIFICATE_NAME_LABEL) == certificate_name_label(certificate_name)
        and PENDING_KEY_FOR_LABEL not in labels
        and ACCOUNT_KEY_LABEL not in labels
    ):
        return Ownership.OURS
    return Ownership.FOREIGN


def conflict_message(
    secret_metadata: Mapping[str, Any], *, certificate_name: str, certificate_uid: str
) -> str:
    """Why a ``FOREIGN`` Secret is not ours, and what the user can do about it."""
    name = secret_metadata.get("name", "")
    labels = _strings(secret_metadata, "labels")
    annotations = _strings(secret_metadata, "annotations")
    owner = labels.get(CERTIFICATE_NAME_LABEL)
    hand_over = (
        f"annotate it {CERTIFICATE_UID_ANNOTATION}={certificate_uid} (kubectl annotate "
        "--overwrite) to hand it to this Certificate"
    )
    if PENDING_KEY_FOR_LABEL in labels:
        return f"Secret {name!r} holds a pending private key; choose another spec.secretName"
    if ACCOUNT_KEY_LABEL in labels:
        kind, _, issuer = str(labels[ACCOUNT_KEY_LABEL]).partition(".")
        return (
            f"Secret {name!r} holds the ACME account key of {kind} {issuer!r}; choose another "
            "spec.secretName"
        )
    if owner is None:
        return (
            f"Secret {name!r} exists and was not written by acmebridge; choose another "
            "spec.secretName, or delete the Secret if it is not needed"
        )
    if owner != certificate_name_label(certificate_name):
        other = annotations.get(CERTIFICATE_NAME_ANNOTATION, owner)
        return (
            f"Secret {name!r} belongs to Certificate {other!r}; two Certificates cannot share "
            "a spec.secretName"
        )
    uid = annotations.get(CERTIFICATE_UID_ANNOTATION)
    if uid is None:
        return (
            f"Secret {name!r} carries the name label of Certificate {certificate_name!r} but has "
            f"no {CERTIFICATE_UID_ANNOTATION} annotation, so nothing shows it was written for "
            f"this Certificate; delete it, or {hand_over}"
        )
    return (
        f"Secret {name!r} was written for an earlier Certificate {certificate_name!r} (UID "
        f"{uid}, this one is {certificate_uid}); delete it, or {hand_over}"
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _without_reserved(template: Mapping[str, str] | None) -> dict[str, str]:
    # A template must not forge the UID annotation (and so ownership), nor a pending-key label.
    return {k: v for k, v in (template or {}).items() if not k.startswith(RESERVED_PREFIX)}


def build_tls_secret(
    *,
    name: str,
    namespace: str,
    certificate_name: str,
    certificate_uid: str,
    issuer_name: str,
    issuer_kind: str,
    chain_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes | None,
    template_labels: Mapping[str, str] | None = None,
    template_annotations: Mapping[str, str] | None = None,
    owner_reference: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The complete body of the ``kubernetes.io/tls`` Secret for an issued certificate.

    ``chain_pem`` is ``tls.crt`` (leaf first), ``ca_pem`` the proven root or ``None``, in which
    case ``ca.crt`` is absent. The name annotations are read from the leaf itself, so they always
    describe what is served. ``secretTemplate`` labels and annotations are copied except keys
    under ``acmebridge.io/``; ours are set last. ``owner_reference`` is added only when given
    (off by default, as in cert-manager: deleting a Certificate must not pull a serving
    certificate from running pods).

    ``data`` is the whole desired data: write the Secret with an update, not a merge patch, so
    that a ``ca.crt`` from an earlier issuance does not survive next to a new chain.

    Raises ``ValueError`` if the chain, key or CA do not parse, or if the key is not the leaf's:
    a Secret pairing a certificate with another key breaks every TLS handshake that uses it.
    """
    leaf = cert_summary(parse_pem_certificates(chain_pem)[0])
    if public_key_fingerprint(load_private_key(key_pem)) != leaf.public_key_fingerprint:
        raise ValueError("tls.key does not match the public key of the certificate in tls.crt")
    if ca_pem is not None:
        parse_pem_certificates(ca_pem, max_certs=MAX_BUNDLE_CERTS)

    labels = _without_reserved(template_labels)
    labels[CERTIFICATE_NAME_LABEL] = certificate_name_label(certificate_name)
    annotations = _without_reserved(template_annotations)
    annotations.update(
        {
            CERTIFICATE_NAME_ANNOTATION: certificate_name,
            CERTIFICATE_UID_ANNOTATION: certificate_uid,
            ISSUER_NAME_ANNOTATION: issuer_name,
            ISSUER_KIND_ANNOTATION: issuer_kind,
            COMMON_NAME_ANNOTATION: leaf.common_name or "",
            ALT_NAMES_ANNOTATION: ",".join(leaf.dns_names),
            IP_SANS_ANNOTATION: ",".join(leaf.ip_addresses),
            URI_SANS_ANNOTATION: ",".join(leaf.uris),
            EMAIL_SANS_ANNOTATION: ",".join(leaf.email_addresses),
        }
    )
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": annotations,
    }
    if owner_reference is not None:
        metadata["ownerReferences"] = [dict(owner_reference)]
    data = {TLS_CERT: _b64(chain_pem), TLS_KEY: _b64(key_pem)}
    if ca_pem is not None:
        data[CA_CERT] = _b64(ca_pem)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": SECRET_TYPE_TLS,
        "data": data,
    }


def certificate_owner_reference(*, certificate_name: str, certificate_uid: str) -> dict[str, Any]:
    """The controller ownerReference from an object the operator makes for a Certificate (its
    pending key, solver Pods, optionally its TLS Secret), so the garbage collector removes the
    object with the Certificate. ``blockOwnerDeletion`` is off: deleting a Certificate must not
    wait on its dependents (and setting it would need the finalizers permission)."""
    return {
        "apiVersion": CERTIFICATE_API_VERSION,
        "kind": "Certificate",
        "name": certificate_name,
        "uid": certificate_uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


def pending_key_name(certificate_name: str, certificate_uid: str) -> str:
    """The pending key's Secret name, derived from name and UID and never read from status (a
    status writer must not be able to point the operator at another Secret's key)."""
    # A cut ending in '.' or '-' would make the name invalid ("x.-acmebridge").
    return f"{certificate_name[:200].rstrip('-.')}-acmebridge-pk-{certificate_uid[:8]}"


def _is_certificate_reference(reference: Any, certificate_uid: str) -> bool:
    return (
        isinstance(reference, Mapping)
        and reference.get("kind") == "Certificate"
        and str(reference.get("apiVersion", "")).split("/")[0] == GROUP
        and reference.get("uid") == certificate_uid
    )


def pending_key_secret(
    *,
    certificate_name: str,
    certificate_uid: str,
    namespace: str,
    key_pem: bytes,
) -> dict[str, Any]:
    """The body of the Opaque Secret that holds a private key until its certificate is issued.

    Named from the Certificate's name and UID (``pending_key_name``), labelled with its name and
    UID, and owned by it as controller so that the garbage collector removes it with the
    Certificate. Raises ``ValueError`` if the key does not parse.
    """
    if not certificate_uid:
        raise ValueError("the pending key needs the Certificate's UID")
    load_private_key(key_pem)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": pending_key_name(certificate_name, certificate_uid),
            "namespace": namespace,
            "labels": {
                CERTIFICATE_NAME_LABEL: certificate_name_label(certificate_name),
                PENDING_KEY_FOR_LABEL: certificate_uid,
            },
            "ownerReferences": [
                certificate_owner_reference(
                    certificate_name=certificate_name, certificate_uid=certificate_uid
                )
            ],
        },
        "type": SECRET_TYPE_OPAQUE,
        "data": {TLS_KEY: _b64(key_pem)},
    }


def is_pending_key_secret_for(
    secret_metadata: Mapping[str, Any] | None, certificate_uid: str
) -> bool:
    """Whether a Secret is this Certificate's pending-key Secret and may be read as such.

    Both the ``acmebridge.io/pending-key-for`` label and a controller ownerReference to the
    Certificate's UID are required; a name in status alone proves nothing.
    """
    if secret_metadata is None or not certificate_uid:
        return False
    if _strings(secret_metadata, "labels").get(PENDING_KEY_FOR_LABEL) != certificate_uid:
        return False
    references = secret_metadata.get("ownerReferences")
    return isinstance(references, list) and any(
        _is_certificate_reference(ref, certificate_uid) and ref.get("controller") is True
        for ref in references
    )


@dataclass(frozen=True)
class TLSSecretContents:
    """The decoded PEM of a TLS Secret's data keys; ``None`` where a key is absent."""

    chain_pem: bytes | None
    key_pem: bytes | None
    ca_pem: bytes | None


def _decode(data: Mapping[str, Any], key: str, max_bytes: int) -> bytes | None:
    value = data.get(key)
    if value is None:
        return None
    # Check the encoded size first, so an oversized value is refused before it is decoded.
    if not isinstance(value, str) or len(value) > (max_bytes + 2) // 3 * 4:
        raise ValueError(f"Secret data {key} is not base64 of at most {max_bytes} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"Secret data {key} is not valid base64") from e


def tls_secret_contents(secret_data: Mapping[str, Any] | None) -> TLSSecretContents:
    """Decode ``tls.crt``, ``tls.key`` and ``ca.crt`` from a Secret's ``data``, with limits.

    Raises ``ValueError`` when a value is not base64 or is larger than the parsers accept.
    """
    data = secret_data or {}
    return TLSSecretContents(
        chain_pem=_decode(data, TLS_CERT, MAX_PEM_BYTES),
        key_pem=_decode(data, TLS_KEY, MAX_KEY_PEM_BYTES),
        ca_pem=_decode(data, CA_CERT, MAX_PEM_BYTES),
    )
