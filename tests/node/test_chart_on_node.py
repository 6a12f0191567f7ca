"""The chart installed by helm on the lab's real node: the operator runs as a Pod, for real.

One release per module, in a namespace that enforces the `restricted` Pod Security level, serving
only that namespace (the lab is shared). The operator's image is the one `make image` built,
never pulled. Its Issuer reaches Pebble as a Pod must, at the host's bridge address (the name
`pebble` resolves there through the node's DNS relay, and Pebble's certificate names it); solver
Pods are real containers of the same image, reached by the lab's ingress at their pod IPs.

The tests run in file order and share the release: installed and Ready, then a certificate
issued through a real solver Pod, then the operator Pod deleted in the middle of an order, then
a DNS-01 certificate through the lab's BIND (reached by the Pod through the node's relay), then
the Pod Security refusal of a root Pod, last `helm uninstall`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.chart import render, workload
from tests.lab import manifests
from tests.lab.labenv import Lab
from tests.lab.labparts import BIND_PORT
from tests.lab.nodenet import BRIDGE_ADDRESS
from tests.lab.waits import wait_for
from tests.node.conftest import IMAGE_ARCHIVE, image_id
from tests.node.release import (
    JSON,
    TIMEOUT,
    Release,
    certificate,
    condition,
    events,
    is_ready,
    kubectl_json,
    metrics,
    operator_pods,
    pebble_issuer,
    stamp,
    wait_ready_certificate,
)
from tests.node.release import release as make_release

BIND_FROM_PODS = f"{BRIDGE_ADDRESS}:{BIND_PORT}"


@pytest.fixture(scope="module")
def release(
    lab: Lab, node: str, helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    folder = tmp_path_factory.mktemp("node-chart")
    # The DNS-01 check asks the lab's BIND where a Pod reaches it: through the node's relay.
    bind = {"nameservers": [BIND_FROM_PODS]}
    yield from make_release(lab, helm, folder, "node-chart", dns01=bind)


def ready_pod(lab: Lab, release: Release) -> JSON | None:
    pods = operator_pods(lab, release)
    ready = [p for p in pods if is_ready(p)]
    return ready[0] if len(pods) == 1 and ready else None


# The tests, in order.


def test_helm_install_runs_the_operator_as_a_ready_pod(
    lab: Lab, node: str, helm: Path, release: Release
) -> None:
    started = time.monotonic()
    release.install(helm, lab)
    print(f"\nhelm install --wait took {time.monotonic() - started:.1f}s")
    deployment = kubectl_json(lab, "-n", release.namespace, "get", "deployment", release.name)
    assert condition(deployment, "Available").get("status") == "True", deployment.get("status")
    pod = wait_for(lambda: ready_pod(lab, release), timeout=TIMEOUT, describe="operator Pod Ready")
    assert pod["spec"]["nodeName"] == node
    status = pod["status"]["containerStatuses"][0]
    assert status["imageID"] == image_id(), status
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
    assert "acmebridge_" in metrics(pod)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def apiserver_dials_kubelets_by_address(lab: Lab) -> bool:
    """Whether the lab's running kube-apiserver has --kubelet-preferred-address-types (labparts):
    without it, it dials the Node's name `lab-kubelet`, which resolves nowhere."""
    record = json.loads((Path(lab.env["LAB_DIR"]) / "run" / "kube-apiserver.pid").read_text())
    argv = Path(f"/proc/{record['pid']}/cmdline").read_bytes().split(b"\0")
    return any(arg.startswith(b"--kubelet-preferred-address-types=InternalIP") for arg in argv)


def test_kubectl_logs_and_exec_reach_the_kubelet(lab: Lab, release: Release) -> None:
    if not apiserver_dials_kubelets_by_address(lab):
        pytest.skip(
            "the lab's kube-apiserver was started before it dialled kubelets by address "
            "(--kubelet-preferred-address-types): `kubectl logs` reaches the node from the lab's "
            "next start (`make lab-down lab-up` when nobody else uses the lab)"
        )
    pod = ready_pod(lab, release)
    assert pod is not None
    name = pod["metadata"]["name"]
    logs = lab.kubectl("-n", release.namespace, "logs", name)
    # The operator's own first line, as the container wrote it (not kopf's).
    assert f"starting: namespaces {release.namespace}, standalone" in logs
    # No shell in the image: the exec runs the image's Python.
    uid = lab.kubectl(
        "-n", release.namespace, "exec", name, "--", "python", "-c", "import os; print(os.getuid())"
    )
    assert uid.strip() == "65532"


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
    # and is gone once the certificate is issued: the kubelet stopped it ("Killing").
    wait_for(
        lambda: (
            not kubectl_json(lab, "-n", ns, "get", "pods", "-l", "acmebridge.io/solver")["items"]
        ),
        timeout=60,
        describe="the solver Pod to be removed",
    )

    def solver_events() -> list[JSON]:
        return [
            e
            for e in kubectl_json(lab, "-n", ns, "get", "events")["items"]
            if e["involvedObject"]["kind"] == "Pod"
            and "solver" in e["involvedObject"]["name"]
            and e["reason"] in ("Pulled", "Started", "Killing")
        ]

    found = wait_for(
        lambda: (e := solver_events()) and {"Started", "Killing"} <= {x["reason"] for x in e} and e,
        timeout=30,
        describe=lambda: f"the kubelet's Started and Killing events: {solver_events()}",
    )
    assert all(e["source"].get("component") == "kubelet" for e in found)


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


def test_a_dns01_certificate_is_issued_from_the_pod_through_the_labs_bind(
    lab: Lab, release: Release
) -> None:
    """RFC 2136 updates from the operator's Pod reach BIND through the node's relay; Pebble
    validates through BIND on the host; the operator's own check asks BIND as the Pod sees it."""
    ns = release.namespace
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(manifests.tsig_secret(ns, lab.env)))
    solver = manifests.dns01_solver({**lab.env, "BIND_ADDR": BIND_FROM_PODS})
    issuer = pebble_issuer(lab, ns, "bind")
    issuer["spec"]["acme"]["solvers"] = [solver]
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(issuer))
    name = f"n{ns.rsplit('-', 1)[1]}.{lab.env['BIND_ZONE']}"
    cert = certificate(ns, "dns", issuer="bind")
    cert["spec"]["dnsNames"] = [f"*.{name}", name]
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(cert))
    done = wait_ready_certificate(lab, ns, "dns")
    secret = kubectl_json(lab, "-n", ns, "get", "secret", done["spec"]["secretName"])
    assert secret["type"] == "kubernetes.io/tls"
    log = (Path(lab.env["LAB_DIR"]) / "logs" / "named.log").read_text(errors="replace")
    assert f"_acme-challenge.{name}" in log, "BIND never saw the challenge record"


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
