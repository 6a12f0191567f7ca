"""Which solver answers an identifier, and the HTTP-01 solver objects (Pod, Service, Ingress).

Selection follows cert-manager's rules so that Issuers carry over: a solver whose selector lists
the exact dnsName wins over one matching by dnsZones (the longest zone wins), which wins over one
that matches only by labels, which wins over one with no selector. An HTTP-01 solver never takes a
wildcard identifier (RFC 8555 §7.1.3: wildcards need DNS-01).

The manifests are pure data. Names derive from the Certificate's UID and the challenge token, so
that creating them again after a restart finds the same objects instead of making new ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acmebridge.domain.issuer_spec import Http01IngressSolver, Solver
from acmebridge.domain.secret import certificate_name_label, certificate_owner_reference

SOLVER_LABEL = "acmebridge.io/solver"
CERTIFICATE_LABEL = "acmebridge.io/certificate-name"
CHALLENGE_LABEL = "acmebridge.io/challenge"
SOLVER_PORT = 8089
CHALLENGE_PATH = "/.well-known/acme-challenge/"


@dataclass(frozen=True)
class Selection:
    """The chosen solver and its index in ``spec.acme.solvers`` (recorded in the journal)."""

    index: int
    solver: Solver


def _zone_match(name: str, zones: Sequence[str]) -> int:
    """Length of the longest zone ``name`` is in (or equals), 0 when none."""
    best = 0
    bare = name[2:] if name.startswith("*.") else name
    for zone in zones:
        z = zone.lower().rstrip(".")
        if bare == z or bare.endswith("." + z):
            best = max(best, len(z) + 1)
    return best


def no_solver_message(identifier: str, *, wildcard: bool) -> str:
    """Why no solver of the issuer takes ``identifier``, and what to change."""
    if wildcard:
        return (
            f"no solver of the issuer matches {identifier} (a wildcard needs a dns01 solver: "
            "HTTP-01 cannot validate one, RFC 8555 §7.1.3); add one to spec.acme.solvers or "
            "list the names themselves"
        )
    return (
        f"no solver of the issuer matches {identifier}; add one to spec.acme.solvers or fix its "
        "selector (dnsNames, dnsZones or matchLabels)"
    )


def select_solver(
    solvers: Sequence[Solver],
    *,
    identifier_type: str,
    identifier: str,
    wildcard: bool,
    certificate_labels: Mapping[str, str],
) -> Selection | None:
    """Pure: the best solver for one identifier, or None when no solver can take it.

    ``identifier`` may be an authorization's (``example.com`` with ``wildcard``) or a
    Certificate's (``*.example.com``): as in cert-manager, a wildcard is looked up in a
    selector's ``dnsNames`` as ``*.example.com``."""
    if wildcard and not identifier.startswith("*."):
        identifier = "*." + identifier
    best: tuple[tuple[int, int, int], Selection] | None = None
    for index, solver in enumerate(solvers):
        if solver.http01 is None and solver.dns01 is None:
            continue
        if wildcard and solver.http01 is not None and solver.dns01 is None:
            continue
        if identifier_type == "ip" and solver.http01 is None:
            continue  # DNS-01 cannot prove control of an IP address (RFC 8738 §7).
        sel = solver.selector
        labels_n = 0
        name_hit = 0
        zone_len = 0
        if sel is not None:
            if any(certificate_labels.get(k) != v for k, v in sel.match_labels.items()):
                continue
            labels_n = len(sel.match_labels)
            if sel.dns_names or sel.dns_zones:
                name_hit = 1 if identifier in sel.dns_names else 0
                zone_len = _zone_match(identifier, sel.dns_zones) if identifier_type == "dns" else 0
                if not name_hit and not zone_len:
                    continue
        score = (name_hit, zone_len, labels_n)
        # Ties keep the first solver listed, as cert-manager does.
        if best is None or score > best[0]:
            best = (score, Selection(index=index, solver=solver))
    return best[1] if best else None


def object_name(certificate_uid: str, token: str) -> str:
    """Stable, DNS-1123 name for one challenge's solver objects."""
    digest = hashlib.sha256(f"{certificate_uid}/{token}".encode()).hexdigest()[:16]
    return f"acmebridge-solver-{digest}"


def solver_labels(*, certificate_name: str, name: str) -> dict[str, str]:
    # The same label value the TLS Secret carries: a long name cut at 63 characters may end in
    # '-' or '.', which the API server refuses in a label.
    return {
        SOLVER_LABEL: "http01",
        CERTIFICATE_LABEL: certificate_name_label(certificate_name),
        CHALLENGE_LABEL: name,
    }


