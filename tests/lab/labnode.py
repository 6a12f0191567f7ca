"""The lab's real node: containerd, runc, CNI, a kubelet, kube-proxy and kube-scheduler.

`make node-up` (or `make lab-up NODE=1`) adds one node, `lab-kubelet`, to a running lab without
restarting anything else; `make node-down` (and `make lab-down`) stops it and restores the host.
What it needs from the machine (containerd, runc, CNI plugins, iptables, nftables, conntrack)
comes from Debian's packages (hack/node/packages.sh). Its state lives under ``.lab/node``.

This module starts and stops the node in order; the parts live apart: its names and files
(nodelayout), the host's preparation (nodehost), the configuration files (nodeconfig), the
processes (nodeparts), images (nodeimages) and the objects it keeps in the API server
(nodecluster); labhost restores the host.

Network: the node's Pods live on the bridge ``acmelab0`` in 10.244.1.0/24 (the node-agent
stand-in reports 10.244.0.0/24, so the two never collide); the host is 10.244.1.1 there. Pods
have routes to their bridge and to the Service range only, and a FORWARD guard drops anything
the bridge would send elsewhere: traffic stays on loopback, the bridge and the Pods' network
namespaces. The lab's servers stay on 127.0.0.1; `labrelay` makes them answer Pods at
10.244.1.1, including the API server behind the `kubernetes` Service (whose EndpointSlice the
node writes, since the API server's own reconciler is off in the lab).

Invariants: `up` returns only when the Node is Ready, kube-proxy and the scheduler answer, and
the sandbox image is loaded; otherwise it stops what it started, restores the host and says
which part failed with the end of its log. `down` stops every node process, then `labhost`
restores what the node changed on the host, and fails naming whatever it could not undo.
Standard library only at import time (`labctl down` runs without the venv).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.lab import (
    labhost,
    labparts,
    labprobes,
    labproc,
    nodecluster,
    nodeconfig,
    nodehost,
    nodeimages,
    nodeparts,
)
from tests.lab.labparts import Component, Layout
from tests.lab.nodelayout import (
    CGROUP,
    KUBE_PROXY_HEALTH,
    PROCESSES,
    NodeError,
    NodeLayout,
    say,
)
from tests.lab.nodenet import BRIDGE, BRIDGE_ADDRESS, BRIDGE_PREFIX_LENGTH, NODE_NAME, POD_CIDR

# labctl catches it as labnode's.
__all__ = ["NodeError", "down", "status", "up"]

# --- status ---------------------------------------------------------------------------------


def running(node: NodeLayout) -> dict[str, labproc.Proc]:
    return {p.name: p for p in labproc.recorded(node.run) if p.alive()}


def health(node: NodeLayout) -> str | None:
    """None when a complete node runs and answers; otherwise what is wrong."""
    if not node.state_file.exists():
        return "not running"
    procs = running(node)
    for name in PROCESSES:
        if name not in procs:
            return f"{name} is not running"
    return (
        nodecluster.node_ready(node.lab)
        or labprobes.expect_ok(f"http://127.0.0.1:{KUBE_PROXY_HEALTH}/healthz")()
    )


def status(layout: Layout, out: Callable[[str], None] = say) -> int:
    node = NodeLayout(layout)
    procs = running(node)
    if not node.root.exists():
        out("node: not running")
        return 3
    for name in PROCESSES:
        proc = procs.get(name)
        pid, state = (proc.pid, "running") if proc else ("-", "not running")
        out(f"   {name:<24} pid {pid!s:<8} {state}")
    problem = health(node)
    out(f"node: {NODE_NAME} running and Ready" if problem is None else f"node: {problem}")
    return 0 if problem is None else 1


# --- up -------------------------------------------------------------------------------------


def up(layout: Layout, *, apiserver_port: int) -> None:
    """Makes sure the node runs and is Ready; reuses a healthy one."""
    node = NodeLayout(layout)
    began = time.monotonic()
    problem = health(node)
    if problem is None:
        say(f"node: {NODE_NAME} already running and Ready, reusing it")
        return
    if problem != "not running" or running(node):
        say(f"node: partly up ({problem}): stopping it and starting afresh")
        down(layout)
    _reclaim_abandoned_host()
    nodehost.check(node)
    try:
        _start(node, apiserver_port, began)
    except BaseException:
        say(f"node: start failed, stopping what did start (logs stay in {node.logs})")
        down(layout, quiet=True)
        raise


def _start(node: NodeLayout, apiserver_port: int, began: float) -> None:
    for folder in node.folders():
        folder.mkdir(parents=True, exist_ok=True)
    labhost.record(node.host_record)
    nodehost.make_bridge(node.root)
    nodehost.make_cgroups()
    nodeconfig.write_all(node)
    say(
        f"node: host prepared, bridge {BRIDGE} {BRIDGE_ADDRESS}/{BRIDGE_PREFIX_LENGTH} "
        f"({time.monotonic() - began:.1f}s)"
    )
    _launch(node, [nodeparts.relay(node, apiserver_port), nodeparts.containerd(node)])
    nodeimages.load_image(node.socket, nodeimages.pause_archive(node))
    nodecluster.publish_api_endpoint(node.lab, apiserver_port)
    nodecluster.yield_node_agent(node.lab)
    kubelet = nodeparts.kubelet(node, ready=lambda: nodecluster.node_ready(node.lab))
    _launch(node, [kubelet, nodeparts.kube_proxy(node), nodeparts.kube_scheduler(node)])
    nodecluster.untaint(node.lab)
    state = {"node": NODE_NAME, "bridge": BRIDGE, "pod_cidr": POD_CIDR, "started_at": time.time()}
    node.state_file.write_text(json.dumps(state, indent=2) + "\n")
    say(f"node: {NODE_NAME} Ready in {time.monotonic() - began:.1f}s")


def _reclaim_abandoned_host() -> None:
    """Restores the host after a node that died without `node-down` (its machine restarted, or
    its lab was killed): the bridge, chains and cgroups it left would stop any new node.

    Only when none of that node's processes runs; its own record of the host is used when its
    folder is still there, so sysctls and host folders come back as they were.
    """
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        return
    owner = nodehost.bridge_owner()
    if nodehost.node_processes_alive(owner):
        return  # nodehost.check names it
    node_dir = owner if owner is not None else Path("/nonexistent-acmebridge-node")
    say(
        f"node: the bridge {BRIDGE} was left by a node that no longer runs "
        f"({owner or 'owner unknown'}): restoring the host first"
    )
    problems = labhost.restore(node_dir / "host-before.json", node_dir=node_dir, cgroup=CGROUP)
    if problems:
        left = "\n  ".join(problems)
        raise NodeError(f"the host left by a dead node is not fully restored:\n  {left}")


def _launch(node: NodeLayout, stage: Sequence[Component]) -> None:
    """Starts a stage's processes together and waits until each is ready (or fails)."""
    pending: dict[str, tuple[Component, labproc.Proc, float]] = {}
    for component in stage:
        proc = labproc.start(
            component.name,
            component.argv,
            run_dir=node.run,
            log_dir=node.logs,
            env=labparts.child_env(node.lab, {"PYTHONPATH": f"{node.lab.repo}"}),
            cwd=node.lab.repo,
        )
        pending[component.name] = (component, proc, time.monotonic())
    while pending:
        for name, (component, proc, started) in list(pending.items()):
            elapsed = time.monotonic() - started
            if not proc.alive():
                raise NodeError(_failure(node, name, "exited during start-up"))
            why = component.probe()
            if why is None:
                say(f"   {name:<24} ready in {elapsed:5.1f}s (pid {proc.pid})")
                del pending[name]
            elif elapsed > component.timeout:
                raise NodeError(
                    _failure(node, name, f"not ready after {component.timeout:.0f}s: {why}")
                )
        time.sleep(0.2)


