"""The admission webhook's serving certificate: kept in a Secret, renewed, and put in the
webhook configuration's ``caBundle``. Runs on every replica, leader or not.

Every replica serves the webhook (a Service spreads the API server's calls over them), so every
replica needs a serving certificate the configuration's ``caBundle`` verifies. The material
(``domain.webhook_tls``) lives in one Secret, ``<configuration>-webhook-tls`` in the cluster
resource namespace: the first replica that finds it missing or due creates or replaces it, with
the resourceVersion it read as a precondition, and the others take what it wrote. Each replica
writes the certificate and key into one file (kopf's server reloads its files when they change;
one file replaced by a rename can never pair a new certificate with an old key), then patches
the ``caBundle``. The MutatingWebhookConfiguration is created here only when it does not exist
(the Helm chart creates it; a run outside a cluster relies on this).
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from acmebridge.adapters.kube import Conflict, KubeError, core_path
from acmebridge.domain import webhook_config, webhook_tls
from acmebridge.domain.secret import label_value
from acmebridge.domain.webhook_tls import Plan, ServingMaterial
from acmebridge.reconcile.runtime import Runtime

log = logging.getLogger("acmebridge.webhook")

SERVING_LABEL = "acmebridge.io/webhook-serving"
CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
#: the longest wait between two looks at the Secret and the configuration
RECHECK = timedelta(minutes=10)


class ServingError(RuntimeError):
    """The serving material cannot be had (a foreign Secret in the way, the API refusing)."""


def client_config(rt: Runtime) -> webhook_config.ClientConfig:
    cfg = rt.config
    if cfg.webhook_url:
        return webhook_config.ClientConfig(url=cfg.webhook_url)
    namespace, _, name = cfg.webhook_service.partition("/")
    return webhook_config.ClientConfig(service_namespace=namespace, service_name=name)


def hosts(rt: Runtime) -> tuple[str, ...]:
    cfg = rt.config
    service = None
    if cfg.webhook_service:
        namespace, _, name = cfg.webhook_service.partition("/")
        service = (namespace, name)
    url_host = urlsplit(cfg.webhook_url).hostname if cfg.webhook_url else None
    return webhook_tls.serving_hosts(
        service=service, url_host=url_host, cluster_domain=cfg.cluster_domain
    )


class WebhookServing:
    """The serving material of this replica, and the file kopf's server reads it from."""

    def __init__(self, rt: Runtime, *, directory: Path | None = None) -> None:
        self.rt = rt
        self.directory = directory or Path(tempfile.mkdtemp(prefix="acmebridge-webhook-"))
        self.pem_path = self.directory / "serving.pem"
        self.material: ServingMaterial | None = None
        namespace = rt.config.cluster_resource_namespace
        self.secret_name = f"{rt.config.webhook_configuration}-webhook-tls"
        self.secret_path = core_path("secrets", namespace, self.secret_name)
        self.namespace = namespace

    async def ensure(self) -> ServingMaterial:
        """Read, renew if due, write the file; returns the material now served."""
        for _ in range(5):
            existing = await self.rt.io(self.rt.kube.get, self.secret_path)
            material = self._material(existing)
            now = self.rt.clock()
            plan = webhook_tls.decide(material, now=now, hosts=hosts(self.rt))
            if plan is Plan.KEEP and material is not None:
                self._write(material)
                return material
            new = webhook_tls.issue(
                material,
                plan,
                now=now,
                hosts=hosts(self.rt),
                lifetime=self.rt.config.webhook_cert_duration,
            )
            try:
                await self._store(existing, new)
            except Conflict:
                continue  # another replica wrote it first: take theirs
            log.info(
                "webhook serving material: %s (until %s)", plan.value, new.cert.not_valid_after_utc
            )
            self._write(new)
            return new
        raise ServingError(f"Secret {self.namespace}/{self.secret_name} keeps changing under us")

    def _material(self, secret: Mapping[str, Any] | None) -> ServingMaterial | None:
        if secret is None:
            return None
        labels = (secret.get("metadata") or {}).get("labels") or {}
        if labels.get(SERVING_LABEL) != label_value(self.rt.config.webhook_configuration):
            raise ServingError(
                f"Secret {self.namespace}/{self.secret_name} exists but was not written by "
                f"acmebridge (no label {SERVING_LABEL}); delete it or choose another "
                "--webhook-configuration name"
            )
        data = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                data[key] = base64.b64decode(value)
            except ValueError:
                return None
        return ServingMaterial.from_data(data)

    async def _store(self, existing: Mapping[str, Any] | None, new: ServingMaterial) -> None:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": self.secret_name,
                "namespace": self.namespace,
                "labels": {
                    SERVING_LABEL: label_value(self.rt.config.webhook_configuration),
                    "app.kubernetes.io/managed-by": "acmebridge",
                },
            },
            "data": {k: base64.b64encode(v).decode() for k, v in new.to_data().items()},
        }
        if existing is None:
            await self.rt.io(self.rt.kube.create, core_path("secrets", self.namespace), body)
        else:
            body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            await self.rt.io(self.rt.kube.replace, self.secret_path, body)

    def _write(self, material: ServingMaterial) -> None:
        data = material.to_data()
        pem = data["tls.crt"] + data["tls.key"]
        if self.pem_path.exists() and self.pem_path.read_bytes() == pem:
            self.material = material
            return
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".serving-")
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.pem_path)
        self.material = material

    async def register(self, material: ServingMaterial) -> None:
        """Create the webhook configuration if it is missing, else keep its caBundle ours."""
        cfg = self.rt.config
        bundle = webhook_tls.ca_bundle(material, now=self.rt.clock())
        path = f"{CONFIGURATIONS}/{cfg.webhook_configuration}"
        existing = await self.rt.io(self.rt.kube.get, path)
        if existing is None:
            body = webhook_config.configuration(
                cfg.webhook_configuration,
                client_config(self.rt),
                namespaces=cfg.namespaces,
                excluded=self.excluded(),
                ca_bundle=bundle,
            )
            try:
                await self.rt.io(self.rt.kube.create, CONFIGURATIONS, body)
                log.info("created MutatingWebhookConfiguration %s", cfg.webhook_configuration)
            except Conflict:
                pass  # another replica made it; its caBundle is the same Secret's
            return
        hooks = webhook_config.ca_bundle_patch(existing, bundle)
        if hooks is None:
            return
        patch = {
            "metadata": {"resourceVersion": existing["metadata"]["resourceVersion"]},
            "webhooks": hooks,
        }
        try:
            await self.rt.io(self.rt.kube.merge_patch, path, patch)
            log.info(
                "updated the caBundle of MutatingWebhookConfiguration %s", path.rsplit("/")[-1]
            )
        except Conflict:
            pass  # changed meanwhile; the next look patches it

    def excluded(self) -> tuple[str, ...]:
        cfg = self.rt.config
        service_namespace = cfg.webhook_service.partition("/")[0] if cfg.webhook_service else ""
        return tuple(
            webhook_config.excluded_namespaces(
                service_namespace=service_namespace,
                cluster_resource_namespace=cfg.cluster_resource_namespace,
            )
        )

    async def refresh(self) -> timedelta:
        """One look: renew if due, re-register; returns how long until the next look."""
        try:
            material = await self.ensure()
            await self.register(material)
        except (KubeError, ServingError) as e:
            log.error("webhook serving certificate: %s", e)
            return timedelta(seconds=30)
        return webhook_tls.next_check(material, now=self.rt.clock(), most=RECHECK)
