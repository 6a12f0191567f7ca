"""The MutatingWebhookConfiguration for workload mTLS: which requests reach the webhook, and how.

Two webhooks. ``pods.mtls.acmebridge.io`` injects the volume into Pods and refuses Pods with bad
annotations; its failure policy is ``Fail``, because a Pod that asked for certificates and was
admitted without them would start and fail its first TLS handshake, while a refused Pod is
retried by its ReplicaSet, StatefulSet or DaemonSet controller until the webhook answers.
``workloads.mtls.acmebridge.io`` checks the same annotations on Deployments, StatefulSets and
DaemonSets, so that ``kubectl apply`` refuses a bad value at once; it only validates, and it is
``Ignore``: while no replica answers, workloads can still be changed, and their Pods are still
checked by the first webhook.

Both see only opted-in objects: ``matchConditions`` (evaluated by the API server, GA since
Kubernetes 1.30) pass only objects carrying ``acmebridge.io/inject``. An ``objectSelector`` cannot
do it, because it matches labels and the opt-in is an annotation. The namespace selector keeps
the operator's own namespace and ``kube-system`` out, so the webhook can never block the Pods that
would bring it back; a namespaced operator's webhook sees only the namespaces it serves.

The Helm chart renders the same configuration (a chart test compares them); the operator writes
the ``caBundle`` and, where nothing created it (the lab, a development run), the whole object.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from acmebridge.domain.workload_mtls import (
    INJECT,
)

__all__ = [
    "POD_PATH",
    "WORKLOAD_PATH",
    "ClientConfig",
    "ca_bundle_patch",
    "configuration",
    "excluded_namespaces",
    "namespace_selector",
]

#: URL paths on the webhook server; kopf routes a request to the handler with this id
POD_PATH = "mtls-pods"
WORKLOAD_PATH = "mtls-workloads"
POD_WEBHOOK = "pods.mtls.acmebridge.io"
WORKLOAD_WEBHOOK = "workloads.mtls.acmebridge.io"
TIMEOUT_SECONDS = 10
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class ClientConfig:
    """How the API server reaches the webhook: a Service in the cluster, or a URL."""

    service_namespace: str = ""
    service_name: str = ""
    service_port: int = 443
    url: str = ""

    def at(self, path: str, ca_bundle: bytes) -> dict[str, Any]:
        config: dict[str, Any]
        if self.url:
            config = {"url": f"{self.url.rstrip('/')}/{path}"}
        else:
            config = {
                "service": {
                    "namespace": self.service_namespace,
                    "name": self.service_name,
                    "path": f"/{path}",
                    "port": self.service_port,
                }
            }
        if ca_bundle:
            config["caBundle"] = base64.b64encode(ca_bundle).decode()
        return config


def namespace_selector(*, namespaces: Sequence[str], excluded: Sequence[str]) -> dict[str, Any]:
    """Pure: the namespaces the webhooks see: the served ones, or all but ``excluded``."""
    if namespaces:
        # Serving only excluded namespaces leaves them in: the match conditions still keep
        # everything that did not opt in away, and an empty "In" matches nothing.
        values = sorted(set(namespaces) - set(excluded)) or sorted(set(namespaces))
        expression = {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": values}
    else:
        expression = {
            "key": NAMESPACE_NAME_LABEL,
            "operator": "NotIn",
            "values": sorted(set(excluded)),
        }
    return {"matchExpressions": [expression]}


def excluded_namespaces(*, service_namespace: str, cluster_resource_namespace: str) -> list[str]:
    """Pure: the namespaces the webhooks never see: kube-system and the operator's own, so that
    the webhook can never keep the Pods that serve it from starting."""
    names = ["kube-system", service_namespace, cluster_resource_namespace]
    return sorted({n for n in names if n})


def _opted_in(path_to_metadata: str) -> list[dict[str, str]]:
    # CEL on the request's object; has() guards each optional level.
    return [
        {
            "name": "opted-in",
            "expression": (
                f"has({path_to_metadata}.annotations) && "
                f"'{INJECT}' in {path_to_metadata}.annotations"
            ),
        }
    ]


def webhooks(
    client: ClientConfig, *, selector: dict[str, Any], ca_bundle: bytes
) -> list[dict[str, Any]]:
    """Pure: the two webhooks (see the module docstring for their policies)."""
    common: dict[str, Any] = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "timeoutSeconds": TIMEOUT_SECONDS,
        "matchPolicy": "Equivalent",
        "reinvocationPolicy": "Never",
        "namespaceSelector": selector,
    }
    return [
        {
            "name": POD_WEBHOOK,
            **common,
            "failurePolicy": "Fail",
            "matchConditions": _opted_in("object.metadata"),
            "rules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                    "operations": ["CREATE"],
                    "scope": "Namespaced",
                }
            ],
            "clientConfig": client.at(POD_PATH, ca_bundle),
        },
        {
            "name": WORKLOAD_WEBHOOK,
            **common,
            "failurePolicy": "Ignore",
            "matchConditions": [
                {
                    "name": "opted-in",
                    "expression": (
                        "has(object.spec.template.metadata) && "
                        "has(object.spec.template.metadata.annotations) && "
                        f"'{INJECT}' in object.spec.template.metadata.annotations"
                    ),
                }
            ],
            "rules": [
                {
                    "apiGroups": ["apps"],
                    "apiVersions": ["v1"],
                    "resources": ["deployments", "statefulsets", "daemonsets"],
                    "operations": ["CREATE", "UPDATE"],
                    "scope": "Namespaced",
                }
            ],
            "clientConfig": client.at(WORKLOAD_PATH, ca_bundle),
        },
    ]


def configuration(
    name: str,
    client: ClientConfig,
    *,
    namespaces: Sequence[str],
    excluded: Sequence[str],
    ca_bundle: bytes,
) -> dict[str, Any]:
    """Pure: the whole MutatingWebhookConfiguration."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "acmebridge"}},
        "webhooks": webhooks(
            client,
            selector=namespace_selector(namespaces=namespaces, excluded=excluded),
            ca_bundle=ca_bundle,
        ),
    }


def ca_bundle_patch(existing: dict[str, Any], ca_bundle: bytes) -> list[dict[str, Any]] | None:
    """Pure: the ``webhooks`` list of an existing configuration with our caBundle in the two
    webhooks acmebridge serves (others are kept as they are); None when nothing changes."""
    encoded = base64.b64encode(ca_bundle).decode()
    hooks = [dict(h) for h in existing.get("webhooks") or []]
    changed = False
    for hook in hooks:
        if hook.get("name") not in (POD_WEBHOOK, WORKLOAD_WEBHOOK):
            continue
        client = dict(hook.get("clientConfig") or {})
        if client.get("caBundle") != encoded:
            client["caBundle"] = encoded
            hook["clientConfig"] = client
            changed = True
    return hooks if changed else None
