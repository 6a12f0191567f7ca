"""One opted-in workload: its Certificate, its Secret's owner, rolling restarts, and its roots.

Gather (the workload from the watch, its issuer from the cache, its Certificate and Secret by
name), decide (``domain.workload_mtls``), act. The Certificate is an ordinary acmebridge
Certificate created through the API and owned by the workload; the certificate reconcile issues
it like any other. Once its Secret exists, the Secret gets an ownerReference to the workload too,
so that the garbage collector removes both with the workload even while the operator is down;
only a Secret that is this Certificate's (``domain.secret.ownership``) and carries this
workload's UID label is ever changed or deleted. Problems are Events on the workload.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from acmebridge.adapters.kube import Conflict, KubeError, NotFound, core_path, group_path, ours_path
from acmebridge.domain import trust
from acmebridge.domain.chain import parse_pem_certificates
from acmebridge.domain.errors import SpecError
from acmebridge.domain.issuer_spec import AcmeIssuerSpec
from acmebridge.domain.secret import Ownership, ownership, tls_secret_contents
from acmebridge.domain.validatable import REASON as NOT_VALIDATABLE
from acmebridge.domain.validatable import first_unvalidatable
from acmebridge.domain.workload_certificate import (
    PLURAL_KINDS,
    SEEN_CERTIFICATE,
    WORKLOAD_KIND_LABEL,
    WORKLOAD_UID_LABEL,
    Workload,
    certificate_manifest,
    certificate_name,
    controlled_by,
    owner_reference,
    rollout_patch,
)
from acmebridge.domain.workload_mtls import (
    ISSUER_TEMPLATE,
    AnnotationError,
    parse_request,
    render_dns_names,
)
from acmebridge.reconcile.mtls_state import MtlsCore, template_annotations
from acmebridge.reconcile.runtime import ObjectKey

log = logging.getLogger("acmebridge.mtls")

INVALID_ANNOTATION = "InvalidAnnotation"
CERTIFICATE_CONFLICT = "CertificateConflict"
CERTIFICATE_CREATED = "CertificateCreated"
ROLLING_RESTART = "RollingRestart"
NO_CLIENT_AUTH = "NoClientAuth"
SPIFFE_ID_MISSING = "SpiffeIDMissing"
NO_CA_CERTIFICATE = "NoCACertificate"


def _issuer_key(kind: str, namespace: str, name: str) -> ObjectKey:
    return ("clusterissuers", "", name) if kind == "ClusterIssuer" else ("issuers", namespace, name)


async def reconcile_workload(ctl: MtlsCore, key: ObjectKey) -> float | None:
    rt, state = ctl.rt, ctl.state
    plural, namespace, name = key
    workload = Workload(PLURAL_KINDS[plural], namespace, name)
    body = state.workloads.get(key)
    if body is None:
        gone = state.gone.pop(key, None)
        await _remove(ctl, workload, gone)
        return None
    meta = body["metadata"]
    uid = str(meta["uid"])
    try:
        request = parse_request(template_annotations(body), defaults=ctl.defaults)
    except AnnotationError as e:
        await rt.event(body, "Warning", INVALID_ANNOTATION, str(e))
        ctl.set_roots(key, state.roots.get(key, ()))
        return None
    if request is None:  # acmebridge.io/inject: "false"
        await _remove(ctl, workload, body)
        return None
    issuer_key = _issuer_key(request.issuer_kind, namespace, request.issuer_name)
    for users in state.issuer_users.values():
        users.discard(key)
    state.issuer_users[issuer_key].add(key)
    issuer = rt.cache.get(issuer_key)
    issuer_annotations = ((issuer or {}).get("metadata") or {}).get("annotations") or {}
    try:
        dns_names = render_dns_names(
            request,
            workload=name,
            namespace=namespace,
            issuer_template=issuer_annotations.get(ISSUER_TEMPLATE),
            defaults=ctl.defaults,
        )
    except AnnotationError as e:
        await rt.event(body, "Warning", INVALID_ANNOTATION, str(e))
        ctl.set_roots(key, state.roots.get(key, ()))
        return None
    template_spec = (body.get("spec") or {}).get("template", {}).get("spec") or {}
    desired = certificate_manifest(
        workload,
        uid=uid,
        request=request,
        dns_names=dns_names,
        service_account=str(template_spec.get("serviceAccountName") or "default"),
        defaults=ctl.defaults,
    )
    certificate = await _ensure_certificate(ctl, body, desired)
    if certificate is None:
        ctl.set_roots(key, state.roots.get(key, ()))
        return None
    issuer_spec = _issuer_spec(issuer)
    if issuer_spec is not None:
        message = first_unvalidatable(
            dns_names,
            issuer_spec.solvers,
            cluster_domain=rt.config.cluster_domain,
            certificate_labels=desired["metadata"]["labels"],
        )
        if message is not None:
            await rt.event(body, "Warning", NOT_VALIDATABLE, message)
    roots = list(trust.roots_of(issuer_spec.issuing_ca_bundle if issuer_spec else None))
    secret = await _our_secret(ctl, certificate, uid)
    if secret is not None:
        roots += await _follow_secret(ctl, body, secret, request.restart_on_renewal, request.spiffe)
    ctl.set_roots(key, tuple(roots))
    return None


def _issuer_spec(issuer: Mapping[str, Any] | None) -> AcmeIssuerSpec | None:
    spec = (issuer or {}).get("spec")
    if not spec:
        return None
    try:
        return AcmeIssuerSpec.from_body(spec)
    except SpecError:
        return None  # the issuer's own status says what is wrong


async def _ensure_certificate(
    ctl: MtlsCore, workload: Mapping[str, Any], desired: dict[str, Any]
) -> dict[str, Any] | None:
    """Create or update the workload's Certificate; None when one of that name is not ours."""
    rt = ctl.rt
    meta = desired["metadata"]
    path = ours_path("certificates", meta["namespace"], meta["name"])
    existing = await rt.io(rt.kube.get, path)
    if existing is None:
        try:
            created = await rt.io(
                rt.kube.create, ours_path("certificates", meta["namespace"]), desired
            )
        except Conflict:
            return None  # appeared meanwhile; its event brings us back
        await rt.event(
            workload,
            "Normal",
            CERTIFICATE_CREATED,
            f"Certificate {meta['name']} for {', '.join(desired['spec']['dnsNames'])}",
        )
        return created
    owner = controlled_by(existing)
    uid = workload["metadata"]["uid"]
    if owner is None or owner[1] != uid:
        await rt.event(
            workload,
            "Warning",
            CERTIFICATE_CONFLICT,
            f"Certificate {meta['name']} exists and does not belong to this "
            f"{workload.get('kind')}; delete or rename it so that acmebridge can make its own",
        )
        return None
    labels = {**(existing["metadata"].get("labels") or {}), **meta["labels"]}
    if existing.get("spec") == desired["spec"] and labels == existing["metadata"].get("labels"):
        return existing
    updated = dict(existing)
    updated["metadata"] = {**existing["metadata"], "labels": labels}
    updated["spec"] = desired["spec"]
    try:
        result: dict[str, Any] = await rt.io(rt.kube.replace, path, updated)
    except Conflict:
        return existing  # the next event brings the newer one
    log.info(
        "updated Certificate %s/%s to the workload's annotations", meta["namespace"], meta["name"]
    )
    return result


