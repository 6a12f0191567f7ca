"""What the real node changes on the host, recorded before it starts and undone after it stops.

The node (containerd, runc, the CNI plugins, kubelet, kube-proxy) touches the shared machine:
sysctls, iptables chains, network interfaces, mounts, cgroups and a few well-known folders.
`record` writes down the state of each before the node starts; `restore` puts back what
differs once its processes are gone. `snapshot` is what the host-restore test compares: the
sysctls the kubelet and kube-proxy set, `iptables-save`, `ip link` and /proc/mounts.
Standard library only (`labctl down` runs without the venv).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from tests.lab.nodenet import BRIDGE

# What the kubelet sets (pkg/kubelet/cm: setupKernelTunables, protectKernelDefaults false),
# what kube-proxy may set (conntrack, route_localnet), and what CNI's bridge plugin may set.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
# Folders containerd, the CNI plugins and the kubelet create outside the lab's own folder even
# when configured to keep their state there (shim sockets, CNI's result cache, network
# namespaces); removed afterwards when they did not exist before.
HOST_PATHS = (
    "/run/containerd",
    "/var/lib/containerd",
    "/opt/containerd",
    "/var/lib/cni",
    "/run/netns",
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/etc/kubernetes",
)
# The network namespaces containerd's CRI makes for sandboxes (pkg/netns): /run/netns/cni-<uuid>.
NETNS_DIR = "/run/netns"
# iptables chains the node's parts make: kube-proxy and kubelet (KUBE-), CNI plugins (CNI-), the
# lab's own forwarding guard (ACMEBRIDGE-).
CHAIN_PREFIXES = ("KUBE-", "CNI-", "ACMEBRIDGE-")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _run(*argv: str, check: bool = False) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls(keys: Iterable[str] = SYSCTLS) -> dict[str, str]:
    """The value of each key that exists on this kernel."""
    values = {}
    for key in keys:
        with contextlib.suppress(OSError):
            values[key] = _sysctl_path(key).read_text().strip()
    return values


def nft_tables() -> list[str]:
    """`family name` of every nftables table (iptables-nft keeps its rules in these)."""
    if not shutil.which("nft"):
        return []
    return sorted(
        line.removeprefix("table ").strip()
        for line in _run("nft", "list", "tables").splitlines()
        if line.startswith("table ")
    )


def mountpoints() -> list[str]:
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]


def snapshot() -> dict[str, object]:
    """What the host-restore test compares before the node starts and after it stops."""

    def iptables(tool: str) -> list[str]:
        if not shutil.which(tool):
            return []
        # Comments carry a timestamp and chain counters change with traffic: neither is state.
        return [
            re.sub(r"\[\d+:\d+\]", "", line)
            for line in _run(tool).splitlines()
            if not line.startswith("#")
        ]

    links = [
        re.sub(r"^\d+: ", "", line.split("\\")[0]).strip()
        for line in _run("ip", "-o", "link").splitlines()
    ]
    return {
        "sysctls": read_sysctls(),
        "iptables": iptables("iptables-save"),
        "ip6tables": iptables("ip6tables-save"),
        "links": sorted(links),
        "mounts": sorted(Path("/proc/mounts").read_text().splitlines()),
    }


# --- record and restore ---------------------------------------------------------------------


def record(path: Path) -> None:
    """Writes what `restore` needs; an existing record (a node that did not stop) is kept."""
    if path.exists():
        return
    state = {
        "sysctls": read_sysctls(),
        "paths": [p for p in HOST_PATHS if os.path.lexists(p)],
        "nft_tables": nft_tables(),
        "mounts": mountpoints(),
    }
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(state, indent=2) + "\n")
    partial.replace(path)


def restore(path: Path, *, node_dir: Path, cgroup: str, say: object = print) -> list[str]:
    """Undoes the node's changes to the host; returns what could not be undone (empty: all).

    Runs after the node's processes were stopped; kills what is left in the node's cgroups
    (containers whose shim died), so it is also the clean-up after a crash.
    """
    problems: list[str] = []
    state = json.loads(path.read_text()) if path.exists() else None
    problems += _kill_cgroup(cgroup)
    problems += _unmount(node_dir, set(state["mounts"]) if state else None)
    problems += _remove_links()
    problems += _remove_chains()
    if state is not None:
        problems += _remove_tables(state["nft_tables"])
        problems += _restore_sysctls(state["sysctls"])
        for p in HOST_PATHS:
            if p not in state["paths"] and os.path.lexists(p):
                _remove_path(Path(p), problems)
    problems += _remove_cgroups(cgroup)
    if not problems:
        path.unlink(missing_ok=True)
    return problems


def _cgroup_dirs(cgroup: str) -> list[Path]:
    """The node's cgroup in every mounted hierarchy (v1 controllers and the unified one)."""
    found = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in CGROUP_ROOT.iterdir():
        candidate = hierarchy / cgroup
        if candidate.is_dir():
            found.append(candidate)
    return found


