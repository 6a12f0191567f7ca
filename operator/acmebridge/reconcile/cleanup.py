"""Remove what an issuance presented (solver Pods, and with them their Services and Ingresses;
DNS-01 TXT values) and its pending key, by name and with a UID precondition, so nothing else is
ever touched.

The journal says what was presented: each challenge's token gives the solver objects' name, and
the Pod's UID (when known) makes the delete refuse a look-alike. Without a known UID the Pod is
read first and deleted only if the Certificate owns it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from acmebridge.adapters.kube import KubeError, core_path
from acmebridge.domain import secret as secrets
from acmebridge.domain.journal import OrderJournal
from acmebridge.domain.solvers import CERTIFICATE_LABEL, SOLVER_LABEL, object_name
from acmebridge.reconcile import dns01
from acmebridge.reconcile.accounts import Account
from acmebridge.reconcile.context import Ctx

log = logging.getLogger("acmebridge.cleanup")


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)


async def remove_presented(ctx: Ctx, journal: OrderJournal, account: Account | None) -> int:
    """Remove every DNS-01 value the journal added (then the finalizer that waited for them)
    and delete the solver Pod of every HTTP-01 challenge it presented; returns the Pods deleted.

    When the journal may not know them all (an authorization recorded without its challenge,
    as after a restart that found it already valid), the Certificate's solver Pods are listed
    by label as well: one read, only then.
    """
    rt = ctx.rt
    problems = await dns01.remove_records(rt, account, journal)
    if problems:
        # Not worth blocking the Certificate (or its deletion) on: say exactly what is left.
        await ctx.event(
            "Warning",
            "DNS01CleanupFailed",
            "could not remove the TXT value(s) acmebridge added; remove them by hand: "
            + "; ".join(str(p) for p in problems),
        )
    written = await dns01.drop_finalizer(rt, ctx.body)
    if written is not None:
        ctx.body = written
    known: dict[str, str | None] = {}
    complete = True
    for rec in journal.authorizations:
        ch = rec.challenge
        if ch is None or (rec.state == "valid" and not ch.presented):
            complete = False
            continue
        if ch.type != "http-01":
            continue
        if ch.presented:
            known[object_name(ctx.uid, ch.token)] = ch.solver_uid
    if not complete:
        selector = f"{SOLVER_LABEL},{CERTIFICATE_LABEL}={secrets.certificate_name_label(ctx.name)}"
        for pod in await rt.io(
            rt.kube.list, core_path("pods", ctx.namespace), label_selector=selector
        ):
            if owned_by(pod, ctx.uid):
                known.setdefault(pod["metadata"]["name"], str(pod["metadata"]["uid"]))
    deleted = 0
    for name, uid in known.items():
        path = core_path("pods", ctx.namespace, name)
        try:
            if uid is None:
                found = await rt.io(rt.kube.get, path)
                if found is None or not owned_by(found, ctx.uid):
                    continue
                uid = str(found["metadata"]["uid"])
            if await rt.io(rt.kube.delete, path, uid=uid):
                deleted += 1
        except KubeError as e:
            log.warning("could not delete solver Pod %s: %s", path, e)
    if deleted:
        rt.metrics.solvers(-deleted)
    return deleted


async def delete_pending_key(ctx: Ctx, uid: str | None) -> None:
    """Delete the pending key's Secret: by its UID when known, else after checking it is ours."""
    rt = ctx.rt
    path = core_path("secrets", ctx.namespace, secrets.pending_key_name(ctx.name, ctx.uid))
    if uid is None:
        secret = await rt.io(rt.kube.get, path)
        if secret is None or not secrets.is_pending_key_secret_for(secret["metadata"], ctx.uid):
            return
        uid = str(secret["metadata"].get("uid"))
    try:
        await rt.io(rt.kube.delete, path, uid=uid)
    except KubeError as e:
        if e.status != 409:  # a precondition failure: not the Secret we made, leave it
            raise
