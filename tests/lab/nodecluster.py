"""What the real node writes to the lab's API server, and reads back: the controllers' jobs.

The lab runs neither the node-lifecycle controller nor the API server's endpoint reconciler, so
the node does their part itself: it publishes the `kubernetes` Service's endpoint (the relay),
removes the not-ready taint its kubelet registers with, makes the node-agent stand-in's Node
unschedulable, and deletes its Node when it stops. Through the lab's kubectl, as the admin.
Standard library only.
"""

from __future__ import annotations

import json
import subprocess

from tests.lab import labparts
from tests.lab.labparts import Layout
from tests.lab.nodelayout import API_SLICE, SLICE_MANAGER, NodeError
from tests.lab.nodenet import BRIDGE_ADDRESS, NODE_NAME

# The node-agent stand-in's Node (tests/lab/standins/node_agent.py).
AGENT_NODE = "lab-node"


def kubectl(layout: Layout, *args: str, stdin: str | None = None, check: bool = True) -> str:
    argv = [str(layout.bin / "kubectl"), f"--kubeconfig={layout.kubeconfig}", *args]
    result = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=labparts.child_env(layout),
    )
    if check and result.returncode != 0:
        raise NodeError(f"kubectl {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result.stdout


def node_ready(layout: Layout) -> str | None:
    """None when the Node is Ready; otherwise why not."""
    out = kubectl(layout, "get", "node", NODE_NAME, "-o", "json", check=False)
    if not out:
        return f"Node {NODE_NAME} is not registered"
    conditions = {c["type"]: c for c in json.loads(out).get("status", {}).get("conditions", [])}
    ready = conditions.get("Ready", {})
    if ready.get("status") != "True":
        return f"Node {NODE_NAME} is not Ready: {ready.get('message', 'no Ready condition')}"
    return None


def publish_api_endpoint(layout: Layout, apiserver_port: int) -> None:
    """The `kubernetes` Service's endpoint: the relay at the bridge address (in-cluster config)."""
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": API_SLICE,
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [BRIDGE_ADDRESS], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": apiserver_port, "protocol": "TCP"}],
    }
    kubectl(
        layout,
        "apply",
        "--server-side",
        "--field-manager=acmebridge-lab-node",
        "-f",
        "-",
        stdin=json.dumps(endpoint_slice),
    )


def untaint(layout: Layout) -> None:
    """What the node-lifecycle controller does once a new Node is Ready (the lab runs none):
    the kubelet registers its Node with this taint, and the scheduler honours it."""
    kubectl(
        layout, "taint", "node", NODE_NAME, "node.kubernetes.io/not-ready:NoSchedule-", check=False
    )


def yield_node_agent(layout: Layout) -> None:
    """The node-agent stand-in's Node becomes unschedulable: the scheduler places Pods here."""
    if kubectl(layout, "get", "node", AGENT_NODE, "-o", "name", check=False):
        kubectl(
            layout,
            "patch",
            "node",
            AGENT_NODE,
            "--type=merge",
            "-p",
            '{"spec": {"unschedulable": true}}',
        )


def remove_objects(layout: Layout) -> None:
    """The Node and the API endpoint; skipped when the API server is already gone."""
    if not layout.kubeconfig.exists():
        return
    for args in (
        ("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false"),
        ("-n", "default", "delete", "endpointslice", API_SLICE, "--ignore-not-found"),
    ):
        try:
            kubectl(layout, *args, check=False)
        except (subprocess.TimeoutExpired, OSError):
            return
