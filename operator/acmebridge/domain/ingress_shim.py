"""Which Certificates an annotated Ingress asks for, and what to change to get there.

Pure. :func:`plan` reads an Ingress body: one Certificate per Secret named in ``spec.tls``, named
after that Secret (as cert-manager's ingress-shim names them), with that entry's hosts as its
names, owned by the Ingress. :func:`changes` compares the plan with the Certificates that exist
and says which to create, update and delete. ``reconcile.ingresses`` gathers and acts.

The rules, and why:

- A bad annotation changes nothing: a typo in a duration must neither delete nor re-issue
  certificates that serve traffic. A bad TLS entry skips that entry and leaves its Certificate as
  it is; two entries naming one Secret stop everything (cert-manager refuses that too).
- The shim's own Certificates carry the ``acmebridge.io/ingress-name`` label *and* a controller
  ownerReference with the Ingress's UID. Only those are ever updated or deleted; a Certificate of
  the same name without both is someone else's, reported as a conflict and left untouched.
- No annotation (any more), or a TLS entry gone: that Certificate is deleted. Its Secret is never
  touched here: it stays for the Pods that mount it, the user's to delete.
- The ownerReference does not block the owner's deletion: ``blockOwnerDeletion`` needs update
  permission on ``ingresses/finalizers``, more than the list and watch the operator has.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from acmebridge.domain.errors import SpecError
from acmebridge.domain.fields import check_object_name
from acmebridge.domain.ingress_annotations import OWN, Annotations, read_annotations
from acmebridge.domain.names import canonical_ip, is_ip, normalise_dns_name
from acmebridge.domain.secret import CERTIFICATE_API_VERSION, label_value
from acmebridge.domain.spec import CertificateSpec, IssuerRef

__all__ = [
    "BAD_CONFIG",
    "CONFLICT",
    "INGRESS_API_VERSION",
    "INGRESS_LABEL",
    "OTHER_ISSUER",
    "Changes",
    "Desired",
    "Plan",
    "Problem",
    "changes",
    "controlling_ingress",
    "is_shim_certificate",
    "issuer_missing",
    "plan",
]

INGRESS_LABEL = "acmebridge.io/ingress-name"
INGRESS_API_VERSION = "networking.k8s.io/v1"
# Event reasons on the Ingress (cert-manager's ingress-shim uses BadConfig too).
BAD_CONFIG = "BadConfig"
CONFLICT = "CertificateConflict"
OTHER_ISSUER = "OtherIssuerGroup"
IGNORED = "IgnoredAnnotation"
ISSUER_NOT_FOUND = "IssuerNotFound"


@dataclass(frozen=True)
class Problem:
    """Something to tell the user with an Event on the Ingress."""

    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Warning"
    #: the Certificate a conflict is about
    certificate: str | None = None


@dataclass(frozen=True)
class Desired:
    """One Certificate the Ingress asks for: its manifest and its parsed spec."""

    name: str
    manifest: Mapping[str, Any]
    spec: CertificateSpec


@dataclass(frozen=True)
class Plan:
    """What an Ingress asks for."""

    #: the Ingress asks acmebridge for certificates (False: no annotation, or another issuer's)
    wanted: bool
    #: a problem forbids every change: keep all of this Ingress's Certificates as they are
    hold: bool = False
    issuer: IssuerRef | None = None
    certificates: tuple[Desired, ...] = ()
    #: Certificates whose TLS entry is broken: neither updated nor deleted
    keep: frozenset[str] = frozenset()
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Changes:
    create: tuple[Desired, ...] = ()
    #: (what is wanted, the existing body with the wanted labels and spec, to PUT)
    update: tuple[tuple[Desired, Mapping[str, Any]], ...] = ()
    #: existing bodies to delete (with their UID as precondition)
    delete: tuple[Mapping[str, Any], ...] = ()
    problems: tuple[Problem, ...] = ()


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def plan(ingress: Mapping[str, Any]) -> Plan:
    """The Certificates an Ingress body asks for, and what is wrong with it (pure)."""
    meta = ingress.get("metadata") or {}
    read = read_annotations(_strings(meta.get("annotations")))
    if read.other_issuer is not None:
        return Plan(
            wanted=False,
            problems=(
                Problem(
                    OTHER_ISSUER,
                    f"cert-manager.io/issuer-group is {read.other_issuer!r}: that issuer is "
                    "served by another controller, so acmebridge makes no Certificate for this "
                    "Ingress",
                    "Normal",
                ),
            ),
        )
    if not read.wanted:
        return Plan(wanted=False)
    ignored = tuple(Problem(IGNORED, f"{key} {why}") for key, why in read.ignored)
    if read.errors or read.issuer is None:
        bad = tuple(
            Problem(BAD_CONFIG, f"{key}: {why}; no Certificate was changed")
            for key, why in read.errors
        )
        return Plan(wanted=True, hold=True, problems=bad + ignored)
    entries = (ingress.get("spec") or {}).get("tls") or []
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        return Plan(wanted=True, hold=True, problems=(_bad("spec.tls", "must be a list"),))
    duplicate = _duplicate_secret(entries)
    if duplicate is not None:
        return Plan(wanted=True, hold=True, problems=(duplicate, *ignored))
    certificates: list[Desired] = []
    keep: set[str] = set()
    problems: list[Problem] = list(ignored)
    if not entries:
        problems.append(
            _bad(
                "spec.tls",
                f"is empty, so the issuer annotation asks for nothing: add an entry with hosts "
                f"and a secretName (or remove the {read.prefix}issuer annotation)",
                changed=True,
            )
        )
    for index, entry in enumerate(entries):
        try:
            certificates.append(_desired(ingress, read, index, entry))
        except _SkipEntry as skip:
            problems.append(skip.problem)
            if skip.secret_name:
                keep.add(skip.secret_name)
    return Plan(
        wanted=True,
        issuer=read.issuer,
        certificates=tuple(certificates),
        keep=frozenset(keep),
        problems=tuple(problems),
    )


class _SkipEntry(Exception):
    def __init__(self, problem: Problem, secret_name: str | None) -> None:
        super().__init__(problem.message)
        self.problem = problem
        self.secret_name = secret_name


def _bad(path: str, message: str, *, changed: bool = False) -> Problem:
    tail = "" if changed else "; no Certificate was changed"
    return Problem(BAD_CONFIG, f"{path}: {message}{tail}")


def _duplicate_secret(entries: Sequence[Any]) -> Problem | None:
    first: dict[str, int] = {}
    for index, entry in enumerate(entries):
        name = entry.get("secretName") if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not name:
            continue
        if name in first:
            return _bad(
                f"spec.tls[{first[name]}].secretName",
                f"Secret {name!r} is also named by spec.tls[{index}]: each Secret gets one "
                "Certificate, so give each TLS entry its own secretName (or merge their hosts)",
            )
        first[name] = index
    return None


def _desired(ingress: Mapping[str, Any], read: Annotations, index: int, entry: Any) -> Desired:
    path = f"spec.tls[{index}]"
    if not isinstance(entry, Mapping):
        raise _SkipEntry(_bad(path, "must be an object with hosts and secretName"), None)
    secret_name = entry.get("secretName")
    if not isinstance(secret_name, str) or not secret_name:
        raise _SkipEntry(
            _bad(f"{path}.secretName", "is empty: name the Secret the certificate goes to"), None
        )
    try:
        check_object_name(secret_name, f"{path}.secretName")
    except SpecError as e:
        raise _SkipEntry(_bad_entry(e.message, secret_name), None) from None
    hosts = entry.get("hosts") or []
    if not isinstance(hosts, Sequence) or isinstance(hosts, str) or not hosts:
        raise _SkipEntry(
            _bad_entry(
                f"{path}.hosts: is empty: list the names the certificate is for", secret_name
            ),
            secret_name,
        )
    dns_names: dict[str, None] = {}
    ips: dict[str, None] = {}
    for i, host in enumerate(hosts):
        try:
            if not isinstance(host, str):
                raise ValueError(f"must be a string, got {host!r}")
            if is_ip(host):
                ips[canonical_ip(host)] = None
            else:
                dns_names[normalise_dns_name(host)] = None
        except ValueError as e:
            problem = _bad_entry(f"{path}.hosts[{i}]: {e}", secret_name)
            raise _SkipEntry(problem, secret_name) from None
    assert read.issuer is not None
    options = dict(read.spec or {})
    # The common name joins the names, as the Certificate parser and the CRD expect.
    common_name = options.get("commonName")
    if common_name is not None:
        (ips if is_ip(common_name) else dns_names)[common_name] = None
    for ip in options.pop("ipAddresses", ()):
        ips[ip] = None
    issuer_ref: dict[str, str] = {"name": read.issuer.name}
    if read.issuer.kind != "Issuer":
        issuer_ref["kind"] = read.issuer.kind
    spec: dict[str, Any] = {"secretName": secret_name, "issuerRef": issuer_ref}
    if dns_names:
        spec["dnsNames"] = list(dns_names)
    if ips:
        spec["ipAddresses"] = list(ips)
    spec.update(options)
    try:
        parsed = CertificateSpec.from_body(spec)
    except SpecError as e:
        field, _, text = e.message.partition(": ")
        if field.startswith(("spec.dnsNames", "spec.ipAddresses")):
            where = f"{path}.hosts"  # the names come from the hosts
        else:
            where = path if field == "spec" else f"{path} ({field})"
        raise _SkipEntry(_bad_entry(f"{where}: {text}", secret_name), secret_name) from None
    meta = ingress.get("metadata") or {}
    labels = {k: v for k, v in _strings(meta.get("labels")).items() if not k.startswith(OWN)}
    labels[INGRESS_LABEL] = label_value(str(meta.get("name", "")))
    manifest = {
        "apiVersion": CERTIFICATE_API_VERSION,
        "kind": "Certificate",
        "metadata": {
            "name": secret_name,
            "namespace": meta.get("namespace"),
            "labels": labels,
            "ownerReferences": [_owner_reference(meta)],
        },
        "spec": spec,
    }
    return Desired(name=secret_name, manifest=manifest, spec=parsed)


def _bad_entry(message: str, secret_name: str) -> Problem:
    return Problem(
        BAD_CONFIG,
        f"{message}; the TLS entry for Secret {secret_name!r} was skipped and its Certificate, "
        "if any, left as it is",
    )


def _owner_reference(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": INGRESS_API_VERSION,
        "kind": "Ingress",
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _controller(body: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The controller ownerReference if it is an Ingress, and only with the shim's label."""
    meta = (body or {}).get("metadata") or {}
    if INGRESS_LABEL not in _strings(meta.get("labels")):
        return None
    for ref in meta.get("ownerReferences") or []:
        if not isinstance(ref, Mapping) or ref.get("controller") is not True:
            continue
        if ref.get("kind") == "Ingress" and str(ref.get("apiVersion", "")).startswith(
            "networking.k8s.io/"
        ):
            return ref
    return None


