"""Manifests of acmebridge objects for the lab: Issuers for the lab's Pebble, and Certificates.

One place for them, so that the lab tests, the chart tests and the benchmark build the same
objects the same way.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

API_VERSION = "acmebridge.io/v1alpha1"


def b64_file(path: str | Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def pebble_acme(env: Mapping[str, str], **overrides: Any) -> dict[str, Any]:
    """``spec.acme`` for the lab's Pebble: trusted over TLS, HTTP-01 through the lab's class."""
    spec: dict[str, Any] = {
        "server": env["PEBBLE_DIRECTORY_URL"],
        "caBundle": b64_file(env["PEBBLE_TLS_CA"]),
        "email": "pki@lab.test",
        "privateKeySecretRef": {"name": "acme-account"},
        "solvers": [{"http01": {"ingress": {"ingressClassName": "lab"}}}],
    }
    spec.update(overrides)
    return spec


def issuer(namespace: str | None, name: str, acme: Mapping[str, Any]) -> dict[str, Any]:
    """An Issuer, or a ClusterIssuer when ``namespace`` is None."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Issuer" if namespace else "ClusterIssuer",
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        "spec": {"acme": dict(acme)},
    }


def certificate(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """A Certificate; ``secretName`` defaults to ``<name>-tls``."""
    spec.setdefault("secretName", f"{name}-tls")
    return {
        "apiVersion": API_VERSION,
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ingress(
    namespace: str,
    name: str,
    tls: list[dict[str, Any]],
    *,
    annotations: Mapping[str, str] | None = None,
    ingress_class: str = "lab",
) -> dict[str, Any]:
    """An Ingress routing each TLS host to Service ``web``, with certificate annotations."""
    hosts = [host for entry in tls for host in entry.get("hosts", [])]
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations or {})},
        "spec": {
            "ingressClassName": ingress_class,
            "tls": tls,
            "rules": [
                {
                    "host": host,
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
                for host in hosts
            ],
        },
    }