def _failure(node: NodeLayout, name: str, what: str) -> str:
    log = node.log(name)
    return f"{name} {what}\n  last lines of {log}:\n{labproc.log_tail(log)}"


# --- down -----------------------------------------------------------------------------------


def down(layout: Layout, *, quiet: bool = False) -> int:
    """Stops the node's processes and restores the host; the number of processes stopped."""
    node = NodeLayout(layout)
    if not node.root.exists():
        if not quiet:
            say("node: not running")
        return 0
    began = time.monotonic()
    procs = running(node)
    stopped = len(procs)
    # The scheduler first (no new Pods land here), the kubelet and kube-proxy next, then the
    # runtime; what is left in the node's cgroups (containers) is killed by labhost.restore.
    for name in ("kube-scheduler", "kubelet", "kube-proxy", "labrelay"):
        if name in procs:
            labproc.terminate([procs[name].pid], grace=5)
    if "containerd" in procs:
        labproc.terminate([procs["containerd"].pid], grace=5)
    shims = [pid for pid in labproc.marked_pids(layout.lab) if _is_node_process(pid)]
    labproc.terminate(shims, grace=2)
    _cleanup_kube_proxy(node)
    nodecluster.remove_objects(layout)
    problems = labhost.restore(node.host_record, node_dir=node.root, cgroup=CGROUP)
    if problems:
        raise NodeError("the host is not fully restored:\n  " + "\n  ".join(problems))
    logs = node.logs
    keep = layout.logs / "node"
    if logs.exists():
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(logs, keep)
    shutil.rmtree(node.root, ignore_errors=True)
    if not quiet:
        say(
            f"node: stopped ({stopped} processes) and the host restored in "
            f"{time.monotonic() - began:.1f}s (logs in {keep})"
        )
    return stopped


def _is_node_process(pid: int) -> bool:
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return name.startswith(("containerd", "runc", "kubelet", "kube-proxy", "pause"))


def _cleanup_kube_proxy(node: NodeLayout) -> None:
    binary = node.lab.bin / "kube-proxy"
    if binary.exists():
        subprocess.run([str(binary), "--cleanup"], capture_output=True, timeout=60, check=False)


# --- loading an image (make image, make node-up) --------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.lab.labnode load-image ARCHIVE``, which `make image` runs.

    The image is also tagged as the operator's default solver image (nodeimages says why).
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="labnode")
    parser.add_argument("command", choices=("load-image",))
    parser.add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[2]
    node = NodeLayout(Layout(repo))
    if health(node) is not None:
        print("node: not running, nothing to load the image into", file=sys.stderr)
        return 1
    began = time.monotonic()
    try:
        solver = nodeimages.default_solver_image(repo)
        out = nodeimages.load_image(node.socket, args.archive, also=[solver])
    except NodeError as error:
        print(f"node: error: {error}", file=sys.stderr)
        return 1
    say(
        f"node: loaded {args.archive.name} into {NODE_NAME}'s containerd in "
        f"{time.monotonic() - began:.1f}s: {out.strip()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
