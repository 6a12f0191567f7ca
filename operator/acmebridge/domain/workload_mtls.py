"""Workload mTLS: a pod template's ``acmebridge.io/*`` annotations, parsed once, and what follows.

One parser serves the admission webhook (which refuses bad values, naming the annotation) and
the workload reconcile (which makes the workload's Certificate), so that both read the same
annotations the same way. Everything here is pure: names of the workload's Certificate and
Secret, the Certificate manifest, which workload a Pod belongs to, and when a renewal asks for a
rolling restart.

The Certificate and its Secret share one name, ``<workload>-<kind>-mtls``: the webhook derives it
from the Pod alone (no API call on the admission path), and the kind in it keeps a Deployment and
a StatefulSet of the same name apart.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from acmebridge.domain.durations import format_go_duration, parse_go_duration
from acmebridge.domain.names import normalise_dns_name
from acmebridge.domain.secret import label_value

__all__ = [
    "ANNOTATIONS",
    "AnnotationError",
    "MtlsDefaults",
    "MtlsRequest",
    "Workload",
    "certificate_manifest",
    "certificate_name",
    "parse_request",
    "render_dns_names",
    "rollout_patch",
    "workload_of_pod",
]

PREFIX = "acmebridge.io/"
INJECT = PREFIX + "inject"
ISSUER = PREFIX + "issuer"
ISSUER_KIND = PREFIX + "issuer-kind"
DNS_NAMES = PREFIX + "dns-names"
DURATION = PREFIX + "duration"
MOUNT_PATH = PREFIX + "mount-path"
CONTAINERS = PREFIX + "containers"
SPIFFE = PREFIX + "spiffe"
RESTART_ON_RENEWAL = PREFIX + "restart-on-renewal"
#: every pod-template annotation this feature reads
ANNOTATIONS = (
    INJECT,
    ISSUER,
    ISSUER_KIND,
    DNS_NAMES,
    DURATION,
    MOUNT_PATH,
    CONTAINERS,
    SPIFFE,
    RESTART_ON_RENEWAL,
)
#: on an Issuer or ClusterIssuer: the dns-names template for workloads that give none
ISSUER_TEMPLATE = PREFIX + "dns-names-template"
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

DEFAULT_MOUNT_PATH = "/var/run/acmebridge"
DEFAULT_DURATION = timedelta(hours=24)
MIN_DURATION = timedelta(minutes=5)
MAX_NAMES = 100
USAGES = ("digital signature", "server auth", "client auth")
#: kind -> (API plural, the word in Certificate names)
WORKLOAD_KINDS: Mapping[str, str] = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
}
PLURAL_KINDS: Mapping[str, str] = {plural: kind for kind, plural in WORKLOAD_KINDS.items()}
_TRUE, _FALSE = "true", "false"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDERS = ("name", "namespace")
_TRUST_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?", re.ASCII)
_CONTAINER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)


class AnnotationError(ValueError):
    """A bad annotation value; the message names the annotation and says what would work."""

    def __init__(self, annotation: str, message: str) -> None:
        super().__init__(f"{annotation}: {message}")
        self.annotation = annotation


@dataclass(frozen=True)
class MtlsDefaults:
    """What the operator's flags supply when a workload does not say."""

    dns_names_template: str = ""
    duration: timedelta = DEFAULT_DURATION
    spiffe_trust_domain: str = "cluster.local"


@dataclass(frozen=True)
class MtlsRequest:
    """A workload's parsed annotations. ``dns_names`` holds templates (``{name}`` ...) or names;
    empty means "the issuer's or the operator's default template"."""

    issuer_name: str
    issuer_kind: str
    dns_names: tuple[str, ...]
    duration: timedelta
    mount_path: str
    containers: tuple[str, ...]
    spiffe: bool
    restart_on_renewal: bool


@dataclass(frozen=True)
class Workload:
    """A Deployment, StatefulSet or DaemonSet, as far as its Certificate is concerned."""

    kind: str
    namespace: str
    name: str

    @property
    def plural(self) -> str:
        return WORKLOAD_KINDS[self.kind]


def _boolean(annotations: Mapping[str, str], key: str) -> bool:
    value = annotations.get(key, _FALSE)
    if value not in (_TRUE, _FALSE):
        raise AnnotationError(key, f'must be "true" or "false", got {value!r}')
    return value == _TRUE


def injection_requested(annotations: Mapping[str, str] | None) -> bool:
    """Pure: the annotations opt in (their values are checked by :func:`parse_request`)."""
    return (annotations or {}).get(INJECT) == _TRUE


def _names(raw: str) -> tuple[str, ...]:
    items = [item.strip() for item in raw.split(",")]
    if not raw.strip() or any(not item for item in items):
        raise AnnotationError(
            DNS_NAMES,
            f"{raw!r} has an empty entry: give comma-separated names or templates, such as "
            '"web.shop.mesh.example.com" or "{name}.{namespace}.mesh.example.com"',
        )
    if len(items) > MAX_NAMES:
        raise AnnotationError(DNS_NAMES, f"at most {MAX_NAMES} names, got {len(items)}")
    for item in items:
        _check_template(DNS_NAMES, item)
    return tuple(dict.fromkeys(items))


