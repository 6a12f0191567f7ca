"""The pending private key of an issuance: made (or loaded) into a Secret only the operator
writes, before the order that will use it.

The key Secret is named from the Certificate's name and UID and trusted only with the operator's
label and a controller ownerReference to that UID. It is created before ``newOrder``, so a restart
that finds it without a journal knows an order may exist and looks for it first. This process
keeps the keys it made or read in memory for the rest of the issuance (one read spared per step).
"""

from __future__ import annotations

from acmebridge.adapters.kube import Conflict, core_path
from acmebridge.domain import secret as secrets
from acmebridge.domain.assess import usable
from acmebridge.domain.errors import AcmeProblem
from acmebridge.domain.keys import (
    encode_private_key,
    generate_private_key,
    key_matches_spec,
    load_private_key,
)
from acmebridge.domain.observed import KeyView
from acmebridge.reconcile.issuance import Issuance


async def ensure_key(work: Issuance) -> None:
    """Load the pending key, or make it: create first (one write, no read) when no issuance is
    under way, read first when one is (a restart, or a later step of the same issuance)."""
    ctx, rt = work.ctx, work.ctx.rt
    cached = rt.pending_keys.get(ctx.uid)
    if cached is not None:
        work.key_uid, work.key = cached
        work.see(key=KeyView(present=True, existed=True))
        return
    path = core_path("secrets", ctx.namespace, secrets.pending_key_name(ctx.name, ctx.uid))
    fresh = ctx.status.order is None and ctx.status.issuing_since is None
    existing = None if fresh else await rt.io(rt.kube.get, path)
    if existing is None:
        created = await _create_key(work)
        if created:
            return
        existing = await rt.io(rt.kube.get, path)
        if existing is None:
            raise AcmeProblem("urn:ietf:params:acme:error:serverInternal", "pending key vanished")
    meta = existing["metadata"]
    if not secrets.is_pending_key_secret_for(meta, ctx.uid):
        work.see(
            key=KeyView(
                present=False,
                conflict=f"Secret '{meta['name']}' exists but was not created by acmebridge "
                "for this Certificate; delete or rename it",
            )
        )
        return
    pem = secrets.tls_secret_contents(existing.get("data")).key_pem
    spec_key = work.spec.private_key
    key = load_private_key(pem) if pem else None
    if key is None or not key_matches_spec(key, spec_key.algorithm, spec_key.size):
        await rt.io(rt.kube.delete, path, uid=meta.get("uid"))
        await _create_key(work)
        return
    work.key, work.key_uid = key, str(meta.get("uid"))
    rt.pending_keys[ctx.uid] = (work.key_uid, key)
    work.see(key=KeyView(present=True, existed=True))


async def _create_key(work: Issuance) -> bool:
    """Create the pending-key Secret; False when one exists already."""
    ctx, rt = work.ctx, work.ctx.rt
    spec_key = work.spec.private_key
    current = (
        secrets.tls_secret_contents((work.secret or {}).get("data")).key_pem
        if (
            spec_key.rotation_policy == "Never"
            and usable(work.observed.secret)
            and work.observed.secret.state.key_matches_spec
        )
        else None
    )
    key = (
        load_private_key(current)
        if current
        else await rt.io(generate_private_key, spec_key.algorithm, spec_key.size)
    )
    body = secrets.pending_key_secret(
        certificate_name=ctx.name,
        certificate_uid=ctx.uid,
        namespace=ctx.namespace,
        key_pem=encode_private_key(key, "PKCS8"),
    )
    try:
        created = await rt.io(rt.kube.create, core_path("secrets", ctx.namespace), body)
    except Conflict:
        return False
    work.key, work.key_uid = key, str(created["metadata"]["uid"])
    rt.pending_keys[ctx.uid] = (work.key_uid, key)
    work.see(key=KeyView(present=True, existed=False))
    return True
