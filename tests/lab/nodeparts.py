"""The real node's processes: how each starts and how to tell that it is ready.

Like labparts for the lab itself, this only describes (labnode launches them in stages): the
relay that lets Pods reach the lab's loopback servers, containerd, the kubelet, kube-proxy and
kube-scheduler. Standard library only.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Sequence

from tests.lab import labparts, labprobes, labproc
from tests.lab.labparts import Component
from tests.lab.nodelayout import KUBE_PROXY_HEALTH, NODE_LABEL, NodeLayout
from tests.lab.nodenet import BRIDGE_ADDRESS, NODE_NAME


def component(name: str, argv: Sequence[str], probe: labprobes.Probe, timeout: float) -> Component:
    return Component(name=name, argv=tuple(argv), probe=probe, timeout=timeout)


def relay_ports(apiserver_port: int) -> list[str]:
    """What the relay forwards over TCP, as ``--tcp`` takes it: the API server (also on 443,
    the `kubernetes` Service's port), Pebble, the ingress, BIND, step-ca and the AIA server."""
    from tests.lab import labstepca

    return [
        f"443:{apiserver_port}",
        str(apiserver_port),
        *(
            str(p)
            for p in (
                labparts.PEBBLE_ACME_PORT,
                labparts.PEBBLE_MGMT_PORT,
                labparts.HTTP01_PORT,
                labparts.BIND_PORT,
                labstepca.STEPCA_PORT,
                labstepca.AIA_PORT,
            )
        ),
    ]


def relay(node: NodeLayout, apiserver_port: int) -> Component:
    python = node.lab.venv_bin / "python"
    argv = [
        str(python) if python.exists() else "python3",
        "-m",
        "tests.lab.labrelay",
        "--listen",
        BRIDGE_ADDRESS,
        # The kubelet's clusterDNS, from challtestsrv; and BIND's own port (DNS-01: its zones,
        # RFC 2136 updates), so an Issuer in a Pod names BIND as the host sees it.
        "--dns",
        f"53:{labparts.DNS_PORT}",
        "--dns",
        str(labparts.BIND_PORT),
    ]
    for port in relay_ports(apiserver_port):
        argv += ["--tcp", port]

    def probe() -> str | None:
        try:
            with socket.create_connection((BRIDGE_ADDRESS, apiserver_port), timeout=0.5):
                return None
        except OSError as error:
            return f"nothing answers on {BRIDGE_ADDRESS}:{apiserver_port}: {error}"

    return component("labrelay", argv, probe, 20)


def containerd(node: NodeLayout) -> Component:
    def probe() -> str | None:
        result = subprocess.run(
            ["ctr", "--address", str(node.socket), "version"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return None if result.returncode == 0 else f"ctr version: {result.stderr.strip()}"

    argv = ["containerd", "--config", str(node.containerd / "config.toml")]
    return component("containerd", argv, probe, 30)


def kubelet(node: NodeLayout, ready: labprobes.Probe) -> Component:
    argv = [
        str(node.lab.bin / "kubelet"),
        f"--config={node.kubelet_pki / 'config.json'}",
        f"--kubeconfig={node.pki / 'kubelet.kubeconfig'}",
        f"--hostname-override={NODE_NAME}",
        # Its InternalIP: where the API server dials it for logs and exec (labparts'
        # --kubelet-preferred-address-types puts InternalIP first; the name does not resolve).
        f"--node-ip={BRIDGE_ADDRESS}",
        f"--node-labels={NODE_LABEL}=kubelet",
        f"--root-dir={node.kubelet}",
        f"--cert-dir={node.kubelet_pki}",
        "--v=1",
    ]
    return component("kubelet", argv, ready, 90)


def kube_proxy(node: NodeLayout) -> Component:
    argv = [str(node.lab.bin / "kube-proxy"), f"--config={node.pki / 'kube-proxy-config.json'}"]
    probe = labprobes.expect_ok(f"http://127.0.0.1:{KUBE_PROXY_HEALTH}/healthz")
    return component("kube-proxy", argv, probe, 60)


def kube_scheduler(node: NodeLayout) -> Component:
    port = labproc.free_port()
    argv = [
        str(node.lab.bin / "kube-scheduler"),
        f"--kubeconfig={node.lab.kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
    ]
    probe = labprobes.expect_ok(f"https://127.0.0.1:{port}/healthz", verify=False)
    return component("kube-scheduler", argv, probe, 60)
