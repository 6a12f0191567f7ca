"""The Ingress shim: keep the Certificates annotated Ingresses ask for, and only those.

Gather the Ingress and the Certificates from the watch cache, decide with
``domain.ingress_shim``, act: create, update (a PUT guarded by the resourceVersion read), delete
(guarded by the UID read), and tell the user with Events on the Ingress. The Certificates it
makes are ordinary ones: the certificate reconcile issues them, re-issues when their names
change, and reports on them as on any other.

Which Certificates an Ingress controls is kept in an index fed by the Certificate watch, so that a
reconcile never scans the cache and never lists. The same watch wakes an Ingress when one of its
Certificates is deleted or edited (the shim puts it back, as cert-manager's does), or when a
Certificate that stood in its way is deleted. Ingresses that ask for nothing and own nothing are
not kept in the cache. The operator's own HTTP-01 solver Ingresses are never looked at.

Warnings are posted when they are news for that Ingress, not at every reconcile.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from acmebridge.adapters.kube import Conflict, KubeError, group_path, ours_path
from acmebridge.domain.ingress_annotations import shim_prefix
from acmebridge.domain.ingress_shim import (
    BAD_CONFIG,
    Changes,
    Plan,
    Problem,
    changes,
    controlling_ingress,
    issuer_missing,
    plan,
)
from acmebridge.domain.solvers import SOLVER_LABEL
from acmebridge.reconcile.runtime import ObjectKey, Runtime, key_of

log = logging.getLogger("acmebridge.ingress")

PLURAL = "ingresses"
#: seconds before looking again when the cache was behind the API server (a 409)
STALE_RETRY = 1.0


def ingress_path(namespace: str, name: str | None = None) -> str:
    return group_path("networking.k8s.io", "v1", PLURAL, namespace, name)


def _interesting_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """A Certificate change the shim cares about: it appeared or went, or someone changed its
    spec (generation), labels or owners. Status patches, the bulk of all events, are not."""
    if old is None or new is None:
        return True
    a, b = old.get("metadata") or {}, new.get("metadata") or {}
    return any(a.get(k) != b.get(k) for k in ("generation", "labels", "ownerReferences"))


class IngressShim:
    """The shim's state for one operator run: which Certificates each Ingress controls."""

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
        #: ingress key -> keys of the Certificates it controls (from the Certificate watch)
        self.owned: dict[ObjectKey, set[ObjectKey]] = defaultdict(set)
        self._owner: dict[ObjectKey, ObjectKey] = {}
        #: certificate key -> the Ingress it stood in the way of (a conflict)
        self._blocked: dict[ObjectKey, ObjectKey] = {}
        #: ingress key -> the warnings already told, so each is posted once while it lasts
        self._told: dict[ObjectKey, set[tuple[str, str]]] = {}

    # Watch events ----------------------------------------------------------------------------

    def observe(self, event: Mapping[str, Any]) -> None:
        """An Ingress watch event: cache it and wake it if it asks for certificates or owns some."""
        body = dict(event.get("object") or {})
        meta = body.get("metadata") or {}
        if SOLVER_LABEL in (meta.get("labels") or {}):
            return  # the operator's own HTTP-01 solver Ingress
        key = key_of(body, PLURAL)
        if event.get("type") == "DELETED":
            # The garbage collector deletes its Certificates (they are owned by it).
            self.rt.observe(key, None)
            self._told.pop(key, None)
            self.forget(key)
            return
        if shim_prefix(meta.get("annotations") or {}) is None and not self.owned.get(key):
            self.rt.observe(key, None)  # asks for nothing, owns nothing: nothing to keep
            return
        old = self.rt.cache.get(key)
        if old is not None and (old.get("metadata") or {}).get("resourceVersion") == meta.get(
            "resourceVersion"
        ):
            return
        if self.rt.observe(key, body):
            self.wake(key, 0.0)

    def certificate_seen(
        self, key: ObjectKey, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
    ) -> None:
        """A Certificate watch event (``new`` None: deleted): keep the index, wake who cares."""
        _, namespace, _ = key
        previous = self._owner.pop(key, None)
        if previous is not None:
            self.owned[previous].discard(key)
            if not self.owned[previous]:
                del self.owned[previous]
        name = controlling_ingress(new)
        owner = (PLURAL, namespace, name) if name is not None else None
        if owner is not None:
            self._owner[key] = owner
            self.owned[owner].add(key)
        if new is None and key in self._blocked:
            self.wake(self._blocked.pop(key), 0.5)
        woken = owner or previous
        if woken is not None and _interesting_change(old, new):
            self.wake(woken, 0.5)

    # Reconcile -------------------------------------------------------------------------------

    async def reconcile(self, key: ObjectKey) -> float | None:
        _, namespace, name = key
        body = self.rt.cache.get(key)
        if body is None:
            # Not cached: it asked for nothing when last seen, but owns a Certificate (say, the
            # annotation was removed while the operator was down). Read it by name.
            body = await self.rt.io(self.rt.kube.get, ingress_path(namespace, name))
            if body is None:
                return None  # gone: the garbage collector removes its Certificates
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None
        wanted = plan(body)
        existing = self._existing(key, wanted)
        todo = changes(wanted, ingress_uid=str(meta.get("uid", "")), existing=existing)
        for problem in todo.problems:
            if problem.certificate is not None:
                self._blocked[("certificates", namespace, problem.certificate)] = key
        retry = await self._act(body, todo)
        problems = [*wanted.problems, *todo.problems]
        problems += await self._issuer_problems(wanted, namespace)
        await self._tell(key, body, problems)
        return retry

    def _existing(self, key: ObjectKey, wanted: Plan) -> dict[str, dict[str, Any]]:
        _, namespace, _ = key
        found: dict[str, dict[str, Any]] = {}
        for desired in wanted.certificates:
            body = self.rt.cache.get(("certificates", namespace, desired.name))
            if body is not None:
                found[desired.name] = body
        for cert_key in self.owned.get(key, ()):
            body = self.rt.cache.get(cert_key)
            if body is not None:
                found[cert_key[2]] = body
        return found

    async def _act(self, ingress: Mapping[str, Any], todo: Changes) -> float | None:
        namespace = str(ingress["metadata"]["namespace"])
        retry: float | None = None
        for desired in todo.create:
            try:
                await self.rt.io(
                    self.rt.kube.create, ours_path("certificates", namespace), desired.manifest
                )
            except Conflict:
                retry = STALE_RETRY  # it exists, and the cache has not seen it yet
                continue
            except KubeError as e:
                if not await self._refused(ingress, desired.name, e):
                    raise
                continue
            names = ", ".join([*desired.spec.dns_names, *desired.spec.ip_addresses])
            await self.rt.event(
                ingress,
                "Normal",
                "CreateCertificate",
                f"Created Certificate {desired.name!r} for {names}",
            )
        for desired, body in todo.update:
            path = ours_path("certificates", namespace, desired.name)
            try:
                await self.rt.io(self.rt.kube.replace, path, body)
            except Conflict:
                retry = STALE_RETRY  # changed since the cache saw it: decide again
                continue
            except KubeError as e:
                if not await self._refused(ingress, desired.name, e):
                    raise
                continue
            names = ", ".join([*desired.spec.dns_names, *desired.spec.ip_addresses])
            await self.rt.event(
                ingress,
                "Normal",
                "UpdateCertificate",
                f"Updated Certificate {desired.name!r} to follow the Ingress (names: {names})",
            )
        for body in todo.delete:
            cert_meta = body.get("metadata") or {}
            cert_name = str(cert_meta.get("name"))
            path = ours_path("certificates", namespace, cert_name)
            try:
                # The UID precondition: never a same-named Certificate made since the read.
                gone = await self.rt.io(self.rt.kube.delete, path, uid=cert_meta.get("uid"))
            except Conflict:
                continue  # another object of that name now: not ours to delete
            if gone:
                secret = (body.get("spec") or {}).get("secretName", cert_name)
                await self.rt.event(
                    ingress,
                    "Normal",
                    "DeleteCertificate",
                    f"Deleted Certificate {cert_name!r}: the Ingress no longer asks for it. "
                    f"Secret {secret!r} stays; delete it when nothing mounts it",
                )
        return retry

    async def _refused(self, ingress: Mapping[str, Any], name: str, error: KubeError) -> bool:
        """The API server refused the manifest (422: the CRD's rules): tell, and wait for the
        Ingress to change. Anything else is raised, and the queue retries with backoff."""
        if error.status != 422:
            return False
        await self.rt.event(
            ingress,
            "Warning",
            BAD_CONFIG,
            f"the API server refused Certificate {name!r}: {error.message}",
        )
        return True

    async def _issuer_problems(self, wanted: Plan, namespace: str) -> list[Problem]:
        """The issuer the annotation names must exist; the Certificates wait for it if not, as
        cert-manager's do, and are issued as soon as it is created."""
        if wanted.issuer is None or wanted.hold or not wanted.certificates:
            return []
        issuer = wanted.issuer
        if issuer.kind == "ClusterIssuer":
            ikey: ObjectKey = ("clusterissuers", "", issuer.name)
        else:
            ikey = ("issuers", namespace, issuer.name)
        if ikey in self.rt.cache:
            return []
        # The issuer watch may not have delivered it yet (just after start): ask once by name.
        plural, ns, name = ikey
        try:
            found = await self.rt.io(self.rt.kube.get, ours_path(plural, ns or None, name))
        except KubeError as e:
            log.warning("could not read %s %s: %s", issuer.kind, issuer.name, e)
            return []
        if found is not None:
            return []
        names = [d.name for d in wanted.certificates]
        return [issuer_missing(issuer, namespace=namespace, names=names)]

    async def _tell(self, key: ObjectKey, body: Mapping[str, Any], problems: list[Problem]) -> None:
        told = self._told.get(key, set())
        now = {(p.reason, p.message) for p in problems}
        for problem in problems:
            if (problem.reason, problem.message) in told:
                continue
            await self.rt.event(body, problem.type, problem.reason, problem.message)
            if problem.type == "Warning":
                _, namespace, name = key
                log.warning(
                    "Ingress %s/%s: %s: %s", namespace, name, problem.reason, problem.message
                )
        if now:
            self._told[key] = now
        else:
            self._told.pop(key, None)
