"""A workload's Certificate: its name, owner and manifest; which workload a Pod belongs to; when a
renewal rolls the workload. Pure.

The Certificate and its Secret share one name, ``<workload>-<kind>-mtls``: the webhook derives it
from the Pod alone (no API call on the admission path), and the kind in it keeps a Deployment and
a StatefulSet of the same name apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acmebridge.domain.durations import format_go_duration
from acmebridge.domain.secret import label_value
from acmebridge.domain.workload_mtls import PREFIX, MtlsDefaults, MtlsRequest

__all__ = [
    "PLURAL_KINDS",
    "WORKLOAD_KINDS",
    "Workload",
    "certificate_manifest",
    "certificate_name",
    "controlled_by",
    "rollout_patch",
    "workload_of_pod",
]

#: on the workload (not its template, so writing it never rolls the pods): the SHA-256 of the
#: certificate the workload was last seen with
SEEN_CERTIFICATE = PREFIX + "certificate-sha256"
#: on the pod template: the certificate a rolling restart was made for
RESTARTED_FOR = PREFIX + "restarted-for"
# The Secret gets these through the Certificate's secretTemplate, which may not use the
# acmebridge.io/ prefix (the certificate reconcile's own labels); hence a prefix of their own.
WORKLOAD_KIND_LABEL = "workload.acmebridge.io/kind"
WORKLOAD_NAME_LABEL = "workload.acmebridge.io/name"
WORKLOAD_UID_LABEL = "workload.acmebridge.io/uid"
MANAGED_BY = {"app.kubernetes.io/managed-by": "acmebridge"}

USAGES = ("digital signature", "server auth", "client auth")
#: kind -> (API plural, the word in Certificate names)
WORKLOAD_KINDS: Mapping[str, str] = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
}
PLURAL_KINDS: Mapping[str, str] = {plural: kind for kind, plural in WORKLOAD_KINDS.items()}


@dataclass(frozen=True)
class Workload:
    """A Deployment, StatefulSet or DaemonSet, as far as its Certificate is concerned."""

    kind: str
    namespace: str
    name: str

    @property
    def plural(self) -> str:
        return WORKLOAD_KINDS[self.kind]


def spiffe_id(*, trust_domain: str, namespace: str, service_account: str) -> str:
    """The SPIFFE ID Istio and SPIRE's Kubernetes workload registrar use for a service account."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def certificate_name(kind: str, name: str) -> str:
    """The name of a workload's Certificate and of its Secret (at most 253 characters)."""
    full = f"{name}-{kind.lower()}-mtls"
    if len(full) <= 253:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:10]
    return f"{full[: 253 - len(digest) - 1].rstrip('-.')}-{digest}"


def workload_labels(workload: Workload, uid: str) -> dict[str, str]:
    """Labels on the workload's Certificate and Secret: whose they are."""
    return {
        WORKLOAD_KIND_LABEL: workload.kind,
        WORKLOAD_NAME_LABEL: label_value(workload.name),
        WORKLOAD_UID_LABEL: uid,
        **MANAGED_BY,
    }


def owner_reference(
    workload: Workload, uid: str, *, controller: bool = True, block: bool = False
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": workload.kind,
        "name": workload.name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": block,
    }


def certificate_manifest(
    workload: Workload,
    *,
    uid: str,
    request: MtlsRequest,
    dns_names: Sequence[str],
    service_account: str,
    defaults: MtlsDefaults,
) -> dict[str, Any]:
    """Pure: the Certificate a workload gets, owned by it (deleted with it by the garbage
    collector). Its Secret carries the workload's labels, including its UID, so that the
    operator can tell it belongs to this workload and not to an earlier one of the same name."""
    name = certificate_name(workload.kind, workload.name)
    labels = workload_labels(workload, uid)
    spec: dict[str, Any] = {
        "secretName": name,
        "issuerRef": {
            "name": request.issuer_name,
            "kind": request.issuer_kind,
            "group": "acmebridge.io",
        },
        "dnsNames": list(dns_names),
        "duration": format_go_duration(request.duration),
        "usages": list(USAGES),
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "secretTemplate": {"labels": dict(labels)},
    }
    if request.spiffe:
        spec["uris"] = [
            spiffe_id(
                trust_domain=defaults.spiffe_trust_domain,
                namespace=workload.namespace,
                service_account=service_account,
            )
        ]
    return {
        "apiVersion": "acmebridge.io/v1alpha1",
        "kind": "Certificate",
        "metadata": {
            "name": name,
            "namespace": workload.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(workload, uid)],
        },
        "spec": spec,
    }


def controlled_by(body: Mapping[str, Any] | None) -> tuple[Workload, str] | None:
    """Pure: the workload (and its UID) that controls an object, from its ownerReferences."""
    meta = (body or {}).get("metadata") or {}
    for ref in meta.get("ownerReferences") or ():
        if (
            isinstance(ref, Mapping)
            and ref.get("controller")
            and ref.get("apiVersion") == "apps/v1"
            and ref.get("kind") in WORKLOAD_KINDS
        ):
            workload = Workload(
                str(ref["kind"]), str(meta.get("namespace") or ""), str(ref["name"])
            )
            return workload, str(ref.get("uid", ""))
    return None


def workload_of_pod(pod: Mapping[str, Any], namespace: str) -> Workload | None:
    """Pure: the Deployment, StatefulSet or DaemonSet a Pod was made for, from the Pod alone.

    A Deployment's Pods belong to a ReplicaSet named ``<deployment>-<pod-template-hash>``; the
    hash is also the Pod's ``pod-template-hash`` label, so the Deployment's name is what is left
    when that suffix is taken off. None for a Pod no such workload controls.
    """
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or ():
        if not isinstance(ref, Mapping) or not ref.get("controller"):
            continue
        kind, name = ref.get("kind"), str(ref.get("name", ""))
        if ref.get("apiVersion") != "apps/v1":
            continue
        if kind in ("StatefulSet", "DaemonSet"):
            return Workload(str(kind), namespace, name)
        if kind == "ReplicaSet":
            suffix = "-" + str((meta.get("labels") or {}).get("pod-template-hash", ""))
            if len(suffix) > 1 and name.endswith(suffix) and len(name) > len(suffix):
                return Workload("Deployment", namespace, name[: -len(suffix)])
    return None


def rollout_patch(
    *, seen: str | None, current: str, restart_on_renewal: bool
) -> dict[str, Any] | None:
    """Pure: the merge patch for a workload whose Secret now holds the certificate ``current``
    (a SHA-256), after it was last seen with ``seen``; None when nothing changed.

    The first certificate is only recorded: the pods created before it existed waited for it
    (their Secret volume is not optional), so they already run with it. A later one is a
    renewal; with ``restart_on_renewal`` the pod template gets the certificate's hash, which
    rolls the pods the way ``kubectl rollout restart`` does, and only once per certificate.
    """
    if seen == current:
        return None
    patch: dict[str, Any] = {"metadata": {"annotations": {SEEN_CERTIFICATE: current}}}
    if seen is not None and restart_on_renewal:
        patch["spec"] = {"template": {"metadata": {"annotations": {RESTARTED_FOR: current}}}}
    return patch
