"""A release of the chart on the lab's real node, as the node tests install and read it.

One release per test module, in a fresh namespace that enforces the `restricted` Pod Security
level, serving only that namespace (the lab is shared), with the image `make image` built and
never pulled. Its Issuers reach Pebble as a Pod must: at the host's bridge address, by the name
`pebble` (the node's DNS relay resolves it there, and Pebble's certificate names it). Also the
readers the tests share: objects as JSON, a Pod's metrics from its address, a container's log
as the kubelet wrote it.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tests.chart.chart import CHART, run_helm
from tests.conftest import TEST_LABEL
from tests.lab.labenv import Lab
from tests.lab.waits import wait_for
from tests.node.conftest import IMAGE

JSON = dict[str, Any]
PEBBLE_FROM_PODS = "https://pebble:14000/dir"
TIMEOUT = 120


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    values: Path

    def helm(self, helm: Path, lab: Lab, *args: str) -> str:
        return run_helm(helm, *args, env={"KUBECONFIG": str(lab.kubeconfig)})

    def install(self, helm: Path, lab: Lab) -> None:
        self.helm(
            helm,
            lab,
            "install",
            self.name,
            str(CHART),
            "-n",
            self.namespace,
            "--values",
            str(self.values),
            "--wait",
            "--timeout",
            f"{TIMEOUT}s",
        )


def values(lab: Lab, namespace: str, **more: Any) -> JSON:
    repository, tag = IMAGE.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "namespaces": [namespace],
        "clusterResourceNamespace": namespace,
        "allowedACMEServers": [PEBBLE_FROM_PODS],
        # Where the lab's ingress listens; the Pod resolves names through the node's DNS.
        "http01": {"selfCheckPort": lab.http01_port},
        "backoffCapSeconds": 20,
        **more,
    }


def release(lab: Lab, helm: Path, folder: Path, prefix: str, **more: Any) -> Iterator[Release]:
    """A namespace and the values of a release in it; uninstalled and deleted afterwards.
    The test installs it (`Release.install`)."""
    suffix = secrets.token_hex(3)
    namespace = f"{prefix}-{suffix}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {TEST_LABEL: "true", "pod-security.kubernetes.io/enforce": "restricted"},
        },
    }
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    path = folder / "values.yaml"
    path.write_text(yaml.safe_dump(values(lab, namespace, **more)))
    rel = Release(f"acmebridge-{suffix}", namespace, path)
    try:
        yield rel
    finally:
        run_helm(
            helm,
            "uninstall",
            rel.name,
            "-n",
            namespace,
            "--ignore-not-found",
            env={"KUBECONFIG": str(lab.kubeconfig)},
        )
        lab.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def kubectl_json(lab: Lab, *args: str) -> JSON:
    out = lab.kubectl(*args, "-o", "json")
    return json.loads(out) if out.strip() else {}


def operator_pods(lab: Lab, release: Release) -> list[JSON]:
    selector = f"app.kubernetes.io/instance={release.name}"
    items = kubectl_json(lab, "-n", release.namespace, "get", "pods", "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def condition(obj: JSON, kind: str) -> JSON:
    found = [c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == kind]
    return found[0] if found else {}


def is_ready(pod: JSON) -> bool:
    return condition(pod, "Ready").get("status") == "True"


def wait_ready_certificate(lab: Lab, namespace: str, name: str) -> JSON:
    def ready() -> JSON | None:
        cert = kubectl_json(lab, "-n", namespace, "get", "certificate", name)
        return cert if condition(cert, "Ready").get("status") == "True" else None

    return wait_for(ready, timeout=TIMEOUT, describe=f"Certificate {namespace}/{name} Ready")


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def pebble_issuer(lab: Lab, namespace: str, name: str) -> JSON:
    ca = base64.b64encode(lab.pebble_tls_ca.read_bytes()).decode()
    return {
        "apiVersion": "acmebridge.io/v1alpha1",
        "kind": "Issuer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "acme": {
                "server": PEBBLE_FROM_PODS,
                "caBundle": ca,
                "privateKeySecretRef": {"name": f"{name}-account"},
                "solvers": [{"http01": {"ingress": {"ingressClassName": lab.ingress_class}}}],
            }
        },
    }


def certificate(namespace: str, name: str, issuer: str = "pebble") -> JSON:
    return {
        "apiVersion": "acmebridge.io/v1alpha1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "secretName": f"{name}-tls",
            "issuerRef": {"name": issuer},
            "dnsNames": [f"{name}.{namespace}.node.lab.test"],
        },
    }


def events(lab: Lab, namespace: str, kind: str, name: str) -> list[JSON]:
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    items: list[JSON] = kubectl_json(
        lab, "-n", namespace, "get", "events", "--field-selector", selector
    )["items"]
    return items


def metrics(pod: JSON, port: int = 9402) -> str:
    """The Pod's /metrics, fetched from its address on the lab's bridge."""
    result = subprocess.run(
        ["curl", "-sf", "--max-time", "5", f"http://{pod['status']['podIP']}:{port}/metrics"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"no metrics from {pod['metadata']['name']}: {result.stderr}"
    return result.stdout


def sample(text: str, name: str, labels: Mapping[str, str]) -> float:
    """One sample of a Prometheus text exposition; 0 when the series is absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            series, _, value = line.rpartition(" ")
            inner = series[len(name) :].strip("{}")
            if ",".join(sorted(inner.split(","))) == wanted:
                return float(value)
    return 0.0


def container_log(lab: Lab, pod: JSON, container: str = "operator") -> list[tuple[datetime, str]]:
    """The container's output as the kubelet wrote it (CRI format: time, stream, tag, line):
    `kubectl logs` reaches the node only in labs started with the API server flags for it."""
    meta = pod["metadata"]
    folder = Path(lab.env["LAB_DIR"]) / "node" / "pod-logs"
    pod_dir = folder / f"{meta['namespace']}_{meta['name']}_{meta['uid']}" / container
    lines = []
    for log in sorted(pod_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            when, _stream, _tag, text = [*line.split(" ", 3), "", "", ""][:4]
            # Nanoseconds: Python reads microseconds.
            seconds, _, fraction = when.rstrip("Z").partition(".")
            lines.append((stamp(f"{seconds}.{(fraction + '000000')[:6]}Z"), text))
    return lines
