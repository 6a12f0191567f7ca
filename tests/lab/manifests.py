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


def dns01_solver(env: Mapping[str, str], *, secret: str = "tsig", **extra: Any) -> dict[str, Any]:
    """A ``dns01.rfc2136`` solver for the lab's BIND, signed with the lab's TSIG key, whose
    secret is in the Secret ``secret`` (``tsig_secret``)."""
    rfc2136 = {
        "nameserver": env["BIND_ADDR"],
        "tsigKeyName": env["BIND_TSIG_NAME"],
        "tsigAlgorithm": env["BIND_TSIG_ALGORITHM"],
        "tsigSecretSecretRef": {"name": secret, "key": "secret"},
    }
    return {"dns01": {"rfc2136": rfc2136, **extra}}


def tsig_secret(
    namespace: str, env: Mapping[str, str], *, name: str = "tsig", value: str | None = None
) -> dict[str, Any]:
    """The Secret holding the TSIG key's secret (base64 text, as BIND's key file has it)."""
    text = value if value is not None else env["BIND_TSIG_SECRET"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"secret": base64.b64encode(text.encode()).decode()},
    }


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
