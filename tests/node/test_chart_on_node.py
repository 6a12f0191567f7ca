"""The chart installed by helm on the lab's real node: the operator runs as a Pod, for real.

One release per module, in a namespace that enforces the `restricted` Pod Security level, serving
only that namespace (the lab is shared). The operator's image is the one `make image` built,
never pulled. Its Issuer reaches Pebble as a Pod must, at the host's bridge address (the name
`pebble` resolves there through the node's DNS relay, and Pebble's certificate names it); solver
Pods are real containers of the same image, reached by the lab's ingress at their pod IPs.

The tests run in file order and share the release: installed and Ready, then a certificate
issued through a real solver Pod, then the operator Pod deleted in the middle of an order, then
the Pod Security refusal of a root Pod, last `helm uninstall`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart import CHART, render, run_helm, workload
from tests.conftest import TEST_LABEL
from tests.lab.labenv import Lab
from tests.lab.waits import wait_for
from tests.node.conftest import IMAGE, IMAGE_ARCHIVE

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


def ready_pod(lab: Lab, release: Release) -> JSON | None:
    pods = operator_pods(lab, release)
    ready = [p for p in pods if condition(p, "Ready").get("status") == "True"]
    return ready[0] if len(pods) == 1 and ready else None


def wait_ready_certificate(lab: Lab, namespace: str, name: str) -> JSON:
    def ready() -> JSON | None:
        cert = kubectl_json(lab, "-n", namespace, "get", "certificate", name)
        return cert if condition(cert, "Ready").get("status") == "True" else None

    return wait_for(ready, timeout=TIMEOUT, describe=f"Certificate {namespace}/{name} Ready")


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def helm() -> Path:
    from tests.chart.chart import helm_binary

    found = helm_binary()
    assert found is not None, "helm is not built: `make lab-bin`"
    return found


@pytest.fixture(scope="module")
def release(
    lab: Lab, node: str, helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    suffix = secrets.token_hex(3)
    namespace = f"node-chart-{suffix}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {TEST_LABEL: "true", "pod-security.kubernetes.io/enforce": "restricted"},
        },
    }
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    repository, tag = IMAGE.rsplit(":", 1)
    values = tmp_path_factory.mktemp("node-chart") / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
                "namespaces": [namespace],
                "clusterResourceNamespace": namespace,
                "allowedACMEServers": [PEBBLE_FROM_PODS],
                # Where the lab's ingress listens; the Pod resolves names through the node's DNS.
                "http01": {"selfCheckPort": lab.http01_port},
                "backoffCapSeconds": 20,
            }
        )
    )
    rel = Release(f"acmebridge-{suffix}", namespace, values)
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


def certificate(namespace: str, name: str) -> JSON:
    return {
        "apiVersion": "acmebridge.io/v1alpha1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "secretName": f"{name}-tls",
            "issuerRef": {"name": "pebble"},
            "dnsNames": [f"{name}.{namespace}.node.lab.test"],
        },
    }


def events(lab: Lab, namespace: str, kind: str, name: str) -> list[JSON]:
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    items: list[JSON] = kubectl_json(
        lab, "-n", namespace, "get", "events", "--field-selector", selector
    )["items"]
    return items


# The tests, in order.


def test_helm_install_runs_the_operator_as_a_ready_pod(
    lab: Lab, node: str, helm: Path, release: Release
) -> None:
    started = time.monotonic()
    release.helm(
        helm,
        lab,
        "install",
        release.name,
        str(CHART),
        "-n",
        release.namespace,
        "--values",
        str(release.values),
        "--wait",
        "--timeout",
        "120s",
    )
    print(f"\nhelm install --wait took {time.monotonic() - started:.1f}s")
    deployment = kubectl_json(lab, "-n", release.namespace, "get", "deployment", release.name)
    assert condition(deployment, "Available").get("status") == "True", deployment.get("status")
    pod = wait_for(lambda: ready_pod(lab, release), timeout=TIMEOUT, describe="operator Pod Ready")
    assert pod["spec"]["nodeName"] == node
    status = pod["status"]["containerStatuses"][0]
    assert status["image"].endswith(IMAGE.split("/", 1)[1]), status["image"]
    container_started = stamp(status["state"]["running"]["startedAt"])
    ready_at = stamp(condition(pod, "Ready")["lastTransitionTime"])
    size_mb = IMAGE_ARCHIVE.stat().st_size / 1e6
    print(
        f"operator container start to Ready: {(ready_at - container_started).total_seconds():.0f}s"
        f" (target <= 5 s; 1 s resolution); image archive {size_mb:.0f} MB"
    )
    # Ready means the kubelet's readiness probe got kopf's /healthz; the metrics come straight
    # from the Pod's address on the lab's bridge.
    pod_ip = pod["status"]["podIP"]
    assert pod_ip.startswith("10.244.1."), pod_ip
    result = subprocess.run(
        ["curl", "-sf", "--max-time", "5", f"http://{pod_ip}:9402/metrics"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "acmebridge_" in result.stdout, result.stderr
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_a_certificate_is_issued_through_a_real_solver_pod(
    lab: Lab, node: str, release: Release
) -> None:
    ns = release.namespace
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(pebble_issuer(lab, ns, "pebble")))
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(certificate(ns, "web")))
    cert = wait_ready_certificate(lab, ns, "web")
    secret = kubectl_json(lab, "-n", ns, "get", "secret", cert["spec"]["secretName"])
    assert secret["type"] == "kubernetes.io/tls"
    # The solver ran as a container on the node (the kubelet started it, from the loaded image),
    # and is gone once the certificate is issued.
    solver_events = [
        e
        for e in kubectl_json(lab, "-n", ns, "get", "events")["items"]
        if e["involvedObject"]["kind"] == "Pod"
        and "solver" in e["involvedObject"]["name"]
        and e["reason"] in ("Pulled", "Started", "Killing")
    ]
    reasons = {e["reason"] for e in solver_events}
    assert {"Started", "Killing"} <= reasons, solver_events
    assert all(e["source"].get("component") == "kubelet" for e in solver_events)
    wait_for(
        lambda: (
            not kubectl_json(lab, "-n", ns, "get", "pods", "-l", "acmebridge.io/solver")["items"]
        ),
        timeout=60,
        describe="the solver Pod to be removed",
    )


def test_the_operator_pod_deleted_mid_order_is_replaced_and_the_order_resumes(
    lab: Lab, node: str, release: Release
) -> None:
    ns = release.namespace
    # The Pod is deleted as soon as the order exists: the replacement must resume that order
    # from the journal in status, not start a second one.
    old = ready_pod(lab, release)
    assert old is not None
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(certificate(ns, "resume")))

    def order_created() -> bool:
        return any(
            "created ACME order" in e.get("message", "")
            for e in events(lab, ns, "Certificate", "resume")
        )

    wait_for(order_created, timeout=TIMEOUT, describe="the order to be created")
    lab.kubectl("-n", ns, "delete", "pod", old["metadata"]["name"], "--wait=false")
    new = wait_for(
        lambda: (
            (p := ready_pod(lab, release)) and p["metadata"]["uid"] != old["metadata"]["uid"] and p
        ),
        timeout=TIMEOUT,
        describe="the Deployment's replacement Pod to be Ready",
    )
    assert new["spec"]["nodeName"] == node
    wait_ready_certificate(lab, ns, "resume")
    orders = {
        e["message"].split("created ACME order ", 1)[1].split()[0]
        for e in events(lab, ns, "Certificate", "resume")
        if "created ACME order" in e.get("message", "")
    }
    assert len(orders) == 1, f"more than one order at Pebble: {orders}"


def test_a_root_pod_of_the_chart_is_refused_by_pod_security(
    lab: Lab, helm: Path, release: Release
) -> None:
    docs = render(
        helm,
        {"podSecurityContext": {"runAsNonRoot": False, "runAsUser": 0}},
        release=release.name,
        namespace=release.namespace,
    )
    template = workload(docs)["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{release.name}-root", "namespace": release.namespace},
        "spec": template["spec"],
    }
    result = subprocess.run(
        [
            str(lab.bin / "kubectl"),
            f"--kubeconfig={lab.kubeconfig}",
            "create",
            "--dry-run=server",
            "-f",
            "-",
        ],
        input=json.dumps(pod),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **lab.env},
    )
    assert result.returncode != 0, "a root Pod was admitted under the restricted level"
    assert 'violates PodSecurity "restricted' in result.stderr, result.stderr
    assert "runAsNonRoot" in result.stderr or "runAsUser" in result.stderr, result.stderr


def test_helm_uninstall_leaves_no_pods_services_or_solver_objects(
    lab: Lab, helm: Path, release: Release
) -> None:
    ns = release.namespace
    release.helm(helm, lab, "uninstall", release.name, "-n", ns, "--wait", "--timeout", "60s")

    def leftovers() -> list[str]:
        found = []
        for kind in ("pods", "services", "ingresses"):
            for item in kubectl_json(lab, "-n", ns, "get", kind)["items"]:
                labels = item["metadata"].get("labels") or {}
                if labels.get("app.kubernetes.io/instance") == release.name or (
                    "acmebridge.io/solver" in labels
                ):
                    found.append(f"{kind}/{item['metadata']['name']}")
        return found

    wait_for(lambda: not leftovers(), timeout=60, describe=lambda: f"leftovers: {leftovers()}")
    # What stays, as docs/install.md says: the CRDs, the users' Certificates and their Secrets.
    assert kubectl_json(lab, "-n", ns, "get", "certificate", "web")["metadata"]["name"] == "web"
    assert kubectl_json(lab, "-n", ns, "get", "secret", "web-tls")["type"] == "kubernetes.io/tls"
