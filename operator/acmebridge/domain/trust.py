"""The trust bundle: every mTLS workload's issuing roots, in a ConfigMap per opted-in namespace.

A namespace labelled ``acmebridge.io/trust: "true"`` gets a ConfigMap ``acmebridge-trust`` whose
``ca.crt`` holds every root the workloads' certificates chain to: each workload's issuer's
``issuingCABundle``, and the root proven for its Secret's ``ca.crt``. Peers verify each other
against it, also while an issuer moves to a new root (both are in the bundle). The bundle is
deterministic (deduplicated, sorted, expired roots dropped), so an unchanged set of roots never
rewrites the ConfigMap. Everything here is pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmebridge.domain.chain import (
    MAX_BUNDLE_CERTS,
    encode_pem_certificates,
    parse_pem_certificates,
)
from acmebridge.domain.injection import TRUST_CONFIGMAP, TRUST_KEY

__all__ = [
    "TRUST_LABEL",
    "bundle_pem",
    "configmap",
    "is_ours",
    "wants_trust",
]

TRUST_LABEL = "acmebridge.io/trust"
#: on the ConfigMap: written by acmebridge (it never touches one without it)
BUNDLE_LABEL = "acmebridge.io/trust-bundle"


def wants_trust(namespace: Mapping[str, Any] | None) -> bool:
    """Pure: the namespace asks for the trust bundle."""
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    return bool(labels.get(TRUST_LABEL) == "true")


def roots_of(pem: bytes | None) -> list[x509.Certificate]:
    """Pure: the certificates of a PEM bundle; nothing for an absent or unreadable one (the
    issuer's own status reports a bad bundle)."""
    if not pem:
        return []
    try:
        return parse_pem_certificates(pem, max_certs=MAX_BUNDLE_CERTS)
    except ValueError:
        return []


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def bundle_pem(roots: Iterable[x509.Certificate], *, now: datetime) -> str:
    """Pure: the bundle's text: unexpired roots, each once, in a stable order."""
    unique: dict[str, x509.Certificate] = {}
    for cert in roots:
        if cert.not_valid_after_utc > now:
            unique.setdefault(_fingerprint(cert), cert)
    ordered = sorted(
        unique.values(),
        key=lambda c: (c.subject.rfc4514_string(), c.not_valid_before_utc, _fingerprint(c)),
    )
    return encode_pem_certificates(ordered).decode() if ordered else ""


def configmap(namespace: str, bundle: str) -> dict[str, Any]:
    """Pure: the ConfigMap for one namespace."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": TRUST_CONFIGMAP,
            "namespace": namespace,
            "labels": {BUNDLE_LABEL: "true", "app.kubernetes.io/managed-by": "acmebridge"},
        },
        "data": {TRUST_KEY: bundle},
    }


def is_ours(existing: Mapping[str, Any] | None) -> bool:
    """Pure: an ``acmebridge-trust`` ConfigMap that acmebridge wrote (and may update or delete)."""
    labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
    return bool(labels.get(BUNDLE_LABEL) == "true")
