"""Workload mTLS on the leader: which reconcile a key of the work queue goes to.

``deployments``, ``statefulsets`` and ``daemonsets`` go to the workload reconcile
(``reconcile.workloads``), ``namespaces`` to the trust bundle (``reconcile.trust``); what the
watches saw is in ``reconcile.mtls_state``.
"""

from __future__ import annotations

from acmebridge.reconcile import trust, workloads
from acmebridge.reconcile.mtls_state import NAMESPACES, PLURALS, WORKLOAD_PLURALS, MtlsCore
from acmebridge.reconcile.runtime import ObjectKey

__all__ = ["NAMESPACES", "PLURALS", "WORKLOAD_PLURALS", "MtlsController"]


class MtlsController(MtlsCore):
    """The mTLS state and its reconciles; one per operator run."""

    async def reconcile(self, key: ObjectKey) -> float | None:
        if key[0] == NAMESPACES:
            return await trust.reconcile_namespace(self.rt, self.state, key[2])
        return await workloads.reconcile_workload(self, key)