def owned_by_pod(body: Mapping[str, Any], *, pod_name: str, pod_uid: str) -> dict[str, Any]:
    """The Service or Ingress, owned by its solver Pod: deleting the Pod (one request) lets the
    garbage collector remove the other two, and a Certificate deleted mid-order takes the Pod
    and so everything with it."""
    meta = dict(body["metadata"])
    meta["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod_name,
            "uid": pod_uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    return {**body, "metadata": meta}


@dataclass(frozen=True)
class Http01Objects:
    pod: dict[str, Any]
    service: dict[str, Any]
    ingress: dict[str, Any]


def http01_objects(
    *,
    namespace: str,
    certificate_name: str,
    certificate_uid: str,
    solver: Http01IngressSolver,
    identifier_type: str,
    identifier: str,
    token: str,
    key_authorization: str,
    image: str,
    command: Sequence[str],
) -> Http01Objects:
    """Pure: the Pod, Service and Ingress that answer one HTTP-01 challenge. The Pod is owned by
    the Certificate; give the Service and Ingress to the Pod with ``owned_by_pod`` once it
    exists."""
    name = object_name(certificate_uid, token)
    labels = solver_labels(certificate_name=certificate_name, name=name)
    owner = certificate_owner_reference(
        certificate_name=certificate_name, certificate_uid=certificate_uid
    )
    meta = {"name": name, "namespace": namespace, "labels": labels}

    pod_spec: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "solver",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": list(command),
                "args": [
                    f"--listen=$(POD_IP):{SOLVER_PORT}",
                    f"--domain={identifier}",
                    f"--token={token}",
                    f"--key-authorization={key_authorization}",
                ],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                ],
                "ports": [{"name": "http", "containerPort": SOLVER_PORT, "protocol": "TCP"}],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": SOLVER_PORT},
                    "periodSeconds": 1,
                },
                "resources": {
                    "requests": {"cpu": "10m", "memory": "32Mi"},
                    "limits": {"cpu": "100m", "memory": "64Mi"},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }
    # Users place solver Pods (nodeSelector, tolerations, resources...) with podTemplate.spec;
    # the security settings above are not theirs to weaken, so only known placement keys apply.
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        if key in solver.pod_spec_overrides:
            pod_spec[key] = solver.pod_spec_overrides[key]
    if "resources" in solver.pod_spec_overrides:
        pod_spec["containers"][0]["resources"] = solver.pod_spec_overrides["resources"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **meta,
            "labels": _merge(solver.pod_labels, labels),
            "annotations": dict(solver.pod_annotations),
            "ownerReferences": [owner],
        },
        "spec": pod_spec,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": solver.service_type or "ClusterIP",
            "selector": {CHALLENGE_LABEL: name},
            "ports": [{"name": "http", "port": SOLVER_PORT, "targetPort": SOLVER_PORT}],
        },
    }
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": CHALLENGE_PATH + token,
                    "pathType": "Exact",
                    "backend": {"service": {"name": name, "port": {"number": SOLVER_PORT}}},
                }
            ]
        }
    }
    # An Ingress host cannot be an IP address; for IP identifiers the rule matches any host,
    # and the exact token path keeps it from catching anything else.
    if identifier_type == "dns":
        rule["host"] = identifier
    annotations = dict(solver.ingress_annotations)
    ingress_spec: dict[str, Any] = {"rules": [rule]}
    if solver.ingress_class_name:
        ingress_spec["ingressClassName"] = solver.ingress_class_name
    elif solver.class_name:
        annotations["kubernetes.io/ingress.class"] = solver.class_name
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            **meta,
            "labels": _merge(solver.ingress_labels, labels),
            "annotations": annotations,
        },
        "spec": ingress_spec,
    }
    return Http01Objects(pod=pod, service=service, ingress=ingress)


def _merge(theirs: Mapping[str, str], ours: Mapping[str, str]) -> dict[str, str]:
    """User labels first, ours last: a template cannot take the solver labels away."""
    merged: dict[str, str] = dict(theirs)
    merged.update(ours)
    return merged


def pod_ready(pod: Mapping[str, Any] | None) -> bool:
    """Pure: the Pod reports Ready=True (so its Service has a ready endpoint)."""
    if not pod:
        return False
    for cond in pod.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False
