"""Turn an issued chain into the TLS Secret: check it, prove its root for ``ca.crt``, write once.

The chain is checked before anything is written: the leaf's public key must be the pending key's,
or the Secret would pair a certificate with a key that cannot use it. ``ca.crt`` is filled only
with a root whose signature over the chain's top certificate verifies (``domain.chain``); when
none can be proven, it is left out and the caller says so, rather than guessing. The write is a
create, or an update guarded by the resourceVersion just read: a Secret that changed hands in
between is never overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509

from acmebridge.adapters import aia
from acmebridge.adapters.kube import core_path
from acmebridge.domain import chain as chains
from acmebridge.domain import secret as secrets
from acmebridge.domain.ari import cert_id_or_none
from acmebridge.domain.errors import AcmeProblem
from acmebridge.domain.issuer_spec import AcmeIssuerSpec
from acmebridge.domain.keys import PrivateKey, encode_private_key, public_key_fingerprint
from acmebridge.domain.match import cert_summary
from acmebridge.domain.observed import Written
from acmebridge.domain.spec import CertificateSpec
from acmebridge.reconcile.runtime import Runtime

log = logging.getLogger("acmebridge.secret")


def _bundle(data: bytes | None) -> list[x509.Certificate]:
    if not data:
        return []
    try:
        return chains.parse_pem_certificates(data, max_certs=chains.MAX_BUNDLE_CERTS)
    except ValueError:
        return []


async def _candidates(
    rt: Runtime, ordered: Sequence[x509.Certificate], issuer: AcmeIssuerSpec
) -> list[chains.RootCandidate]:
    found: list[chains.RootCandidate] = []
    top = ordered[-1]
    if not chains.is_self_signed(top):
        for url in chains.aia_ca_issuers_urls(top):
            for cert in await rt.io(aia.fetch_ca_issuers, url):
                found.append(chains.RootCandidate(cert, "aia"))
    found += [chains.RootCandidate(c, "issuingCABundle") for c in _bundle(issuer.issuing_ca_bundle)]
    found += [chains.RootCandidate(c, "caBundle") for c in _bundle(issuer.ca_bundle)]
    return found


async def write_tls_secret(
    rt: Runtime,
    *,
    certificate: Mapping[str, Any],
    spec: CertificateSpec,
    issuer: AcmeIssuerSpec,
    existing: Mapping[str, Any] | None,
    chain_pem: bytes,
    key: PrivateKey,
) -> Written:
    meta = certificate["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    try:
        served = chains.parse_pem_certificates(chain_pem)
        ordered = chains.order_chain(served)
    except ValueError as e:
        raise AcmeProblem(
            "urn:ietf:params:acme:error:serverInternal",
            f"the ACME server returned an unusable certificate chain: {e}",
        ) from e
    leaf = ordered[0]
    if public_key_fingerprint(leaf) != public_key_fingerprint(key):
        raise AcmeProblem(
            "urn:ietf:params:acme:error:badCSR",
            "the issued certificate does not carry the requested public key",
        )
    resolution = chains.resolve_root(ordered, await _candidates(rt, ordered, issuer))
    tls_crt = chains.encode_pem_certificates(chains.without_self_signed_root(ordered))
    ca_pem = (
        chains.encode_pem_certificates([resolution.root]) if resolution.root is not None else None
    )
    owner = None
    if rt.config.secret_owner_references:
        owner = secrets.certificate_owner_reference(certificate_name=name, certificate_uid=uid)
    body = secrets.build_tls_secret(
        name=spec.secret_name,
        namespace=namespace,
        certificate_name=name,
        certificate_uid=uid,
        issuer_name=spec.issuer_ref.name,
        issuer_kind=spec.issuer_ref.kind,
        chain_pem=tls_crt,
        key_pem=encode_private_key(key, spec.private_key.encoding),
        ca_pem=ca_pem,
        template_labels=dict(spec.secret_template_labels),
        template_annotations=dict(spec.secret_template_annotations),
        owner_reference=owner,
    )
    if existing is None:
        await rt.io(rt.kube.create, core_path("secrets", namespace), body)
    else:
        # Keep labels and annotations others added to our Secret (tools such as reloaders do);
        # ours win on conflict. resourceVersion makes the update fail if the Secret moved.
        old_meta = existing.get("metadata", {})
        body["metadata"]["labels"] = {**old_meta.get("labels", {}), **body["metadata"]["labels"]}
        body["metadata"]["annotations"] = {
            **old_meta.get("annotations", {}),
            **body["metadata"].get("annotations", {}),
        }
        body["metadata"]["resourceVersion"] = old_meta.get("resourceVersion")
        if old_meta.get("ownerReferences") and owner is None:
            body["metadata"]["ownerReferences"] = old_meta["ownerReferences"]
        await rt.io(rt.kube.replace, core_path("secrets", namespace, spec.secret_name), body)
    return Written(
        leaf=cert_summary(leaf),
        cert_id=cert_id_or_none(leaf),
        ca_source=resolution.source,
        ca_omitted_reason=None if resolution.root is not None else resolution.reason,
    )


def holding(secret: Mapping[str, Any] | None, chain_pem: bytes) -> Written | None:
    """The Secret already holds this chain's leaf (written before a restart): what it holds."""
    try:
        leaf = chains.order_chain(chains.parse_pem_certificates(chain_pem))[0]
        have = secrets.tls_secret_contents((secret or {}).get("data")).chain_pem
        current = chains.parse_pem_certificates(have)[0] if have else None
    except (ValueError, IndexError):
        return None
    if current is None or current != leaf:
        return None
    return Written(
        leaf=cert_summary(leaf),
        cert_id=cert_id_or_none(leaf),
        ca_source=None,
        ca_omitted_reason="the certificate was written before the operator restarted; ca.crt "
        "is as it was written then",
    )
