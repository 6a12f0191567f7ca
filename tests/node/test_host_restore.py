"""`node-down` leaves the host as `node-up` found it (what `make lab-down` runs first, too).

The real node changes the shared machine: the kubelet sets kernel sysctls, kube-proxy and the
lab write iptables chains, CNI adds a bridge and veths, containerd and the kubelet mount things.
This test stops the node, records the host (`labhost.snapshot`: those sysctls, `iptables-save`,
`ip6tables-save`, `ip link`, /proc/mounts), starts the node and runs a Pod behind a Service (so
every part has done its work), checks that the host did change, stops the node, and compares.
It stops the node others may use, so it is marked ``node_restart`` and `make test` runs it alone,
last; it starts the node again afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import labhost
from tests.lab.labenv import Lab
from tests.lab.waits import wait_for
from tests.node.conftest import IMAGE, IMAGE_ARCHIVE

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.node_restart


def labctl(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.lab.labctl", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"labctl {' '.join(args)}:\n{result.stdout}{result.stderr}"


def load_image() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.lab.labnode", "load-image", str(IMAGE_ARCHIVE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def differences(before: dict[str, object], after: dict[str, object]) -> list[str]:
    found = []
    for key in before:
        if before[key] != after[key]:
            if isinstance(before[key], dict):
                old, new = before[key], after[key]
                assert isinstance(old, dict) and isinstance(new, dict)
                changed = {
                    k: (old.get(k), new.get(k))
                    for k in old.keys() | new.keys()
                    if old.get(k) != new.get(k)
                }
                found.append(f"{key}: {changed}")
            else:
                old_lines, new_lines = set(before[key]), set(after[key])  # type: ignore[call-overload]
                gone, new = sorted(old_lines - new_lines), sorted(new_lines - old_lines)
                found.append(f"{key}: gone {gone}, new {new}")
    return found


@pytest.fixture
def node_restored(node: str) -> Iterator[str]:
    yield node
    labctl("node-up")  # leave the node as the session found it
    load_image()


def test_node_down_restores_the_host(lab: Lab, node_restored: str, namespace: str) -> None:
    labctl("node-down")
    before = labhost.snapshot()
    labctl("node-up")
    load_image()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "solver", "namespace": namespace, "labels": {"app": "restore"}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "solver",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "args": [
                        "solve-http01",
                        "--domain=restore.lab.test",
                        "--token=t",
                        "--key-authorization=t.k",
                    ],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8089}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "solver", "namespace": namespace},
        "spec": {"selector": {"app": "restore"}, "ports": [{"port": 80, "targetPort": 8089}]},
    }
    lab.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod, service]}),
    )

    def ready() -> bool:
        got = json.loads(lab.kubectl("-n", namespace, "get", "pod", "solver", "-o", "json"))
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in got.get("status", {}).get("conditions") or []
        )

    wait_for(ready, timeout=90, describe="the Pod on the node to be Ready")
    during = labhost.snapshot()
    changed = differences(before, during)
    # The comparison below can only fail if the node changes what is compared: it does.
    assert any(c.startswith("iptables") for c in changed), changed
    assert any(c.startswith("links") for c in changed), changed
    assert any(c.startswith("mounts") for c in changed), changed
    labctl("node-down")
    after = labhost.snapshot()
    assert not differences(before, after), "\n".join(differences(before, after))
