"""No secret leaves the Secrets it lives in: a scan of everything else after a real issuance.

The operator runs at debug level (``--verbose``, where the ACME library logs every JWS payload it
signs), issues a certificate through Pebble, and registers an Issuer with an external account
binding (the lab's Pebble knows no EAB key, so the CA refuses it after the binding was computed
and sent: the whole EAB path runs). Then every place a secret must never appear is read: the
operator's log, every Event, the metadata and status of Certificates and Issuers, the solver
Pods, Services and Ingresses (captured while they existed), ConfigMaps, the metadata of every
Secret, and ``/metrics``. The needles are the issued ``tls.key``, the ACME account key, and the
EAB MAC key, in every spelling ``tests/hostile/leaks.py`` derives, plus any PEM private key
header. The scan is first pointed at the Secrets themselves, to show that it finds what it looks
for.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from typing import Any

import pytest

from acmebridge.adapters.kube import Kube, core_path, group_path, ours_path
from tests.hostile import leaks
from tests.lab.conftest import acme_spec, make_certificate, make_issuer
from tests.lab.operator_proc import OperatorProcess
from tests.lab.waits import condition, get_object, wait_for

pytestmark = pytest.mark.lab

GROUP, VERSION = "acmebridge.io", "v1alpha1"
TIMEOUT = 90


def _solver_paths(namespace: str) -> dict[str, str]:
    return {
        "Pod": core_path("pods", namespace),
        "Service": core_path("services", namespace),
        "Ingress": group_path("networking.k8s.io", "v1", "ingresses", namespace),
        "Secret": core_path("secrets", namespace),
    }


def _metadata_only(obj: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": obj.get("metadata"), "type": obj.get("type")}


def _written(obj: dict[str, Any]) -> dict[str, Any]:
    """What the operator writes to one of its own objects: metadata and status, not the spec."""
    return {"metadata": obj.get("metadata"), "status": obj.get("status")}


def test_no_key_material_outside_secrets(
    lab: Any, k: Kube, namespace: str, operator: OperatorProcess
) -> None:
    hmac_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=")
    k.create(
        core_path("secrets", namespace),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "eab"},
            "type": "Opaque",
            "data": {"secret": base64.b64encode(hmac_key).decode()},
        },
    )
    make_issuer(k, namespace, "pebble", acme_spec(lab))
    eab = {"keyID": "kid-leak-test", "keySecretRef": {"name": "eab", "key": "secret"}}
    make_issuer(
        k,
        namespace,
        "with-eab",
        acme_spec(lab, privateKeySecretRef={"name": "eab-account"}, externalAccountBinding=eab),
    )
    make_certificate(k, namespace, "web", issuerRef={"name": "pebble"}, dnsNames=["leak.lab.test"])

    # Capture the short-lived objects (solver Pod, Service, Ingress, pending-key Secret's
    # metadata) while the issuance runs.
    seen: dict[str, dict[str, Any]] = {}

    def issued() -> dict[str, Any] | None:
        for kind, path in _solver_paths(namespace).items():
            for obj in k.list(path):
                seen[f"{kind} {obj['metadata']['name']} v{obj['metadata']['resourceVersion']}"] = (
                    _metadata_only(obj) if kind == "Secret" else obj
                )
        cert = get_object(k.api, GROUP, VERSION, "certificates", namespace, "web")
        ready = condition(cert, "Ready")
        return cert if ready and ready.get("status") == "True" else None

    started = time.monotonic()
    wait_for(issued, timeout=TIMEOUT, interval=0.1, describe="Certificate web to be issued")
    print(f"issued in {time.monotonic() - started:.1f}s")

    def eab_refused() -> dict[str, Any] | None:
        body = get_object(k.api, GROUP, VERSION, "issuers", namespace, "with-eab")
        ready = condition(body, "Ready")
        return body if ready and ready.get("status") == "False" else None

    refused = wait_for(eab_refused, timeout=TIMEOUT, describe="the EAB Issuer to be refused")
    # Pebble refused the binding's key ID: the binding was computed and sent.
    assert "kid" in condition(refused, "Ready")["message"]  # type: ignore[index]
    assert any(kind.startswith("Pod ") for kind in seen), "the solver Pod was never seen"

    # The needles, from the Secrets that hold them.
    tls = k.get(core_path("secrets", namespace, "web-tls"))
    account = k.get(core_path("secrets", namespace, "acme-account"))
    eab_account = k.get(core_path("secrets", namespace, "eab-account"))
    assert tls and account and eab_account
    needles = leaks.generic_needles()
    needles.update(leaks.key_needles("tls.key", base64.b64decode(tls["data"]["tls.key"])))
    for name, secret in (("account key", account), ("EAB account key", eab_account)):
        needles.update(leaks.key_needles(name, base64.b64decode(secret["data"]["tls.key"])))
    needles.update(leaks.value_needles("EAB MAC key", hmac_key))

    # The scan finds them where they belong.
    for secret, what in ((tls, "tls.key"), (account, "account key")):
        found = leaks.scan(json.dumps(secret), needles, where="its own Secret")
        assert any(f.needle.startswith(what) for f in found), f"the scan misses the {what}"
    eab_secret = k.get(core_path("secrets", namespace, "eab"))
    found = leaks.scan(json.dumps(eab_secret), needles, where="its own Secret")
    assert any(f.needle.startswith("EAB MAC key") for f in found), "the scan misses the EAB key"

    # Everywhere else, nothing.
    texts: list[tuple[str, str]] = [("the operator's log", operator.log_text())]
    texts.append(("/metrics", operator.metrics()))
    texts += [(f"{where} (while it existed)", json.dumps(obj)) for where, obj in seen.items()]
    for e in k.list(core_path("events", namespace)):
        texts.append((f"Event {e['reason']} on {e['involvedObject']['name']}", json.dumps(e)))
    for plural in ("certificates", "issuers"):
        for obj in k.list(ours_path(plural, namespace)):
            texts.append((f"{plural}/{obj['metadata']['name']}", json.dumps(_written(obj))))
    for kind, path in _solver_paths(namespace).items():
        for obj in k.list(path):
            body = _metadata_only(obj) if kind == "Secret" else obj
            texts.append((f"{kind} {obj['metadata']['name']}", json.dumps(body)))
    for obj in k.list(core_path("configmaps", namespace)):
        texts.append((f"ConfigMap {obj['metadata']['name']}", json.dumps(obj)))
    found = leaks.scan_all(texts, needles)
    assert not found, "\n".join(str(f) for f in found[:10])

    # The log really is the debug log: it shows the JWS payloads the ACME library signed,
    # the EAB request among them (with its MAC, which is not the key).
    log = operator.log_text()
    assert "acme.client: JWS payload" in log
    assert "externalAccountBinding" in log


def test_kopf_never_watches_secrets(k: Kube, namespace: str, operator: OperatorProcess) -> None:
    """kopf would copy a watched Secret's data (keys included) into an annotation: only the
    operator's own resources, CRDs and namespaces are watched."""

    def watches() -> set[str]:
        return set(re.findall(r"Starting the watch-stream for ([a-z0-9.]+)", operator.log_text()))

    ours = {"certificates.v1alpha1.acmebridge.io", "issuers.v1alpha1.acmebridge.io"}
    wait_for(lambda: watches() >= ours, timeout=30, describe="the operator's watches to start")
    watched = watches()
    assert watched <= {
        "certificates.v1alpha1.acmebridge.io",
        "issuers.v1alpha1.acmebridge.io",
        "clusterissuers.v1alpha1.acmebridge.io",
        "customresourcedefinitions.v1.apiextensions.k8s.io",
        "namespaces.v1",
        # Annotated Ingresses ask for Certificates (docs/ingress.md): metadata, never keys.
        "ingresses.v1.networking.k8s.io",
    }
    assert not any(w.startswith("secrets") for w in watched)
