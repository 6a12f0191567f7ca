"""Prepares the host for the real node: checks what it needs, makes its bridge and cgroups.

`check` refuses to start when something is missing (root, a Debian package, a binary, a cgroup
hierarchy, a port, a leftover bridge) and says what to do; `make_bridge` and `make_cgroups`
make what the CNI plugin and the kubelet expect to exist. What they change is undone by
`labhost.restore` (the node records the host first). Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.lab import labproc
from tests.lab.nodelayout import (
    CGROUP,
    CNI_BIN,
    FORWARD_GUARD,
    KUBE_PROXY_HEALTH,
    KUBELET_HEALTH,
    NodeError,
    NodeLayout,
)
from tests.lab.nodenet import BRIDGE, BRIDGE_ADDRESS, BRIDGE_PREFIX_LENGTH

# Executables the node needs from the machine, and the package each comes from.
HOST_TOOLS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "nft": "nftables",
    "conntrack": "conntrack",
}
CNI_PLUGINS = ("bridge", "host-local", "loopback")
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "pause")


def missing_host_tools() -> list[str]:
    """The Debian packages whose executables are missing (hack/node/packages.sh installs them)."""
    packages = {pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None}
    if not all((CNI_BIN / plugin).exists() for plugin in CNI_PLUGINS):
        packages.add("containernetworking-plugins")
    return sorted(packages)


def check(node: NodeLayout) -> None:
    """Raises NodeError naming the first thing the node cannot start without."""
    if os.geteuid() != 0:
        raise NodeError("the node needs root (network namespaces, iptables, mounts, cgroups)")
    packages = missing_host_tools()
    if packages:
        raise NodeError(
            f"missing Debian packages: {', '.join(packages)}; `make node-up` installs them "
            "(hack/node/packages.sh node)"
        )
    missing = [name for name in NODE_BINARIES if not (node.lab.bin / name).is_file()]
    if missing:
        raise NodeError(f"{', '.join(missing)} missing from {node.lab.bin}: run `make lab-bin`")
    if (
        not Path("/sys/fs/cgroup/memory").is_dir()
        and not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        raise NodeError("no cgroup hierarchy with a memory controller under /sys/fs/cgroup")
    taken = [
        f"127.0.0.1:{port}"
        for port in (KUBE_PROXY_HEALTH, KUBELET_HEALTH)
        if labproc.port_in_use(port)
    ]
    if taken:
        raise NodeError(f"ports taken by a process that is not this node: {', '.join(taken)}")
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        owner = bridge_owner()
        raise NodeError(
            f"the interface {BRIDGE} belongs to a running node"
            + (f" of {owner}" if owner else "")
            + " (`make node-down` in that checkout)"
        )


def bridge_owner() -> Path | None:
    """The node folder that made the bridge (its alias), None when unknown or no bridge."""
    try:
        alias = Path(f"/sys/class/net/{BRIDGE}/ifalias").read_text().strip()
    except OSError:
        return None
    return Path(alias) if alias.startswith("/") else None


def node_processes_alive(owner: Path | None) -> bool:
    """Whether the node that made the bridge still runs.

    With an owner, its pidfiles say so exactly; without one (a bridge made before owners were
    recorded), any kubelet, kube-proxy or lab containerd on the machine counts as alive, so a
    node whose owner is unknown is never taken down by mistake.
    """
    if owner is not None:
        return any(p.alive() for p in labproc.recorded(owner / "run"))
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = stat.read_text().strip()
        except OSError:
            continue
        if name in ("kubelet", "kube-proxy", "kube-scheduler", "containerd"):
            return True
    return False


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


def _iptables(*args: str) -> None:
    result = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"iptables {' '.join(args)} failed: {result.stderr.strip()}")


def make_bridge(node_dir: Path) -> None:
    """The bridge with the host's address, forwarding on it alone, and the guard that keeps
    the Pods' traffic on it (the CNI bridge plugin adds the Pods' veths to it)."""
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{BRIDGE_ADDRESS}/{BRIDGE_PREFIX_LENGTH}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    # The owner, so a node that died with its machine (processes gone, bridge left) can be
    # recognised and cleaned up by whichever checkout starts a node next.
    _ip("link", "set", BRIDGE, "alias", str(node_dir))
    # Per interface, not net.ipv4.ip_forward: a Pod's packet to a Service address comes back
    # out of the bridge after kube-proxy's DNAT; nothing else on the host starts forwarding.
    Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding").write_text("1\n")
    _iptables("-N", FORWARD_GUARD)
    _iptables("-A", FORWARD_GUARD, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")
    _iptables("-A", FORWARD_GUARD, "!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP")
    _iptables("-I", "FORWARD", "1", "-j", FORWARD_GUARD)


def make_cgroups() -> None:
    """The kubelet's --cgroup-root, in every hierarchy (v1 cpuset needs its cpus and mems)."""
    root = Path("/sys/fs/cgroup")
    for hierarchy in sorted(root.iterdir()):
        if not hierarchy.is_dir() or not (hierarchy / "cgroup.procs").exists():
            continue
        folder = hierarchy / CGROUP
        folder.mkdir(exist_ok=True)
        for setting in ("cpuset.cpus", "cpuset.mems"):
            if (folder / setting).exists() and not (folder / setting).read_text().strip():
                (folder / setting).write_text((hierarchy / setting).read_text())
