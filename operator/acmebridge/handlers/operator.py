"""kopf wiring: watch events feed the work queues; nothing else happens in these handlers.

kopf gives acmebridge its watches (with re-listing and back-pressure), peering for several
replicas, and the liveness endpoint. The handlers are ``on.event`` only: they store the newest
body and wake the object's reconcile. No change-detection handlers means kopf never writes its
last-handled-configuration annotation or progress into our objects, and no daemons means no
finalizer on every Certificate; Secrets are never watched at all (kopf's annotation would copy a
Secret's data, private key included, into metadata).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from acmebridge import logs
from acmebridge.adapters.kube import Kube, KubeError, api_client, core_path, ours_path
from acmebridge.config import OperatorConfig, named_namespaces
from acmebridge.domain.solvers import SOLVER_LABEL
from acmebridge.reconcile.accounts import Accounts
from acmebridge.reconcile.certificate import reconcile_certificate
from acmebridge.reconcile.ingresses import IngressShim
from acmebridge.reconcile.issuer import reconcile_issuer
from acmebridge.reconcile.mtls import PLURALS as MTLS_PLURALS
from acmebridge.reconcile.mtls import MtlsController
from acmebridge.reconcile.queue import Next, WorkQueue
from acmebridge.reconcile.runtime import Metrics, ObjectKey, Runtime, key_of

GROUP, VERSION = "acmebridge.io", "v1alpha1"
log = logging.getLogger("acmebridge")


class Operator:
    """The operator's live state for one run: runtime, account cache, queues."""

    def __init__(self, config: OperatorConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.rt: Runtime | None = None
        self.accounts = Accounts()
        self.issuer_failures: dict[ObjectKey, int] = {}
        self.queue: WorkQueue | None = None
        self._sweep: asyncio.Task[None] | None = None
        self.ingresses: IngressShim | None = None
        #: workload mTLS (--mtls), handlers/mtls.py
        self.mtls: MtlsController | None = None

    async def start(self) -> None:
        api = api_client()
        # One connection per worker thread; urllib3's default pool of 4 would serialise them.
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = self.config.concurrency
        executor = ThreadPoolExecutor(
            max_workers=self.config.concurrency, thread_name_prefix="acmebridge-io"
        )
        kube = Kube(api, on_request=self.metrics.kube_request)
        self.rt = Runtime(config=self.config, kube=kube, executor=executor, metrics=self.metrics)
        self.queue = WorkQueue(self._reconcile, workers=self.config.concurrency)
        self.rt.wake = self.queue.add
        self.rt.health.on_change(self._server_changed)
        self.ingresses = IngressShim(self.rt, wake=self.queue.add, forget=self.queue.forget)
        if self.config.mtls:
            self.mtls = MtlsController(self.rt, wake=self.queue.add, forget=self.queue.forget)
        await self.queue.start()
        self._sweep = asyncio.create_task(self._terminating_namespaces(), name="acmebridge-sweep")

    async def _terminating_namespaces(self) -> None:
        """Certificates in a served namespace that was already being deleted when the operator
        started: kopf never watches such a namespace, and a Certificate there may be waiting on
        this operator to remove its DNS-01 values (its finalizer). Feed them in once."""
        assert self.rt is not None
        rt = self.rt
        # Patterns are left out: kopf resolves those, and only live namespaces match.
        for namespace in named_namespaces(self.config.namespaces):
            try:
                found = await rt.io(
                    rt.kube.list,
                    core_path("namespaces", None),
                    field_selector=f"metadata.name={namespace}",
                )
                if not found or not found[0]["metadata"].get("deletionTimestamp"):
                    continue
                bodies = await rt.io(rt.kube.list, ours_path("certificates", namespace))
            except KubeError as e:
                log.warning("could not look at namespace %s: %s", namespace, e)
                continue
            for body in bodies:
                if body["metadata"].get("deletionTimestamp"):
                    body.setdefault("apiVersion", f"{GROUP}/{VERSION}")
                    body.setdefault("kind", "Certificate")
                    self.observe("certificates", {"type": "MODIFIED", "object": body})

    async def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        if self.queue is not None:
            await self.queue.stop()
        if self.rt is not None:
            self.rt.executor.shutdown(wait=False, cancel_futures=True)
        for account in self.accounts.values():
            account.session.close()

    async def _reconcile(self, key: Any) -> float | Next | None:
        assert self.rt is not None
        plural = key[0]
        error = False
        try:
            with logs.about(*key):
                if plural == "ingresses":
                    assert self.ingresses is not None
                    return await self.ingresses.reconcile(key)
                if plural in MTLS_PLURALS:
                    assert self.mtls is not None
                    return await self.mtls.reconcile(key)
                if plural == "certificates":
                    return await reconcile_certificate(self.rt, key, self.accounts)
                # Issuers first when many objects are due: each gates its Certificates.
                delay = await reconcile_issuer(self.rt, key, self.accounts, self.issuer_failures)
                return Next(delay, priority=0)
        except Exception:
            error = True
            raise
        finally:
            self.metrics.reconciled(plural, error)

    def observe(self, plural: str, event: Mapping[str, Any]) -> None:
        """A watch event: remember the body, and wake the object (and, for issuers, its users)."""
        if self.rt is None or self.queue is None:
            return
        if plural == "ingresses":
            if self.ingresses is not None:
                self.ingresses.observe(event)
            return
        body = dict(event.get("object") or {})
        key = key_of(body, plural)
        if self.mtls is not None:
            if plural == "certificates":
                self.mtls.certificate_seen(body)
            else:
                self.mtls.issuer_seen(key)
        if plural == "certificates" and self.ingresses is not None:
            gone = event.get("type") == "DELETED"
            self.ingresses.certificate_seen(key, self.rt.cache.get(key), None if gone else body)
        if event.get("type") == "DELETED":
            self.rt.observe(key, None)
            self.queue.forget(key)
            if plural != "certificates":
                self.accounts.forget(key)
                self.metrics.issuer(None, key)
                self._wake_dependents(key)
            else:
                self.rt.depend(key, None)
                self.rt.unwritten.pop(key, None)
                uid = body.get("metadata", {}).get("uid", "")
                self.rt.secret_absent.pop(uid, None)
                self.rt.pending_keys.pop(uid, None)
                self.metrics.certificate(None, key)
            return
        old = self.rt.cache.get(key)
        same = old is not None and old.get("metadata", {}).get("resourceVersion") == body.get(
            "metadata", {}
        ).get("resourceVersion")
        if same or not self.rt.observe(key, body):
            return  # our own write coming back, or an older event: nothing new to act on
        self.queue.add(key)
        if plural != "certificates":
            self._wake_dependents(key)

    def _server_changed(self, url: str) -> None:
        """An ACME server went down or came back: its Issuers say so at once."""
        assert self.queue is not None
        for key, account in self.accounts.items():
            if account.spec.server == url:
                self.queue.add(key, 0.0)

    def _wake_dependents(self, key: ObjectKey) -> None:
        assert self.rt is not None and self.queue is not None
        for dep in list(self.rt.dependents.get(key, ())):
            self.queue.add(dep, 0.5)


OPERATOR: Operator | None = None


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no last-handled state: kopf builds a diff base (a deep copy of the body, less its
    status and system fields) on every watch event, for change-detection handlers to diff
    against. acmebridge registers none (see the module's docstring; a unit test keeps it so), and
    the copies were 5% of its CPU in a 200-certificate burst (``make bench PROFILE=1``)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def install(operator: Operator) -> None:
    """Register the handlers for ``operator`` (called once, before kopf starts)."""
    global OPERATOR
    OPERATOR = operator


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    assert OPERATOR is not None, "install() must run before the operator starts"
    # We post the Events users need ourselves (aggregated); kopf would post every log line.
    settings.posting.enabled = False
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.networking.request_timeout = 60
    settings.persistence.diffbase_storage = NoDiffBase()
    await OPERATOR.start()


@kopf.on.cleanup()
async def _cleanup(**_: Any) -> None:
    if OPERATOR is not None:
        await OPERATOR.stop()


@kopf.on.event(GROUP, VERSION, "certificates")
async def _certificate_event(event: kopf.RawEvent, **_: Any) -> None:
    if OPERATOR is not None:
        OPERATOR.observe("certificates", event)


@kopf.on.event(GROUP, VERSION, "issuers")
async def _issuer_event(event: kopf.RawEvent, **_: Any) -> None:
    if OPERATOR is not None:
        OPERATOR.observe("issuers", event)


@kopf.on.event(GROUP, VERSION, "clusterissuers")
async def _clusterissuer_event(event: kopf.RawEvent, **_: Any) -> None:
    if OPERATOR is not None:
        OPERATOR.observe("clusterissuers", event)


@kopf.on.event("networking.k8s.io", "v1", "ingresses", labels={SOLVER_LABEL: kopf.ABSENT})
async def _ingress_event(event: kopf.RawEvent, **_: Any) -> None:
    # Annotated Ingresses get Certificates (reconcile/ingresses.py); the operator's own HTTP-01
    # solver Ingresses are filtered out here already.
    if OPERATOR is not None:
        OPERATOR.observe("ingresses", event)
