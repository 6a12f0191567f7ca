"""What every reconciler shares: settings, the API, the thread pool, the object cache, Events.

The synchronous clients (``kubernetes``, ``acme``) run in one bounded thread pool, so that a
thousand waiting certificates cost no threads and a burst of work never grows the pool. The cache
holds the newest body seen for each watched object, from watch events and from the responses to
the operator's own status patches: a reconcile that runs right after a patch must see the patch,
or it could act twice on the same journal step (for example create a second ACME order).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from acmebridge.adapters.kube import Kube, KubeError, ours_path
from acmebridge.config import OperatorConfig
from acmebridge.domain.keys import PrivateKey
from acmebridge.reconcile.servers import ServerHealth

log = logging.getLogger("acmebridge")

P = ParamSpec("P")
T = TypeVar("T")

#: (plural, namespace or "", name)
ObjectKey = tuple[str, str, str]


def key_of(body: Mapping[str, Any], plural: str) -> ObjectKey:
    meta = body.get("metadata", {})
    return (plural, str(meta.get("namespace") or ""), str(meta.get("name", "")))


def _cached(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body as the cache keeps it: without ``metadata.managedFields``, the API server's
    record of who set which field, which nothing here reads. It is often the largest part of a
    Certificate (one entry per writer, each with its field set), so with thousands of
    Certificates it would be most of the operator's memory."""
    meta = body.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return dict(body)


def _rv(body: Mapping[str, Any]) -> int | None:
    try:
        return int(body.get("metadata", {}).get("resourceVersion", ""))
    except ValueError:
        return None


class Metrics:
    """The hooks reconcilers call; the metrics module implements them (no-op by default)."""

    def acme_request(self, kind: str, outcome: str, seconds: float) -> None: ...
    def issued(self, namespace: str, name: str, seconds: float | None) -> None: ...
    def failure(self, reason: str) -> None: ...
    def certificate(self, body: Mapping[str, Any] | None, key: ObjectKey) -> None: ...
    def issuer(self, body: Mapping[str, Any] | None, key: ObjectKey) -> None: ...
    def reconciled(self, kind: str, error: bool) -> None: ...
    def solvers(self, delta: int) -> None: ...
    def kube_request(self, method: str, status: int, resource: str = "") -> None: ...


@dataclass
class Runtime:
    config: OperatorConfig
    kube: Kube
    executor: ThreadPoolExecutor
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    metrics: Metrics = field(default_factory=Metrics)
    cache: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    #: issuer key -> certificate keys that reference it (to wake them when the issuer changes)
    dependents: dict[ObjectKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    #: certificate key -> the issuer key it references (the reverse of ``dependents``)
    issuer_of: dict[ObjectKey, ObjectKey] = field(default_factory=dict)
    wake: Callable[[ObjectKey, float], None] = lambda key, delay: None
    #: ACME servers that are down, probed until they answer (``reconcile.servers``)
    servers: ServerHealth | None = None
    #: certificate UID -> (pending-key Secret UID, key): spares a read per issuance step. Only
    #: keys this process created or read; entries go when the issuance ends.
    pending_keys: dict[str, tuple[str, PrivateKey]] = field(default_factory=dict)
    #: certificate UID -> (Secret name, order URL): the TLS Secret was absent when this order
    #: was under way, so the order's further steps need not read it again (a new Certificate
    #: otherwise reads its missing Secret on every step). It is read once more right before
    #: writing: someone else may have created it meanwhile.
    secret_absent: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: certificate key -> journal changes not yet worth a write of their own (a solver just
    #: presented, an authorization read): sent with the next status write, lost on restart,
    #: where repeating the step is harmless.
    unwritten: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.servers is None:
            self.servers = ServerHealth(wake=lambda k, d: self.wake(k, d), clock=self.clock)

    @property
    def health(self) -> ServerHealth:
        assert self.servers is not None
        return self.servers

    def depend(self, certificate: ObjectKey, issuer: ObjectKey | None) -> None:
        """Record which issuer a certificate uses (None: it is gone), in O(1)."""
        old = self.issuer_of.pop(certificate, None)
        if old is not None:
            self.dependents[old].discard(certificate)
        if issuer is not None:
            self.issuer_of[certificate] = issuer
            self.dependents[issuer].add(certificate)

    def keep_unwritten(self, key: ObjectKey, patch: Mapping[str, Any]) -> None:
        """Keep the journal part of an unwritten status patch for the next reconcile. Never
        conditions: a merge patch replaces the whole list, which could undo a user's change."""
        if "order" in patch:
            self.unwritten[key] = {"order": patch["order"]}
        else:
            self.unwritten.pop(key, None)

    async def io(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking call in the bounded pool, in a copy of the caller's context (as
        ``asyncio.to_thread`` does), so log lines from the thread still name the object."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self.executor, call)

    def observe(self, key: ObjectKey, body: Mapping[str, Any] | None) -> bool:
        """Record a body from a watch event or a write; False when it is older than the cache."""
        if body is None:
            self.cache.pop(key, None)
            return True
        old = self.cache.get(key)
        if old is not None:
            new_rv, old_rv = _rv(body), _rv(old)
            if new_rv is not None and old_rv is not None and new_rv < old_rv:
                return False
        self.cache[key] = _cached(body)
        return True

    async def patch_status(self, key: ObjectKey, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch ``status`` of one of our objects and cache the result."""
        plural, namespace, name = key
        path = ours_path(plural, namespace or None, name) + "/status"
        body = await self.io(self.kube.merge_patch, path, {"status": dict(status)})
        self.unwritten.pop(key, None)
        self.observe(key, body)
        return body

    async def event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post an aggregated Event; a failure to post never fails the reconcile."""
        try:
            await self.io(
                self.kube.record_event,
                involved=body,
                type_=type_,
                reason=reason,
                message=message,
                now=self.clock(),
            )
        except KubeError as e:
            log.warning("could not post event %s on %s: %s", reason, key_of(body, "?"), e)
