"""What a TLS Secret holds, judged against the Certificate's spec (pure; never returns a key).

The reconciler reads the Secret by name and hands its body here; the result feeds the trigger
checks (``domain.trigger``) and the renewal schedule. Anything unreadable in the Secret is a
reason to issue, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acmebridge.domain import secret as secrets
from acmebridge.domain.ari import cert_id_or_none
from acmebridge.domain.chain import parse_pem_certificates
from acmebridge.domain.keys import key_matches_spec, load_private_key, public_key_fingerprint
from acmebridge.domain.match import CertSummary, cert_summary, spec_mismatch
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.trigger import SecretState


@dataclass(frozen=True)
class SecretView:
    """The Secret as the plan sees it: whose it is, what it holds, and its leaf's facts."""

    ownership: secrets.Ownership
    state: SecretState
    conflict: str | None = None
    #: the leaf's facts when the Secret holds a parseable certificate
    leaf: CertSummary | None = None
    #: the leaf's ACME Renewal Information identifier (None: it has none)
    cert_id: str | None = None


def assess_secret(
    secret: Mapping[str, Any] | None,
    spec: CertificateSpec,
    *,
    certificate_name: str,
    certificate_uid: str,
) -> SecretView:
    """Pure: ownership, contents and spec match of the TLS Secret (None: it does not exist)."""
    metadata = (secret or {}).get("metadata")
    own = secrets.ownership(
        metadata, certificate_name=certificate_name, certificate_uid=certificate_uid
    )
    if own is secrets.Ownership.FOREIGN:
        message = secrets.conflict_message(
            metadata or {}, certificate_name=certificate_name, certificate_uid=certificate_uid
        )
        return SecretView(own, SecretState(exists=True), conflict=message)
    if secret is None:
        return SecretView(own, SecretState(exists=False))
    try:
        contents = secrets.tls_secret_contents(secret.get("data"))
    except ValueError as e:
        return SecretView(own, SecretState(True, True, True, cert_error=str(e)))
    crt, key_pem = contents.chain_pem, contents.key_pem
    state = SecretState(exists=True, has_cert=bool(crt), has_key=bool(key_pem))
    if not crt or not key_pem:
        return SecretView(own, state)
    try:
        leaf_cert = parse_pem_certificates(crt)[0]
        leaf = cert_summary(leaf_cert)
    except (ValueError, IndexError) as e:
        error = f"Secret's tls.crt cannot be parsed: {e}"
        return SecretView(own, SecretState(True, True, True, cert_error=error))
    try:
        key = load_private_key(key_pem)
    except ValueError:
        error = "Secret's tls.key cannot be parsed"
        return SecretView(own, SecretState(True, True, True, key_error=error))
    annotations = (metadata or {}).get("annotations") or {}
    state = SecretState(
        exists=True,
        has_cert=True,
        has_key=True,
        key_matches_cert=public_key_fingerprint(key) == leaf.public_key_fingerprint,
        key_matches_spec=key_matches_spec(key, spec.private_key.algorithm, spec.private_key.size),
        names_mismatch=spec_mismatch(leaf, spec),
        not_after=leaf.not_after,
        issuer_annotation_matches=(
            annotations.get(secrets.ISSUER_NAME_ANNOTATION) == spec.issuer_ref.name
            and annotations.get(secrets.ISSUER_KIND_ANNOTATION) == spec.issuer_ref.kind
        ),
    )
    return SecretView(own, state, leaf=leaf, cert_id=cert_id_or_none(leaf_cert))


def usable(view: SecretView) -> bool:
    """The Secret serves a certificate its key can use (whatever the spec says now)."""
    s = view.state
    return s.exists and s.has_cert and s.has_key and s.key_matches_cert and not s.cert_error
