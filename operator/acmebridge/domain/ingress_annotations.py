"""An Ingress's certificate annotations, read into an issuer and a Certificate spec fragment.

Pure. cert-manager's ingress-shim taught users to annotate an Ingress instead of writing a
Certificate; acmebridge reads the same annotations under its own prefix (``acmebridge.io/issuer``)
and, as a migration path, under cert-manager's (``cert-manager.io/issuer``).

One prefix per Ingress: an ``acmebridge.io/`` issuer annotation makes acmebridge read only
``acmebridge.io/`` annotations; without one, a ``cert-manager.io/`` issuer annotation makes it read
only ``cert-manager.io/`` ones. Mixing them key by key would let a rollback to cert-manager (which
reads only its own) change what an Ingress means without anyone seeing it. An option left under
``cert-manager.io/`` on an ``acmebridge.io/`` Ingress is reported, so it is not lost silently.

``cert-manager.io/issuer-group`` names the API group of the issuer; a group other than
``cert-manager.io`` or ``acmebridge.io`` is an issuer another controller serves (AWS PCA, Vault,
...), so such an Ingress is not acmebridge's. Options that have no counterpart in acmebridge's
Certificate (``revision-history-limit``: acmebridge keeps no CertificateRequests) are ignored.

Each value is checked by the Certificate spec parser itself (``CertificateSpec.from_body``), so an
annotation is accepted exactly when the same field in a Certificate would be; its messages are
rewritten to name the annotation instead of the spec field.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from acmebridge.domain.errors import SpecError
from acmebridge.domain.fields import check_object_name
from acmebridge.domain.names import canonical_ip, is_ip, normalise_dns_name
from acmebridge.domain.spec import GROUP, CertificateSpec, IssuerRef

__all__ = [
    "CERT_MANAGER",
    "CERT_MANAGER_GROUP",
    "OPTIONS",
    "OWN",
    "Annotations",
    "read_annotations",
    "shim_prefix",
]

OWN = "acmebridge.io/"
CERT_MANAGER = "cert-manager.io/"
CERT_MANAGER_GROUP = "cert-manager.io"
ISSUER, CLUSTER_ISSUER, ISSUER_KIND, ISSUER_GROUP = (
    "issuer",
    "cluster-issuer",
    "issuer-kind",
    "issuer-group",
)
_KINDS = ("Issuer", "ClusterIssuer")

# Option (the annotation after its prefix) -> the Certificate spec field it sets. These are the
# Ingress annotations cert-manager documents that have a field in acmebridge's Certificate.
OPTIONS: Mapping[str, str] = {
    "common-name": "commonName",
    "duration": "duration",
    "renew-before": "renewBefore",
    "renew-before-percentage": "renewBeforePercentage",
    "usages": "usages",
    "email-sans": "emailAddresses",
    "ip-sans": "ipAddresses",
    "uri-sans": "uris",
    "private-key-algorithm": "privateKey.algorithm",
    "private-key-encoding": "privateKey.encoding",
    "private-key-size": "privateKey.size",
    "private-key-rotation-policy": "privateKey.rotationPolicy",
    "subject-organizations": "subject.organizations",
    "subject-organizationalunits": "subject.organizationalUnits",
    "subject-countries": "subject.countries",
    "subject-provinces": "subject.provinces",
    "subject-localities": "subject.localities",
    "subject-postalcodes": "subject.postalCodes",
    "subject-streetaddresses": "subject.streetAddresses",
    "subject-serialnumber": "subject.serialNumber",
    "secret-template": "secretTemplate",
}

# A spec that parses, to check one annotation's fragment with the real parser.
_PROBE: Mapping[str, Any] = {
    "secretName": "probe",
    "issuerRef": {"name": "probe"},
    "dnsNames": ["probe.invalid"],
}


@dataclass(frozen=True)
class Annotations:
    """What the annotations say. ``wanted`` False: the Ingress asks acmebridge for nothing."""

    wanted: bool
    prefix: str = OWN
    issuer: IssuerRef | None = None
    #: Certificate spec fields set by the options (camelCase, as in a manifest)
    spec: Mapping[str, Any] | None = None
    #: (annotation, what is wrong and what to write): each one stops every change
    errors: tuple[tuple[str, str], ...] = ()
    #: annotations that are ignored, and why (changes go ahead)
    ignored: tuple[tuple[str, str], ...] = ()
    #: set when the Ingress is meant for an issuer another controller serves
    other_issuer: str | None = None


def shim_prefix(annotations: Mapping[str, str]) -> str | None:
    """The prefix whose annotations this Ingress uses, or None when it names no issuer."""
    for prefix in (OWN, CERT_MANAGER):
        if prefix + ISSUER in annotations or prefix + CLUSTER_ISSUER in annotations:
            return prefix
    return None


def read_annotations(annotations: Mapping[str, str]) -> Annotations:
    """Read the issuer and the options; every bad annotation is reported, not just the first."""
    prefix = shim_prefix(annotations)
    if prefix is None:
        return Annotations(wanted=False)
    group = annotations.get(CERT_MANAGER + ISSUER_GROUP) if prefix == CERT_MANAGER else None
    if group is not None and group not in ("", CERT_MANAGER_GROUP, GROUP):
        return Annotations(wanted=False, prefix=prefix, other_issuer=group)
    errors: list[tuple[str, str]] = []
    issuer = _issuer(annotations, prefix, errors)
    spec = _options(annotations, prefix, errors)
    return Annotations(
        wanted=True,
        prefix=prefix,
        issuer=None if errors else issuer,
        spec=spec,
        errors=tuple(errors),
        ignored=_ignored(annotations, prefix),
    )


def _issuer(
    annotations: Mapping[str, str], prefix: str, errors: list[tuple[str, str]]
) -> IssuerRef | None:
    issuer, cluster = annotations.get(prefix + ISSUER), annotations.get(prefix + CLUSTER_ISSUER)
    kind = annotations.get(prefix + ISSUER_KIND)
    if issuer is not None and cluster is not None:
        errors.append(
            (
                prefix + ISSUER,
                f"both {prefix}{ISSUER} and {prefix}{CLUSTER_ISSUER} are set: keep one "
                f"({prefix}{ISSUER} names an Issuer in this namespace, {prefix}{CLUSTER_ISSUER} "
                "a ClusterIssuer)",
            )
        )
        return None
    # cert-manager refuses these combinations too: the cluster-issuer annotation is the kind.
    if cluster is not None and kind is not None:
        errors.append(
            (
                prefix + ISSUER_KIND,
                f"may not be set with {prefix}{CLUSTER_ISSUER}, which already says the kind: "
                f"remove {prefix}{ISSUER_KIND}",
            )
        )
    if (
        cluster is not None
        and prefix == CERT_MANAGER
        and CERT_MANAGER + ISSUER_GROUP in annotations
    ):
        errors.append(
            (
                CERT_MANAGER + ISSUER_GROUP,
                f"may not be set with {CERT_MANAGER}{CLUSTER_ISSUER}: remove it",
            )
        )
    key = prefix + (ISSUER if issuer is not None else CLUSTER_ISSUER)
    name = issuer if issuer is not None else cluster
    assert name is not None
    if kind is not None and kind not in _KINDS:
        errors.append(
            (
                prefix + ISSUER_KIND,
                f"{kind!r} is not a kind acmebridge issues with: write Issuer or ClusterIssuer",
            )
        )
        return None
    resolved: Literal["Issuer", "ClusterIssuer"] = (
        "ClusterIssuer" if cluster is not None or kind == "ClusterIssuer" else "Issuer"
    )
    if not name:
        where = "this namespace's Issuer" if resolved == "Issuer" else "a ClusterIssuer"
        errors.append((key, f"is empty: write the name of {where}"))
        return None
    try:
        check_object_name(name, key)
    except SpecError as e:
        errors.append((key, e.message.removeprefix(f"{key}: ")))
        return None
    return IssuerRef(name=name, kind=resolved)


def _ignored(annotations: Mapping[str, str], prefix: str) -> tuple[tuple[str, str], ...]:
    if prefix != OWN:
        return ()
    return tuple(
        (
            CERT_MANAGER + option,
            f"is ignored because {OWN}{ISSUER} or {OWN}{CLUSTER_ISSUER} is set, and then "
            f"acmebridge reads only {OWN} annotations: write {OWN}{option}",
        )
        for option in OPTIONS
        if CERT_MANAGER + option in annotations and OWN + option not in annotations
    )


def _options(
    annotations: Mapping[str, str], prefix: str, errors: list[tuple[str, str]]
) -> dict[str, Any]:
    """Each present option as a spec fragment; then the spec parser judges them together, and
    each option it refuses is reported and dropped until the rest parses."""
    fragments: dict[str, Any] = {}
    for option in OPTIONS:
        raw = annotations.get(prefix + option)
        if raw is None:
            continue
        try:
            fragments[option] = _CONVERT.get(option, _text)(raw)
        except ValueError as e:
            errors.append((prefix + option, str(e)))
    if fragments.get("private-key-algorithm") == "Ed25519":
        fragments.pop("private-key-size", None)  # cert-manager ignores a size for Ed25519 too
    if "renew-before" in fragments and "renew-before-percentage" in fragments:
        errors.append(
            (
                prefix + "renew-before",
                f"{prefix}renew-before and {prefix}renew-before-percentage are mutually "
                "exclusive: keep one of them",
            )
        )
        fragments.pop("renew-before-percentage")
    while fragments:
        spec = _assemble(fragments)
        try:
            CertificateSpec.from_body({**_PROBE, **spec})
        except SpecError as e:
            culprit = _option_of(e.message)
            if culprit is None or culprit not in fragments:
                # A rule about the whole spec (too many names): name every option involved.
                errors.append((", ".join(prefix + o for o in fragments), e.message))
                return {}
            errors.append((prefix + culprit, e.message.partition(": ")[2]))
            fragments.pop(culprit)
            continue
        return spec
    return {}


def _assemble(fragments: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for option, value in fragments.items():
        field = OPTIONS[option]
        head, _, tail = field.partition(".")
        if tail:
            spec.setdefault(head, {})[tail] = value
        else:
            spec[head] = value
    return spec


def _option_of(message: str) -> str | None:
    """The option whose field a parser message names (``spec.privateKey.size: ...``)."""
    path = message.partition(": ")[0].removeprefix("spec.")
    best: str | None = None
    for option, field in OPTIONS.items():
        named = path == field or path.startswith((field + ".", field + "["))
        if named and (best is None or len(field) > len(OPTIONS[best])):
            best = option
    return best


def _text(value: str) -> str:
    return value.strip()


def _comma_list(value: str) -> list[str]:
    """``a, b,c`` -> ``[a, b, c]``: cert-manager splits these on commas."""
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        raise ValueError(f"{value!r} lists nothing: write comma-separated values")
    return [item for item in items if item]


def _csv_list(value: str) -> list[str]:
    """One line of CSV, so that a value may hold a comma when quoted, as cert-manager reads the
    subject annotations: ``"10 Downing Street, Westminster",Manchester``."""
    try:
        records = list(csv.reader(io.StringIO(value), strict=True))
    except csv.Error as e:
        raise ValueError(f"{value!r} is not one line of comma-separated values: {e}") from None
    if len(records) != 1 or not any(records[0]):
        raise ValueError(
            f"{value!r} must be one line of comma-separated values, such as "
            '"Example Corp","Example Ltd"'
        )
    return records[0]


def _name(value: str) -> str:
    """A DNS name or IP address in the one form the Certificate CRD accepts."""
    value = value.strip()
    return canonical_ip(value) if is_ip(value) else normalise_dns_name(value)


def _ip_list(value: str) -> list[str]:
    return [canonical_ip(item) for item in _comma_list(value)]


def _integer(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None


def _secret_template(value: str) -> dict[str, Any]:
    """cert-manager's JSON ``{"labels": {...}, "annotations": {...}}``; nothing else."""
    try:
        template = json.loads(value)
    except ValueError as e:
        raise ValueError(
            f'is not JSON ({e}): write e.g. {{"labels": {{"team": "shop"}}}}'
        ) from None
    if not isinstance(template, dict) or set(template) - {"labels", "annotations"}:
        raise ValueError('must be a JSON object with only "labels" and "annotations"')
    return template


_CONVERT: Mapping[str, Callable[[str], Any]] = {
    "common-name": _name,
    "renew-before-percentage": _integer,
    "usages": _comma_list,
    "email-sans": _comma_list,
    "ip-sans": _ip_list,
    "uri-sans": _comma_list,
    "private-key-size": _integer,
    "subject-organizations": _csv_list,
    "subject-organizationalunits": _csv_list,
    "subject-countries": _csv_list,
    "subject-provinces": _csv_list,
    "subject-localities": _csv_list,
    "subject-postalcodes": _csv_list,
    "subject-streetaddresses": _csv_list,
    "secret-template": _secret_template,
}
