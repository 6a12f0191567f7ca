"""The real node's names, ports and files: what every part of it (tests/lab/node*.py) shares.

Constants, the node's error, and where it keeps its state under ``.lab/node``; nothing here
starts anything. Standard library only (`labctl down` runs without the venv).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.lab.labparts import Layout

CGROUP = "acmebridge-lab"
PAUSE_IMAGE = "localhost/acmebridge-lab/pause:1"
NODE_LABEL = "acmebridge.io/lab-node"
# The kubernetes Service's EndpointSlice, written by the node (the lab's API server runs with
# --endpoint-reconciler-type=none because its only address, 127.0.0.1, is not a valid endpoint).
API_SLICE = "kubernetes-lab-node"
SLICE_MANAGER = "acmebridge-lab-node"
FORWARD_GUARD = "ACMEBRIDGE-LAB-FWD"
KUBE_PROXY_HEALTH = 10256
KUBELET_HEALTH = 10248
KUBELET_PORT = 10250
PROCESSES = ("containerd", "labrelay", "kubelet", "kube-proxy", "kube-scheduler")
CNI_BIN = Path("/usr/lib/cni")


class NodeError(Exception):
    """The node could not be brought to the requested state; the message says why."""


@dataclass(frozen=True)
class NodeLayout:
    """Where the node keeps its files, under ``.lab/node``."""

    lab: Layout

    @property
    def root(self) -> Path:
        return self.lab.lab / "node"

    @property
    def run(self) -> Path:
        """Pidfiles of the node's processes."""
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pki(self) -> Path:
        """Client certificates, kubeconfigs and kube-proxy's configuration."""
        return self.root / "pki"

    @property
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet(self) -> Path:
        """The kubelet's --root-dir."""
        return self.root / "kubelet"

    @property
    def kubelet_pki(self) -> Path:
        """The kubelet's --cert-dir and its configuration file."""
        return self.root / "kubelet-pki"

    @property
    def pod_logs(self) -> Path:
        """The containers' output, as the kubelet writes it (podLogsDir)."""
        return self.root / "pod-logs"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def host_record(self) -> Path:
        return self.root / "host-before.json"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def folders(self) -> tuple[Path, ...]:
        """Every folder the node writes to, made at start."""
        return (
            self.run,
            self.logs,
            self.pki,
            self.containerd,
            self.cni_conf,
            self.cni_ipam,
            self.kubelet,
            self.kubelet_pki,
            self.pod_logs,
            self.images,
        )

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def say(message: str) -> None:
    print(message, flush=True)