async def _our_secret(
    ctl: MtlsCore, certificate: Mapping[str, Any], workload_uid: str
) -> dict[str, Any] | None:
    rt = ctl.rt
    meta = certificate["metadata"]
    secret = await rt.io(
        rt.kube.get, core_path("secrets", meta["namespace"], certificate["spec"]["secretName"])
    )
    if secret is None:
        return None
    smeta = secret.get("metadata") or {}
    owned = ownership(smeta, certificate_name=meta["name"], certificate_uid=meta.get("uid", ""))
    if (
        owned is not Ownership.OURS
        or (smeta.get("labels") or {}).get(WORKLOAD_UID_LABEL) != workload_uid
    ):
        return None
    return secret


async def _follow_secret(
    ctl: MtlsCore,
    workload: Mapping[str, Any],
    secret: Mapping[str, Any],
    restart_on_renewal: bool,
    spiffe: bool,
) -> list[x509.Certificate]:
    """Own the Secret, roll the workload when asked to, check the leaf; returns ``ca.crt``."""
    rt = ctl.rt
    wmeta = workload["metadata"]
    smeta = secret["metadata"]
    refs = list(smeta.get("ownerReferences") or [])
    if not any(r.get("uid") == wmeta["uid"] for r in refs):
        kind_workload = Workload(str(workload["kind"]), wmeta["namespace"], wmeta["name"])
        # Not the controller: a Secret has at most one, and the Certificate may be it.
        refs.append(owner_reference(kind_workload, wmeta["uid"], controller=False))
        patch = {"metadata": {"ownerReferences": refs, "resourceVersion": smeta["resourceVersion"]}}
        # A Conflict means it was rewritten meanwhile (a renewal): its event brings us back.
        with contextlib.suppress(Conflict):
            await rt.io(
                rt.kube.merge_patch, core_path("secrets", smeta["namespace"], smeta["name"]), patch
            )
    try:
        contents = tls_secret_contents(secret.get("data"))
        chain = parse_pem_certificates(contents.chain_pem or b"")
    except ValueError:
        return []
    if not chain:
        return []
    leaf = chain[0]
    current = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    seen = (wmeta.get("annotations") or {}).get(SEEN_CERTIFICATE)
    patch_ = rollout_patch(seen=seen, current=current, restart_on_renewal=restart_on_renewal)
    if patch_ is not None:
        plural = PLURAL_KINDS_BY_KIND[str(workload["kind"])]
        path = group_path("apps", "v1", plural, wmeta["namespace"], wmeta["name"])
        try:
            await rt.io(rt.kube.merge_patch, path, patch_)
        except (NotFound, Conflict):
            return []
        if "spec" in patch_:
            await rt.event(
                workload,
                "Normal",
                ROLLING_RESTART,
                f"the certificate in Secret {smeta['name']} was renewed (SHA-256 {current[:16]}); "
                "acmebridge.io/restart-on-renewal asks for a rolling restart",
            )
    await _check_leaf(ctl, workload, leaf, spiffe)
    namespace_labels = ctl.state.namespaces.get(wmeta["namespace"]) or {}
    if contents.ca_pem is None and namespace_labels.get(trust.TRUST_LABEL) != "true":
        await rt.event(
            workload,
            "Warning",
            NO_CA_CERTIFICATE,
            f"Secret {smeta['name']} has no ca.crt (the root of its chain could not be proven), "
            "so the pods have nothing to verify peers with: set the issuer's issuingCABundle, or "
            f"label the namespace {trust.TRUST_LABEL}=true for the trust bundle",
        )
    try:
        return list(trust.roots_of(contents.ca_pem))
    except ValueError:
        return []