def _kill_cgroup(cgroup: str) -> list[str]:
    pids: set[int] = set()
    for top in _cgroup_dirs(cgroup):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return []


def _remove_cgroups(cgroup: str) -> list[str]:
    problems = []
    for top in _cgroup_dirs(cgroup):
        # Deepest first: a cgroup can only be removed once it has no children and no tasks.
        for folder in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        ):
            with contextlib.suppress(FileNotFoundError):
                _rmdir_retrying(folder)
        try:
            _rmdir_retrying(top)
        except OSError as error:
            problems.append(f"cgroup {top}: {error}")
    return problems


def _rmdir_retrying(folder: Path) -> None:
    import time

    for attempt in range(20):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt == 19:
                raise
            time.sleep(0.1)


def _unmount(node_dir: Path, before: set[str] | None) -> list[str]:
    """Unmounts, deepest first, what the node mounted: under its folder and network namespaces."""

    def ours(point: str) -> bool:
        if point.startswith(f"{node_dir}/") or point == str(node_dir):
            return True
        if before is not None and point in before:
            return False
        return point.startswith((f"{NETNS_DIR}/", "/run/containerd/")) or point == NETNS_DIR

    problems = []
    for _ in range(3):  # a mount may be stacked on itself (kubelet's rshared root dir)
        points = [p for p in mountpoints() if ours(p)]
        if not points:
            break
        for point in sorted(points, key=lambda p: -len(p)):
            result = subprocess.run(["umount", point], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    left = [p for p in mountpoints() if ours(p)]
    problems += [f"mount {p} is still there" for p in left]
    return problems


def _remove_links() -> list[str]:
    """The bridge and every interface enslaved to it (the Pods' veth ends)."""
    problems = []
    for line in _run("ip", "-o", "link", "show", "master", BRIDGE).splitlines():
        name = line.split(": ")[1].split("@")[0]
        subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        result = subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, text=True)
        if result.returncode != 0:
            problems.append(f"ip link delete {BRIDGE}: {result.stderr.strip()}")
    return problems


def _remove_chains() -> list[str]:
    problems = []
    for save, tool in (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables")):
        if not shutil.which(save):
            continue
        table = ""
        jumps: list[tuple[str, list[str]]] = []
        chains: list[tuple[str, str]] = []
        for line in _run(save).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                chain = line[1:].split()[0]
                if chain.startswith(CHAIN_PREFIXES):
                    chains.append((table, chain))
            elif line.startswith("-A "):
                words = shlex.split(line)
                chain = words[1]
                target = _target(words)
                if not chain.startswith(CHAIN_PREFIXES) and target.startswith(CHAIN_PREFIXES):
                    jumps.append((table, ["-D", *words[1:]]))
        for table, rule in jumps:
            subprocess.run([tool, "-w", "-t", table, *rule], capture_output=True, check=False)
        for table, chain in chains:
            subprocess.run([tool, "-w", "-t", table, "-F", chain], capture_output=True, check=False)
        for table, chain in chains:
            result = subprocess.run(
                [tool, "-w", "-t", table, "-X", chain], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                problems.append(f"{tool} -t {table} -X {chain}: {result.stderr.strip()}")
    return problems


def _target(words: Sequence[str]) -> str:
    for flag in ("-j", "-g"):
        if flag in words:
            index = words.index(flag)
            if index + 1 < len(words):
                return words[index + 1]
    return ""


def _remove_tables(before: Sequence[str]) -> list[str]:
    """Tables iptables-nft created for the node's rules (empty now) that did not exist before."""
    problems = []
    for table in nft_tables():
        if table not in before:
            result = subprocess.run(
                ["nft", "delete", "table", *table.split()], capture_output=True, text=True
            )
            if result.returncode != 0:
                problems.append(f"nft delete table {table}: {result.stderr.strip()}")
    return problems


def _restore_sysctls(before: dict[str, str]) -> list[str]:
    problems = []
    now = read_sysctls(before)
    for key, value in before.items():
        if now.get(key) != value:
            try:
                _sysctl_path(key).write_text(value + "\n")
            except OSError as error:
                problems.append(f"sysctl {key}={value}: {error}")
    return problems


def _remove_path(path: Path, problems: list[str]) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as error:
        problems.append(f"{path}: {error}")