def is_shim_certificate(body: Mapping[str, Any] | None, ingress_uid: str) -> bool:
    """True for a Certificate the shim made for the Ingress with this UID: label and controller."""
    ref = _controller(body)
    return ref is not None and bool(ingress_uid) and ref.get("uid") == ingress_uid


def controlling_ingress(body: Mapping[str, Any] | None) -> str | None:
    """The name of the Ingress a shim-made Certificate belongs to, if it is one."""
    ref = _controller(body)
    name = ref.get("name") if ref is not None else None
    return name if isinstance(name, str) and name else None


def changes(
    wanted: Plan, *, ingress_uid: str, existing: Mapping[str, Mapping[str, Any]]
) -> Changes:
    """What to do so that the Certificates match the plan (pure).

    ``existing`` maps names to Certificate bodies: those named like a wanted Certificate, and
    those this Ingress controls. Nothing changes while the plan holds.
    """
    if wanted.hold:
        return Changes()
    create: list[Desired] = []
    update: list[tuple[Desired, Mapping[str, Any]]] = []
    problems: list[Problem] = []
    for desired in wanted.certificates:
        current = existing.get(desired.name)
        if current is None:
            create.append(desired)
        elif not is_shim_certificate(current, ingress_uid):
            problems.append(_conflict(desired.name, current))
        elif (current.get("metadata") or {}).get("deletionTimestamp"):
            continue  # being deleted: made again once it is gone
        elif _differs(current, desired):
            update.append((desired, _updated(current, desired)))
    names = {d.name for d in wanted.certificates} | wanted.keep
    delete = tuple(
        body
        for name, body in sorted(existing.items())
        if name not in names
        and is_shim_certificate(body, ingress_uid)
        and not (body.get("metadata") or {}).get("deletionTimestamp")
    )
    return Changes(tuple(create), tuple(update), delete, tuple(problems))


