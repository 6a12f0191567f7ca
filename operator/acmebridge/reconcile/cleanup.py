"""Remove what an issuance left behind: solver Pods, Services, Ingresses and the pending key.

Deletion is by label *and* owner: an object is deleted only when its ownerReference names this
Certificate's UID, and the delete carries that UID as a precondition, so a look-alike object made
by someone else is never touched. ``cleanupPending`` in status is set before the first solver
object is created and cleared only here, so a restart at any point still finds and removes them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from acmebridge.adapters.kube import KubeError, core_path, group_path
from acmebridge.domain import secret as secrets
from acmebridge.domain.solvers import CERTIFICATE_LABEL, CHALLENGE_LABEL, SOLVER_LABEL

if TYPE_CHECKING:
    from acmebridge.reconcile.certificate import Ctx

log = logging.getLogger("acmebridge.cleanup")


def solver_paths(namespace: str, name: str | None = None) -> list[str]:
    return [
        core_path("pods", namespace, name),
        core_path("services", namespace, name),
        group_path("networking.k8s.io", "v1", "ingresses", namespace, name),
    ]


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)


async def delete_solver_objects(ctx: Ctx, *, challenge_name: str | None = None) -> int:
    """Delete this Certificate's solver objects (one challenge's, or all); returns how many."""
    rt = ctx.rt
    selector = f"{SOLVER_LABEL},{CERTIFICATE_LABEL}={secrets.certificate_name_label(ctx.name)}"
    if challenge_name:
        selector += f",{CHALLENGE_LABEL}={challenge_name}"
    deleted = 0
    for path in solver_paths(ctx.namespace):
        for obj in await rt.io(rt.kube.list, path, label_selector=selector):
            if not owned_by(obj, ctx.uid):
                continue
            meta = obj["metadata"]
            try:
                if await rt.io(rt.kube.delete, f"{path}/{meta['name']}", uid=meta.get("uid")):
                    deleted += 1
            except KubeError as e:
                log.warning("could not delete solver object %s/%s: %s", path, meta["name"], e)
    if deleted:
        rt.metrics.solvers(-deleted)
    return deleted


def pending_key_name(certificate_name: str, certificate_uid: str) -> str:
    """Derived from name and UID, never read from status (a status writer must not be able to
    point the operator at another Secret's key)."""
    # A cut ending in '.' or '-' would make the name invalid ("x.-acmebridge").
    return f"{certificate_name[:200].rstrip('-.')}-acmebridge-pk-{certificate_uid[:8]}"


async def delete_pending_key(ctx: Ctx) -> None:
    rt = ctx.rt
    path = core_path("secrets", ctx.namespace, pending_key_name(ctx.name, ctx.uid))
    secret = await rt.io(rt.kube.get, path)
    if secret is None or not secrets.is_pending_key_secret_for(secret["metadata"], ctx.uid):
        return
    await rt.io(rt.kube.delete, path, uid=secret["metadata"].get("uid"))


async def cleanup_issuance(ctx: Ctx) -> None:
    await delete_solver_objects(ctx)
    await delete_pending_key(ctx)
    ctx.set_book(cleanupPending=None)
    await ctx.flush()
