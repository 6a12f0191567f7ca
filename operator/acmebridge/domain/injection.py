"""What the admission webhook adds to an opted-in Pod: one read-only volume and its mounts.

The volume is a projected volume of the workload's Secret (``tls.crt``, ``tls.key``) and of the
trust bundle for ``ca.crt``: the ``acmebridge-trust`` ConfigMap when the namespace asks for one
(it holds every issuing root, so peers keep verifying across a root change), else the Secret's own
``ca.crt``. Neither source is optional: a Pod admitted before its certificate is issued waits in
ContainerCreating until the Secret exists, and then starts with its files in place, instead of
starting without them. Projected Secret and ConfigMap volumes are refreshed by the kubelet, so a
renewed certificate reaches running containers without a restart.

The containers that get the mount are every container and every native sidecar (an init
container with ``restartPolicy: Always``) unless ``acmebridge.io/containers`` names them; names
may then include plain init containers too. Everything here is pure; bad input raises
:class:`~acmebridge.domain.workload_mtls.AnnotationError` naming the annotation.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acmebridge.domain.workload_mtls import (
    CONTAINERS,
    MOUNT_PATH,
    AnnotationError,
    MtlsRequest,
)

__all__ = ["TRUST_CONFIGMAP", "TRUST_KEY", "VOLUME_NAME", "Injection", "inject"]

VOLUME_NAME = "acmebridge-mtls"
TRUST_CONFIGMAP = "acmebridge-trust"
TRUST_KEY = "ca.crt"


@dataclass(frozen=True)
class Injection:
    """The Pod's new ``volumes``, ``containers`` and ``initContainers`` lists."""

    volumes: list[dict[str, Any]]
    containers: list[dict[str, Any]]
    init_containers: list[dict[str, Any]]


def volume(*, secret_name: str, trust_bundle: bool) -> dict[str, Any]:
    """Pure: the projected volume: tls.crt and tls.key from the Secret, ca.crt from the trust
    bundle when the namespace has one, else from the Secret (when it has one)."""
    secret_items = [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]
    sources: list[dict[str, Any]] = []
    if trust_bundle:
        sources.append({"secret": {"name": secret_name, "items": secret_items}})
        sources.append(
            {
                "configMap": {
                    "name": TRUST_CONFIGMAP,
                    "items": [{"key": TRUST_KEY, "path": "ca.crt"}],
                }
            }
        )
    else:
        # No item list: ca.crt is absent from a Secret whose root could not be proven, and a
        # listed key that is missing would keep the volume from mounting at all.
        sources.append({"secret": {"name": secret_name}})
    # The kubelet's default file mode (0644): the files are readable by whatever user the
    # container runs as, which a 0440 mode would only allow with a matching fsGroup. The mount
    # is read-only, and the Pod's containers are the key's only readers either way.
    return {"name": VOLUME_NAME, "projected": {"sources": sources}}


def _is_sidecar(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def inject(
    pod_spec: Mapping[str, Any], request: MtlsRequest, *, secret_name: str, trust_bundle: bool
) -> Injection | None:
    """Pure: the Pod's lists with the volume and mounts added; None when it has them already
    (a reinvoked webhook must not add them twice)."""
    volumes = list(copy.deepcopy(pod_spec.get("volumes") or []))
    containers = list(copy.deepcopy(pod_spec.get("containers") or []))
    inits = list(copy.deepcopy(pod_spec.get("initContainers") or []))
    if any(v.get("name") == VOLUME_NAME for v in volumes):
        return None
    names = [c.get("name") for c in containers] + [c.get("name") for c in inits]
    if request.containers:
        missing = [n for n in request.containers if n not in names]
        if missing:
            raise AnnotationError(
                CONTAINERS,
                f"names {', '.join(repr(n) for n in missing)}, which the pod does not have; its "
                f"containers are {', '.join(repr(n) for n in names if n)}",
            )
        chosen = set(request.containers)
    else:
        chosen = {c.get("name") for c in containers} | {
            c.get("name") for c in inits if _is_sidecar(c)
        }
    mount = {"name": VOLUME_NAME, "mountPath": request.mount_path, "readOnly": True}
    for container in [*containers, *inits]:
        if container.get("name") not in chosen:
            continue
        mounts: list[dict[str, Any]] = list(container.get("volumeMounts") or [])
        _check_free(container, mounts, request.mount_path)
        container["volumeMounts"] = [*mounts, dict(mount)]
    volumes.append(volume(secret_name=secret_name, trust_bundle=trust_bundle))
    return Injection(volumes=volumes, containers=containers, init_containers=inits)


def _check_free(
    container: Mapping[str, Any], mounts: Sequence[Mapping[str, Any]], path: str
) -> None:
    # The API server refuses two mounts at one path in a container; nested mounts are fine.
    for existing in mounts:
        if str(existing.get("mountPath", "")).rstrip("/") == path:
            raise AnnotationError(
                MOUNT_PATH,
                f"container {container.get('name')!r} already mounts a volume at {path!r}; "
                "choose another directory",
            )
