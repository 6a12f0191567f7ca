"""Workload mTLS: a pod template's ``acmebridge.io/*`` annotations, parsed once, and its names.

One parser serves the admission webhook (which refuses bad values, naming the annotation) and
the workload reconcile (which makes the workload's Certificate), so that both read the same
annotations the same way. Pure. What follows from a parsed request (the Certificate, the Pod's
workload, rolling restarts) is in ``domain.workload_certificate``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from acmebridge.domain.durations import parse_go_duration
from acmebridge.domain.names import normalise_dns_name

__all__ = [
    "ANNOTATIONS",
    "AnnotationError",
    "MtlsDefaults",
    "MtlsRequest",
    "parse_request",
    "render_dns_names",
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
DEFAULT_MOUNT_PATH = "/var/run/acmebridge"
DEFAULT_DURATION = timedelta(hours=24)
MIN_DURATION = timedelta(minutes=5)
MAX_NAMES = 100
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
