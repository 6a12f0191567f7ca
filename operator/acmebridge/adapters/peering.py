"""kopf's peering object, created by the operator itself before kopf starts.

With ``--peering NAME`` kopf keeps every replica paused until the peering object exists, and
never creates it. Leaving that to the installer does not work well: Helm can only ship a custom
resource next to its CRD as a hook, and a hook is deleted and recreated empty on every upgrade.
An empty peering object reads to each replica as "no other replica is alive", so all of them
would reconcile side by side until their next keep-alive (up to a minute). Created once here,
the object outlives upgrades with the replicas' keep-alives in it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from acmebridge.adapters.kube import Conflict, Kube, KubeError, NotFound, group_path
from acmebridge.config import named_namespaces

log = logging.getLogger("acmebridge")

GROUP, VERSION = "kopf.dev", "v1"


class PeeringError(Exception):
    """The peering object cannot be had; the message says what to install or grant."""


def ensure(kube: Kube, name: str, namespaces: Sequence[str]) -> list[str]:
    """Create the peering object ``name`` where kopf will look for it, unless it exists: one
    ClusterKopfPeering for a cluster-wide operator, a KopfPeering in each served namespace
    otherwise. Returns the served namespaces it could not prepare (patterns, namespaces that do
    not exist yet), for the caller to name."""
    if not namespaces:
        _create(kube, "ClusterKopfPeering", name, None)
        return []
    skipped = [n for n in namespaces if n not in named_namespaces(namespaces)]
    for namespace in named_namespaces(namespaces):
        try:
            _create(kube, "KopfPeering", name, namespace)
        except NotFound:
            skipped.append(namespace)  # the namespace does not exist (yet)
    return skipped


def _create(kube: Kube, kind: str, name: str, namespace: str | None) -> None:
    plural = f"{kind.lower()}s"
    path = group_path(GROUP, VERSION, plural, namespace)
    where = f"in namespace {namespace}" if namespace else "cluster-wide"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}}
    try:
        kube.create(path, body)
        log.info("created the peering object %s %s %s", kind, name, where)
    except Conflict:
        pass  # it exists, maybe with other replicas' keep-alives in it: keep it as it is
    except NotFound as e:
        # The API server answers 404 both for a namespace that does not exist ('namespaces "x"
        # not found') and for a resource it does not serve (the CRDs are missing).
        if namespace is not None and e.message.startswith(f'namespaces "{namespace}"'):
            raise
        raise PeeringError(
            f"kopf's peering resource {plural}.{GROUP} is not served ({e.message or e.reason}): "
            f"install kopf's peering CRDs (the Helm chart does with peering.createCRDs=true)"
        ) from e
    except KubeError as e:
        if e.status == 403 and _exists(kube, group_path(GROUP, VERSION, plural, namespace, name)):
            return  # made by someone who may; this operator only needs to patch it
        hint = (
            f": the operator needs the create verb on {plural}.{GROUP} (the Helm chart grants it)"
            if e.status == 403
            else ""
        )
        raise PeeringError(
            f"could not create the peering object {kind} {name} {where} ({e}){hint}"
        ) from e


def _exists(kube: Kube, path: str) -> bool:
    try:
        return kube.get(path) is not None
    except KubeError:
        return False  # not allowed to look: treat as absent, and say what failed
