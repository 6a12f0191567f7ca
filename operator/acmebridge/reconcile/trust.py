"""The ``acmebridge-trust`` ConfigMap of one namespace: written while the namespace asks for it,
removed when it stops asking. A ConfigMap of that name that acmebridge did not write is never
touched (an Event on the namespace says why); the operator never lists ConfigMaps.
"""

from __future__ import annotations

import contextlib
import logging

from acmebridge.adapters.kube import Conflict, NotFound, core_path
from acmebridge.domain import trust
from acmebridge.domain.injection import TRUST_CONFIGMAP, TRUST_KEY
from acmebridge.reconcile.mtls_state import MtlsState
from acmebridge.reconcile.runtime import Runtime

log = logging.getLogger("acmebridge.trust")


async def reconcile_namespace(rt: Runtime, state: MtlsState, namespace: str) -> float | None:
    served = rt.config.namespaces
    if served and namespace not in served:
        return None  # a namespaced operator writes only where it serves
    labels = state.namespaces.get(namespace)
    if labels is None:
        return None  # the namespace is gone; its ConfigMap went with it
    path = core_path("configmaps", namespace, TRUST_CONFIGMAP)
    existing = await rt.io(rt.kube.get, path)
    if labels.get(trust.TRUST_LABEL) != "true":
        if existing is not None and trust.is_ours(existing):
            with contextlib.suppress(Conflict, NotFound):
                await rt.io(rt.kube.delete, path, uid=existing["metadata"]["uid"])
            log.info("namespace %s no longer asks for the trust bundle: removed it", namespace)
        return None
    if not state.complete():
        return 1.0  # wait until every opted-in workload's roots are known
    bundle = trust.bundle_pem(state.all_roots(), now=rt.clock())
    if existing is None:
        if not bundle:
            return None  # nothing to trust yet: Pods mounting it wait rather than start empty
        try:
            await rt.io(
                rt.kube.create,
                core_path("configmaps", namespace),
                trust.configmap(namespace, bundle),
            )
        except Conflict:
            return 0.5
        log.info("namespace %s: wrote the trust bundle", namespace)
        return None
    if not trust.is_ours(existing):
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "uid": state.namespace_uids.get(namespace, "")},
        }
        await rt.event(
            body,
            "Warning",
            "TrustBundleConflict",
            f"ConfigMap {namespace}/{TRUST_CONFIGMAP} exists and was not written by acmebridge "
            f"(no label {trust.BUNDLE_LABEL}); delete it to get the trust bundle",
        )
        return None
    if (existing.get("data") or {}).get(TRUST_KEY) == bundle:
        return None
    if not bundle:
        return None  # never empty a bundle Pods already rely on
    updated = dict(existing)
    updated["data"] = {**(existing.get("data") or {}), TRUST_KEY: bundle}
    try:
        await rt.io(rt.kube.replace, path, updated)
    except Conflict:
        return 0.5
    log.info("namespace %s: updated the trust bundle", namespace)
    return None