def _check_template(annotation: str, template: str) -> None:
    for placeholder in _PLACEHOLDER.findall(template):
        if placeholder not in _PLACEHOLDERS:
            raise AnnotationError(
                annotation,
                f"{template!r} uses {{{placeholder}}}; a template may use only "
                + " and ".join(f"{{{p}}}" for p in _PLACEHOLDERS),
            )
    rest = _PLACEHOLDER.sub("x", template)
    if "{" in rest or "}" in rest:
        raise AnnotationError(annotation, f"{template!r} has an unmatched brace")
    try:
        normalise_dns_name(rest, allow_wildcard=False)
    except ValueError as e:
        raise AnnotationError(annotation, f"{e}; wildcards cannot be validated per workload") from e


def _duration(annotations: Mapping[str, str], default: timedelta) -> timedelta:
    raw = annotations.get(DURATION)
    if raw is None:
        return default
    try:
        value = parse_go_duration(raw)
    except ValueError as e:
        raise AnnotationError(DURATION, str(e)) from e
    if value < MIN_DURATION:
        raise AnnotationError(DURATION, f"must be at least 5m, got {raw!r}")
    return value


def _mount_path(raw: str) -> str:
    if not raw.startswith("/") or raw != posixpath.normpath(raw) or raw == "/":
        raise AnnotationError(
            MOUNT_PATH,
            f"{raw!r} must be an absolute, normalised directory other than '/' "
            f"(such as {DEFAULT_MOUNT_PATH})",
        )
    if ":" in raw or len(raw) > 1024:
        raise AnnotationError(MOUNT_PATH, f"{raw!r} may not contain ':' or exceed 1024 characters")
    return raw


def _containers(raw: str) -> tuple[str, ...]:
    items = [item.strip() for item in raw.split(",")]
    for item in items:
        if _CONTAINER_NAME.fullmatch(item) is None:
            raise AnnotationError(
                CONTAINERS,
                f"{item!r} is not a container name: give comma-separated names of the pod's "
                "containers, or leave the annotation out to mount into every container",
            )
    return tuple(dict.fromkeys(items))


def parse_request(
    annotations: Mapping[str, str] | None, *, defaults: MtlsDefaults
) -> MtlsRequest | None:
    """Pure: the request the annotations make, None when they do not opt in.

    Raises :class:`AnnotationError` for the first bad value, naming its annotation.
    """
    values = dict(annotations or {})
    if not _boolean(values, INJECT):
        return None
    issuer = values.get(ISSUER, "").strip()
    if not issuer:
        raise AnnotationError(
            ISSUER, "is required with acmebridge.io/inject: name the Issuer (or ClusterIssuer)"
        )
    if len(issuer) > 253 or re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", issuer) is None:
        raise AnnotationError(ISSUER, f"{issuer!r} is not a valid Issuer name")
    kind = values.get(ISSUER_KIND, "Issuer")
    if kind not in ("Issuer", "ClusterIssuer"):
        raise AnnotationError(ISSUER_KIND, f'must be "Issuer" or "ClusterIssuer", got {kind!r}')
    raw_names = values.get(DNS_NAMES)
    spiffe = _boolean(values, SPIFFE)
    if spiffe and _TRUST_DOMAIN.fullmatch(defaults.spiffe_trust_domain) is None:
        raise AnnotationError(
            SPIFFE, f"the operator's trust domain {defaults.spiffe_trust_domain!r} is not valid"
        )
    return MtlsRequest(
        issuer_name=issuer,
        issuer_kind=kind,
        dns_names=_names(raw_names) if raw_names is not None else (),
        duration=_duration(values, defaults.duration),
        mount_path=_mount_path(values.get(MOUNT_PATH, DEFAULT_MOUNT_PATH)),
        containers=_containers(values[CONTAINERS]) if CONTAINERS in values else (),
        spiffe=spiffe,
        restart_on_renewal=_boolean(values, RESTART_ON_RENEWAL),
    )


def render_dns_names(
    request: MtlsRequest,
    *,
    workload: str,
    namespace: str,
    issuer_template: str | None,
    defaults: MtlsDefaults,
) -> tuple[str, ...]:
    """Pure: the workload's DNS names: its own annotation, else the issuer's template, else the
    operator's. Raises :class:`AnnotationError` (naming ``acmebridge.io/dns-names``) when there
    is none or a rendered name is not a valid DNS name."""
    templates: Sequence[str] = request.dns_names
    source = DNS_NAMES
    if not templates and issuer_template:
        templates, source = _names_from(issuer_template, f"the issuer's {ISSUER_TEMPLATE}")
    if not templates and defaults.dns_names_template:
        templates, source = _names_from(
            defaults.dns_names_template, "the operator's --workload-dns-names-template"
        )
    if not templates:
        raise AnnotationError(
            DNS_NAMES,
            "is required: no names were given, and neither the issuer (annotation "
            f"{ISSUER_TEMPLATE}) nor the operator (--workload-dns-names-template) has a default "
            'template; for example "{name}.{namespace}.mesh.example.com"',
        )
    rendered: list[str] = []
    for template in templates:
        text = template.replace("{name}", workload).replace("{namespace}", namespace)
        try:
            rendered.append(normalise_dns_name(text, allow_wildcard=False))
        except ValueError as e:
            raise AnnotationError(
                DNS_NAMES, f"{template!r} (from {source}) gives {text!r}, which is invalid: {e}"
            ) from e
    return tuple(dict.fromkeys(rendered))


def _names_from(template: str, source: str) -> tuple[tuple[str, ...], str]:
    try:
        return _names(template), source
    except AnnotationError as e:
        raise AnnotationError(DNS_NAMES, f"{source} is invalid: {e}") from e


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