async def _check_leaf(
    ctl: MtlsCore, workload: Mapping[str, Any], leaf: x509.Certificate, spiffe: bool
) -> None:
    """Warn when the CA issued something mTLS cannot use as asked."""
    try:
        ekus = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        ekus = set()
    if ekus and ExtendedKeyUsageOID.CLIENT_AUTH not in ekus:
        await ctl.rt.event(
            workload,
            "Warning",
            NO_CLIENT_AUTH,
            "the CA issued the certificate for server authentication only (no clientAuth "
            "extended key usage): peers will refuse it as a client certificate; use a CA or "
            "ACME profile that issues clientAuth for mutual TLS",
        )
    if spiffe:
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if not any(u.startswith("spiffe://") for u in uris):
            await ctl.rt.event(
                workload,
                "Warning",
                SPIFFE_ID_MISSING,
                "acmebridge.io/spiffe asked for a SPIFFE ID, but the CA left the URI SAN out of "
                "the certificate: this CA does not issue URI SANs through ACME",
            )


PLURAL_KINDS_BY_KIND = {kind: plural for plural, kind in PLURAL_KINDS.items()}


async def _remove(ctl: MtlsCore, workload: Workload, last: Mapping[str, Any] | None) -> None:
    """The workload is gone or opted out: delete its Certificate and its Secret (only ours)."""
    rt = ctl.rt
    key = (workload.plural, workload.namespace, workload.name)
    ctl.set_roots(key, None)
    for users in ctl.state.issuer_users.values():
        users.discard(key)
    name = certificate_name(workload.kind, workload.name)
    cert_path = ours_path("certificates", workload.namespace, name)
    certificate = await rt.io(rt.kube.get, cert_path)
    owner = controlled_by(certificate)
    uid = owner[1] if owner is not None and owner[0] == workload else None
    if last is not None:
        uid = str((last.get("metadata") or {}).get("uid", "")) or uid
    if certificate is not None and owner is not None and owner[0] == workload:
        with contextlib.suppress(Conflict, NotFound):
            await rt.io(rt.kube.delete, cert_path, uid=certificate["metadata"]["uid"])
    if not uid:
        return
    secret_path = core_path("secrets", workload.namespace, name)
    secret = await rt.io(rt.kube.get, secret_path)
    labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
    if (
        secret is not None
        and labels.get(WORKLOAD_UID_LABEL) == uid
        and labels.get(WORKLOAD_KIND_LABEL) == workload.kind
    ):
        try:
            await rt.io(rt.kube.delete, secret_path, uid=secret["metadata"]["uid"])
            log.info(
                "deleted Secret %s/%s of the removed %s", workload.namespace, name, workload.kind
            )
        except (Conflict, NotFound, KubeError) as e:
            log.warning("could not delete Secret %s/%s: %s", workload.namespace, name, e)
