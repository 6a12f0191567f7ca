"""Workload mTLS on the leader: what the watches saw, kept for the reconciles.

Keys are the work queue's (plural, namespace, name): ``deployments``, ``statefulsets`` and
``daemonsets`` go to the workload reconcile (``reconcile.workloads``), ``namespaces`` to the trust
bundle (``reconcile.trust``). Only opted-in workloads are kept in memory (a cluster's other
Deployments cost nothing but the watch), and of namespaces only their labels.

The trust bundle is written only once every opted-in workload has been looked at since the
operator started: a bundle made from half the workloads would drop roots that peers still need.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from acmebridge.domain.workload_certificate import (
    PLURAL_KINDS,
    controlled_by,
)
from acmebridge.domain.workload_mtls import (
    INJECT,
    MtlsDefaults,
)
from acmebridge.reconcile.runtime import ObjectKey, Runtime

WORKLOAD_PLURALS = frozenset(PLURAL_KINDS)
NAMESPACES = "namespaces"
PLURALS = WORKLOAD_PLURALS | {NAMESPACES}


def template_annotations(body: Mapping[str, Any]) -> Mapping[str, Any]:
    template = (body.get("spec") or {}).get("template") or {}
    return (template.get("metadata") or {}).get("annotations") or {}


def _essence(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a workload reconcile depends on: identity, spec generation, metadata annotations."""
    meta = body.get("metadata") or {}
    return (meta.get("uid"), meta.get("generation"), meta.get("annotations"))


@dataclass
class MtlsState:
    """What the workload and trust reconciles share."""

    #: opted-in workloads (their template carries acmebridge.io/inject), newest body
    workloads: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    #: the last body of workloads deleted while opted in, for the clean-up
    gone: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    #: namespace name -> its labels
    namespaces: dict[str, Mapping[str, str]] = field(default_factory=dict)
    namespace_uids: dict[str, str] = field(default_factory=dict)
    #: workload key -> the roots its certificate chains to (set once it was reconciled)
    roots: dict[ObjectKey, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    #: issuer key -> the workloads that use it
    issuer_users: dict[ObjectKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))

    def complete(self) -> bool:
        """Every opted-in workload has been reconciled (its roots are known)."""
        return all(key in self.roots for key in self.workloads)

    def all_roots(self) -> Iterable[x509.Certificate]:
        for key, roots in self.roots.items():
            if key in self.workloads:
                yield from roots


class MtlsCore:
    """Feeds watch events into the queue; what the reconciles share. One per operator run."""

    def __init__(
        self,
        rt: Runtime,
        *,
        wake: Callable[[ObjectKey, float], None],
        forget: Callable[[ObjectKey], None],
    ) -> None:
        self.rt = rt
        self.wake = wake
        self.forget = forget
        self.state = MtlsState()
        cfg = rt.config
        self.defaults = MtlsDefaults(
            dns_names_template=cfg.workload_dns_names_template,
            duration=cfg.workload_duration,
            spiffe_trust_domain=cfg.spiffe_trust_domain,
        )

    # watch events -----------------------------------------------------------------------------

    def observe(self, plural: str, event: Mapping[str, Any]) -> None:
        body = dict(event.get("object") or {})
        meta = body.get("metadata") or {}
        gone = event.get("type") == "DELETED"
        if plural == NAMESPACES:
            name = str(meta.get("name", ""))
            labels = dict(meta.get("labels") or {})
            if gone:
                self.state.namespaces.pop(name, None)
                self.state.namespace_uids.pop(name, None)
                return
            self.state.namespace_uids[name] = str(meta.get("uid", ""))
            if self.state.namespaces.get(name) != labels:
                self.state.namespaces[name] = labels
                self.wake((NAMESPACES, "", name), 0)
            return
        key = (plural, str(meta.get("namespace") or ""), str(meta.get("name", "")))
        body.setdefault("apiVersion", "apps/v1")
        body.setdefault("kind", PLURAL_KINDS[plural])
        known = key in self.state.workloads
        if gone:
            if known:
                self.state.gone[key] = self.state.workloads.pop(key)
                self.wake(key, 0)
            return
        if INJECT in template_annotations(body):
            old = self.state.workloads.get(key)
            self.state.workloads[key] = body
            # Status updates (a rollout's progress) change nothing the reconcile reads.
            if old is None or _essence(old) != _essence(body):
                self.wake(key, 0)
        elif known:
            del self.state.workloads[key]
            self.wake(key, 0)  # opted out: its Certificate and Secret go

    def certificate_seen(self, body: Mapping[str, Any]) -> None:
        """A Certificate changed: if a workload controls it, look at the workload again (a new
        certificate in its Secret may ask for a restart, and its roots for a new bundle)."""
        owner = controlled_by(body)
        if owner is not None:
            workload, _ = owner
            self.wake((workload.plural, workload.namespace, workload.name), 0.2)

    def issuer_seen(self, key: ObjectKey) -> None:
        """An issuer changed (its issuingCABundle or dns-names template): its workloads."""
        for user in list(self.state.issuer_users.get(key, ())):
            self.wake(user, 0.5)

    def wake_trust(self) -> None:
        for name in self.state.namespaces:
            self.wake((NAMESPACES, "", name), 0.2)

    def set_roots(self, key: ObjectKey, roots: tuple[x509.Certificate, ...] | None) -> None:
        """Record a workload's roots (None: it is gone); a change rewrites the bundles."""
        old = self.state.roots.get(key)
        if roots is None:
            self.state.roots.pop(key, None)
        else:
            self.state.roots[key] = roots
        if old != roots or self.state.complete():
            self.wake_trust()
