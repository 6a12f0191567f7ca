"""kopf wiring for workload mTLS, registered only when the operator runs with ``--mtls``.

Watches (leader only, as every kopf watch under peering): Deployments, StatefulSets and
DaemonSets, and Namespaces (for ``acmebridge.io/trust``); their events wake keys of the same work
queue as Certificates (``reconcile.mtls``). Certificates and issuers reach the controller through
``handlers.operator.Operator.observe``.

Admission (every replica): kopf's webhook server answers on each replica whether or not it is the
active peer (peering pauses watches, not the admission server), with a serving certificate this
module keeps fresh (``reconcile.webhook_serving``). An index on the workload kinds makes kopf hold
every handler until the first listing of workloads is done, so the trust bundle is never computed
from half of them after a restart.

Registering these handlers only with ``--mtls`` keeps an operator without it from needing the
permissions (kopf would fail to watch Deployments) or a webhook server (kopf refuses to start with
admission handlers and no server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from acmebridge.adapters.kube import KubeError
from acmebridge.config import OperatorConfig
from acmebridge.domain.webhook_config import POD_PATH, WORKLOAD_PATH
from acmebridge.domain.workload_mtls import (
    AnnotationError,
)
from acmebridge.handlers import operator as core
from acmebridge.reconcile.admission import Refused, check_workload, pod_injection
from acmebridge.reconcile.mtls import NAMESPACES, WORKLOAD_PLURALS, MtlsController
from acmebridge.reconcile.webhook_serving import WebhookServing

log = logging.getLogger("acmebridge.mtls")

#: how often kopf's server looks for a renewed serving certificate file (seconds)
FILE_CHECK_INTERVAL = 5.0
_tasks: list[asyncio.Task[None]] = []


class ConfigError(SystemExit):
    """A flag combination that cannot work; the message says which flag to give."""


def _controller() -> MtlsController:
    operator = core.OPERATOR
    if operator is None or operator.mtls is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return operator.mtls


async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    ctl = _controller()
    cfg = ctl.rt.config
    serving = WebhookServing(ctl.rt)
    material = await serving.ensure()
    try:
        await serving.register(material)
    except KubeError as e:  # the chart's configuration may exist already; serve regardless
        log.error("could not register the MutatingWebhookConfiguration: %s", e)
    settings.admission.server = kopf.WebhookServer(
        addr=cfg.webhook_address,
        port=cfg.webhook_port,
        certfile=str(serving.pem_path),
        pkeyfile=str(serving.pem_path),
        file_check_interval=FILE_CHECK_INTERVAL,
    )
    _tasks.append(asyncio.create_task(_refresh(serving), name="acmebridge-webhook-serving"))
    log.info(
        "admission webhook on %s:%d (configuration %s)",
        cfg.webhook_address,
        cfg.webhook_port,
        cfg.webhook_configuration,
    )


async def _refresh(serving: WebhookServing) -> None:
    while True:
        delay = await serving.refresh()
        await asyncio.sleep(delay.total_seconds())


async def _cleanup(**_: Any) -> None:
    for task in _tasks:
        task.cancel()
    for task in _tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    _tasks.clear()


async def _mutate_pod(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    ctl = _controller()
    pod = dict(body)
    namespace = str((pod.get("metadata") or {}).get("namespace") or "")
    try:
        result = await pod_injection(ctl.rt, pod, namespace=namespace, defaults=ctl.defaults)
    except (AnnotationError, Refused) as e:
        raise kopf.AdmissionError(str(e), code=400) from e
    except KubeError as e:
        raise kopf.AdmissionError(f"could not read namespace {namespace}: {e}", code=500) from e
    if result is None:
        return
    spec: dict[str, Any] = {"volumes": result.volumes, "containers": result.containers}
    if result.init_containers:
        spec["initContainers"] = result.init_containers
    patch["spec"] = spec


async def _check_workload(body: kopf.Body, **_: Any) -> None:
    try:
        check_workload(dict(body), defaults=_controller().defaults)
    except AnnotationError as e:
        raise kopf.AdmissionError(str(e), code=400) from e


def _observer(plural: str) -> Any:
    async def observe(event: kopf.RawEvent, **_: Any) -> None:
        operator = core.OPERATOR
        if operator is not None and operator.mtls is not None:
            operator.mtls.observe(plural, event)

    return observe


async def _listed(**_: Any) -> None:
    """An index whose only use is kopf's promise: no handler runs before it is filled."""
    return None


def install(config: OperatorConfig) -> None:
    """Register the mTLS handlers (before kopf starts). Raises ConfigError for bad flags."""
    if bool(config.webhook_url) == bool(config.webhook_service):
        raise ConfigError(
            "acmebridge run --mtls: give exactly one of --webhook-service NAMESPACE/NAME (in a "
            "cluster) or --webhook-url https://HOST:PORT (outside one)"
        )
    if config.webhook_service and config.webhook_service.count("/") != 1:
        raise ConfigError("--webhook-service: expected NAMESPACE/NAME")
    kopf.on.startup(id="mtls-startup")(_startup)
    kopf.on.cleanup(id="mtls-cleanup")(_cleanup)
    for plural in sorted(WORKLOAD_PLURALS):
        kopf.on.event("apps", "v1", plural, id=f"mtls-{plural}")(_observer(plural))
        kopf.on.index("apps", "v1", plural, id=f"mtls-listed-{plural}")(_listed)
        kopf.on.mutate("apps", "v1", plural, id=WORKLOAD_PATH, operations=["CREATE", "UPDATE"])(
            _check_workload
        )
    kopf.on.event("", "v1", NAMESPACES, id="mtls-namespaces")(_observer(NAMESPACES))
    kopf.on.mutate("", "v1", "pods", id=POD_PATH, operations=["CREATE"])(_mutate_pod)