def _conflict(name: str, current: Mapping[str, Any]) -> Problem:
    owner = controlling_ingress(current)
    if owner is not None:
        why = (
            f"Certificate {name!r} belongs to Ingress {owner!r} (another one, or an earlier one "
            "of this name); two Ingresses cannot share a TLS secretName: give this one another"
        )
    else:
        why = (
            f"Certificate {name!r} exists and was not made from an Ingress; acmebridge leaves "
            "it untouched: delete it to let this Ingress manage it, or use another secretName"
        )
    return Problem(CONFLICT, why, certificate=name)


def _differs(current: Mapping[str, Any], desired: Desired) -> bool:
    meta = current.get("metadata") or {}
    if _strings(meta.get("labels")) != desired.manifest["metadata"]["labels"]:
        return True
    try:
        return CertificateSpec.from_body(current.get("spec") or {}) != desired.spec
    except SpecError:
        return True


def _updated(current: Mapping[str, Any], desired: Desired) -> dict[str, Any]:
    meta = {k: v for k, v in (current.get("metadata") or {}).items() if k != "managedFields"}
    meta = copy.deepcopy(meta)
    meta["labels"] = dict(desired.manifest["metadata"]["labels"])
    return {
        "apiVersion": current.get("apiVersion", CERTIFICATE_API_VERSION),
        "kind": current.get("kind", "Certificate"),
        "metadata": meta,
        "spec": copy.deepcopy(dict(desired.manifest["spec"])),
    }


def issuer_missing(issuer: IssuerRef, *, namespace: str, names: Sequence[str]) -> Problem:
    """The Event for an issuer annotation naming an issuer that does not exist (yet)."""
    where = f" in namespace {namespace!r}" if issuer.kind == "Issuer" else ""
    which = ", ".join(repr(n) for n in names) or "none"
    return Problem(
        ISSUER_NOT_FOUND,
        f"{issuer.kind} {issuer.name!r} does not exist{where}; the Certificates ({which}) wait "
        "for it with Ready=False and are issued once it is created: create it, or fix the "
        "issuer annotation",
    )
