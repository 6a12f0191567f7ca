"""Starts, reuses, inspects and stops the lab: ``python -m tests.lab.labctl up|down|status``.

The lab is a real etcd, kube-apiserver and kube-controller-manager, a real Pebble with
pebble-challtestsrv as its DNS, and the two stand-ins that do kubelet's and an ingress
controller's job, all on 127.0.0.1 and all under ``.lab/`` (see docs/lab.md).

Invariants: there is never more than one lab per checkout (an exclusive lock serialises `up` and
`down`, and `up` reuses a healthy lab or stops a broken one before starting); `up` returns only
when every part answers, and otherwise stops what it started and says which part failed, with the
end of its log; `down` leaves no lab process behind, or fails saying which remain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.lab import labbind, labfiles, labnode, labparts, labprobes, labproc, labstepca
from tests.lab.labparts import Component, Layout, Ports

NOT_RUNNING = "not running"
# Only the stand-ins get time to shut down cleanly (the node agent stops its Pods' processes).
# The rest keep nothing worth saving, since their state is deleted next, and etcd alone takes
# seconds to honour SIGTERM: they are killed at once.
GRACEFUL = frozenset(labparts.STANDIN_MODULES)
# How long a process without a readiness endpoint must stay up before it counts as started.
SETTLE_SECONDS = 1.5


class LabError(Exception):
    """The lab could not be brought to the requested state; the message says why."""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def stages(layout: Layout, ports: Ports) -> list[list[Component]]:
    """The lab's processes in start order; each stage starts together once the previous is up."""
    return [
        [labparts.etcd(layout, ports), labparts.challtestsrv(layout), labparts.pebble(layout)],
        [labparts.kube_apiserver(layout, ports)],
        [labparts.kube_controller_manager(layout, ports), *labparts.standins(layout)],
    ]


def _say(message: str) -> None:
    print(message, flush=True)


# --- up -------------------------------------------------------------------------------------


def up(layout: Layout) -> None:
    """Makes sure one healthy lab runs: reuses it, or (re)starts it from scratch."""
    began = time.monotonic()
    with labproc.locked(layout.lock_file):
        problem = health(layout)
        if problem is None:
            _say(f"lab: already running and healthy, reusing it (env: {layout.env_file})")
            # This checkout's CRDs, which may be newer than the ones the lab started with.
            _apply_crds(layout)
            _ensure_bind(layout, began)
            _ensure_stepca(layout, began)
            return
        if problem != NOT_RUNNING:
            _say(f"lab: partly up ({problem}): stopping it and starting afresh")
        _stop(layout)
        _check_fixed_ports()
        try:
            _start(layout, began)
        except BaseException:
            _say("lab: start failed, stopping what did start (logs stay in .lab/logs)")
            _stop(layout)
            raise
        _ensure_bind(layout, began)
        _ensure_stepca(layout, began)


def _ensure_bind(layout: Layout, began: float) -> None:
    # BIND, like step-ca, needs nothing from the cluster: started alone when missing or
    # unhealthy, so that adding it to a running lab leaves everything else running.
    if labbind.ensure(layout, launch=lambda stage: _launch(layout, stage), say=_say):
        labfiles.write_env(layout)
        _say(f"lab: BIND up in {time.monotonic() - began:.1f}s")


def _ensure_stepca(layout: Layout, began: float) -> None:
    # step-ca needs nothing from the cluster: it is started alone when missing or unhealthy, so
    # that adding it to (or restarting it in) a running lab leaves the cluster alone.
    if labstepca.ensure(layout, launch=lambda stage: _launch(layout, stage), say=_say):
        labfiles.write_env(layout)
        _say(f"lab: step-ca up in {time.monotonic() - began:.1f}s")


def health(layout: Layout) -> str | None:
    """None when a complete lab runs and answers; otherwise what is wrong (or NOT_RUNNING)."""
    ports = _started_ports(layout)
    procs = {p.name: p for p in labproc.recorded(layout.run)}
    if ports is None:
        return NOT_RUNNING if not procs else "a previous start did not finish"
    for component in _components(layout, ports):
        proc = procs.get(component.name)
        if proc is None:
            return f"{component.name} was not started"
        if not proc.alive():
            return f"{component.name} (pid {proc.pid}) is not running"
        why = component.probe()
        if why is not None:
            return f"{component.name} is unhealthy: {why}"
    return None if layout.env_file.exists() else f"{layout.env_file} is missing"


def _start(layout: Layout, began: float) -> None:
    _check_binaries(layout)
    _warn_missing_standins()
    for folder in (layout.run, layout.logs, layout.node_agent, layout.apiserver_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for old_log in layout.logs.glob("*.log"):
        old_log.unlink()
    ports = Ports.pick()
    labfiles.write_pki(layout)
    labfiles.write_kubeconfig(layout, ports)
    labfiles.write_pebble_config(layout)
    _say(f"lab: certificates and configuration written ({time.monotonic() - began:.1f}s)")
    for stage in stages(layout, ports):
        _launch(layout, stage)
    _prepare_cluster(layout, ports)
    _fetch_pebble_root(layout)
    labfiles.write_env(layout)
    # Written last: its presence says the lab came up completely.
    state = {"ports": ports.to_json(), "started_at": time.time()}
    layout.state_file.write_text(json.dumps(state, indent=2) + "\n")
    took = time.monotonic() - began
    _say(f"lab: up in {took:.1f}s; its settings: `set -a; . {layout.env_file}; set +a`")


def _check_fixed_ports() -> None:
    taken = [
        f"127.0.0.1:{port} ({what})"
        for port, what in labparts.FIXED_PORTS.items()
        if labproc.port_in_use(port)
        or (port == labparts.DNS_PORT and labproc.port_in_use(port, kind=socket.SOCK_DGRAM))
    ]
    if taken:
        raise LabError(
            "these ports are taken by a process that is not this lab: "
            + ", ".join(taken)
            + ". Find it with `ss -ltnup` and stop it"
            + " (another checkout's lab? `make lab-down` there)."
        )


def _check_binaries(layout: Layout) -> None:
    names = [*labparts.BINARIES, "kubectl"]
    missing = [name for name in names if not (layout.bin / name).is_file()]
    if missing:
        raise LabError(f"{', '.join(missing)} missing from {layout.bin}: run `make lab-bin` first")


def _warn_missing_standins() -> None:
    for name, module in labparts.STANDIN_MODULES.items():
        if not labparts.standin_present(name):
            _say(f"lab: WARNING: {module} does not exist: not started (solver Pods stay Pending)")


def _launch(layout: Layout, stage: Sequence[Component]) -> None:
    """Starts a stage's processes together and waits until each answers its probe."""
    pending: dict[str, tuple[Component, labproc.Proc, float]] = {}
    for component in stage:
        proc = labproc.start(
            component.name,
            component.argv,
            run_dir=layout.run,
            log_dir=layout.logs,
            env=labparts.child_env(layout, component.env),
            cwd=component.cwd or layout.lab,
        )
        pending[component.name] = (component, proc, time.monotonic())
    while pending:
        for name, (component, proc, started) in list(pending.items()):
            elapsed = time.monotonic() - started
            if not proc.alive():
                raise LabError(_failure(layout, name, "exited during start-up"))
            why = component.probe()
            if why is None and (component.probe is not labprobes.none or elapsed > SETTLE_SECONDS):
                _say(f"   {name:<24} ready in {elapsed:5.1f}s (pid {proc.pid})")
                del pending[name]
            elif elapsed > component.timeout:
                raise LabError(
                    _failure(layout, name, f"not ready after {component.timeout:.0f}s: {why}")
                )
        time.sleep(0.2)


def _failure(layout: Layout, name: str, what: str) -> str:
    log = layout.log(name)
    return f"{name} {what}\n  last lines of {log}:\n{labproc.log_tail(log)}"


def _kubectl(layout: Layout, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    """Runs the lab's kubectl as the admin; raises LabError with its stderr on failure."""
    argv = [str(layout.bin / "kubectl"), f"--kubeconfig={layout.kubeconfig}", *args]
    result = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=labparts.child_env(layout),
        check=False,
    )
    if result.returncode != 0:
        raise LabError(f"kubectl {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result.stdout


def _prepare_cluster(layout: Layout, ports: Ports) -> None:
    """The IngressClass, the project's CRDs, and the `default` ServiceAccount Pods need."""
    began = time.monotonic()
    apply = ("apply", "--server-side", "--field-manager=acmebridge-lab")
    _kubectl(layout, *apply, "-f", "-", stdin=labfiles.ingress_class_manifest())
    crds = _apply_crds(layout)
    _wait_default_service_account(layout, ports)
    _say(
        f"   {'cluster objects':<24} ready in {time.monotonic() - began:5.1f}s "
        f"(IngressClass {labparts.INGRESS_CLASS}, {len(crds)} CRDs, default ServiceAccount)"
    )


def _apply_crds(layout: Layout) -> list[Path]:
    """Applies the checkout's CRDs (server-side: unchanged ones are a no-op) and waits for them."""
    crds = sorted((layout.repo / "crds").glob("*.yaml"))
    if crds:
        files = [arg for crd in crds for arg in ("-f", str(crd))]
        _kubectl(layout, "apply", "--server-side", "--field-manager=acmebridge-lab", *files)
        _kubectl(layout, "wait", "--for=condition=Established", "--timeout=60s", *files)
    return crds


def _wait_default_service_account(layout: Layout, ports: Ports) -> None:
    # The ServiceAccount admission plugin refuses Pods until their namespace's `default`
    # ServiceAccount exists; kube-controller-manager creates it shortly after start.
    url = f"https://127.0.0.1:{ports.apiserver}/api/v1/namespaces/default/serviceaccounts/default"
    pki = layout.pki
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = labprobes.http_get(
            url, ca=pki / "cluster-ca.pem", client=(pki / "admin.pem", pki / "admin-key.pem")
        )
        if got is not None and got[0] == 200:
            return
        time.sleep(0.2)
    raise LabError(
        _failure(
            layout, "kube-controller-manager", "did not create the default ServiceAccount in 60s"
        )
    )


def _fetch_pebble_root(layout: Layout) -> None:
    # Pebble makes a new root at every start; it is only available from its management API.
    url = f"https://127.0.0.1:{labparts.PEBBLE_MGMT_PORT}/roots/0"
    got = labprobes.http_get(url, ca=layout.pebble / "tls-ca.pem")
    if got is None or got[0] != 200 or b"BEGIN CERTIFICATE" not in got[1]:
        raise LabError(_failure(layout, "pebble", f"did not serve its root at {url}: {got}"))
    (layout.pebble / "root.pem").write_bytes(got[1])


def _started_ports(layout: Layout) -> Ports | None:
    """The ports of a lab that came up completely, None when there is none."""
    try:
        return Ports(**json.loads(layout.state_file.read_text())["ports"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _components(layout: Layout, ports: Ports) -> list[Component]:
    return [component for stage in stages(layout, ports) for component in stage]


# --- down -----------------------------------------------------------------------------------


def down(layout: Layout) -> None:
    """Stops every lab process and removes the runtime state; a no-op when nothing runs."""
    with labproc.locked(layout.lock_file):
        stopped = _stop(layout)
    _say(f"lab: stopped ({stopped} processes)" if stopped else "lab: not running")


def _stop(layout: Layout) -> int:
    """Stops the recorded processes, the node agent's solvers and any stray; clears the state."""
    # The real node first, while the API server still answers: it restores the host.
    node_stopped = labnode.down(layout, quiet=True)
    procs = [p for p in labproc.recorded(layout.run) if p.alive()]
    solvers = _solver_pids(layout, procs)
    graceful = [p.pid for p in procs if p.name in GRACEFUL]
    left = labproc.terminate(graceful, grace=10)
    # Newest first: the controller manager before the API server, etcd last.
    rest = [p.pid for p in reversed(procs) if p.name not in GRACEFUL] + solvers
    left += labproc.terminate(rest, grace=0)
    strays = labproc.marked_pids(layout.lab)
    left += labproc.terminate(strays, grace=3)
    if left:
        raise LabError(f"these lab processes survived SIGKILL: {_describe(left)}")
    for entry in layout.runtime_entries():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return node_stopped + len(procs) + len(solvers) + len(strays)


def _solver_pids(layout: Layout, procs: Sequence[labproc.Proc]) -> list[int]:
    """Solver processes the node agent recorded as ``*.pid`` files under its state folder.

    A pid counts only when its process started after the node agent did, so a stale file whose pid
    now belongs to something else is left alone.
    """
    agent = next((p for p in procs if p.name == labparts.NODE_AGENT), None)
    if agent is None or not layout.node_agent.exists():
        return []
    pids = []
    for pidfile in layout.node_agent.rglob("*.pid"):
        pid = _parse_pidfile(pidfile)
        stat = labproc.read_stat(pid) if pid else None
        if pid and stat and stat[1] >= agent.start_ticks:
            pids.append(pid)
    return pids


def _parse_pidfile(path: Path) -> int | None:
    """A pid written as a bare number or as JSON with a ``pid`` key."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        pid = data.get("pid") if isinstance(data, dict) else data
        return int(pid) if isinstance(pid, int) and pid > 1 else None
    return None


def _describe(pids: Sequence[int]) -> str:
    def cmdline(pid: int) -> str:
        with contextlib.suppress(OSError):
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        return "?"

    return "; ".join(f"{pid} ({cmdline(pid)})" for pid in pids)


# --- the real node (make node-up, make lab-up NODE=1) ---------------------------------------


def node_up(layout: Layout) -> None:
    """Adds the real node to the running lab (tests/lab/labnode.py), or reuses a running one."""
    with labproc.locked(layout.lock_file):
        ports = _started_ports(layout)
        problem = health(layout)
        if ports is None or problem is not None:
            raise LabError(f"the lab is not up ({problem}): `make lab-up` first")
        _refresh_standins(layout)
        labnode.up(layout, apiserver_port=ports.apiserver)
        labfiles.write_env(layout)


def _refresh_standins(layout: Layout) -> None:
    """Restarts a stand-in whose module changed after it started: the node needs the node
    agent that yields to the scheduler and the ingress that routes to the node's Pods."""
    import importlib.util

    boot = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    procs = {p.name: p for p in labproc.recorded(layout.run) if p.alive()}
    for component in labparts.standins(layout):
        proc = procs.get(component.name)
        spec = importlib.util.find_spec(labparts.STANDIN_MODULES[component.name])
        if proc is None or spec is None or spec.origin is None:
            continue
        started = boot + proc.start_ticks / os.sysconf("SC_CLK_TCK")
        if started >= Path(spec.origin).stat().st_mtime:
            continue
        _say(f"lab: restarting the {component.name} stand-in: its code changed since it started")
        labproc.terminate([proc.pid], grace=10)
        _launch(layout, [component])


def restart_pebble(layout: Layout) -> None:
    """Restarts the lab's Pebble alone (a new root, no accounts or orders): for a CA that stopped
    answering under load, without stopping the cluster others are testing against."""
    with labproc.locked(layout.lock_file):
        procs = {p.name: p for p in labproc.recorded(layout.run) if p.alive()}
        old = procs.get("pebble")
        if old is not None:
            labproc.terminate([old.pid], grace=5)
        _launch(layout, [labparts.pebble(layout)])
        _fetch_pebble_root(layout)
        labfiles.write_env(layout)
        _say("lab: Pebble restarted (a new root: Issuers that pinned the old one need it again)")


def node_down(layout: Layout) -> None:
    """Stops the real node and restores the host; the rest of the lab keeps running."""
    with labproc.locked(layout.lock_file):
        labnode.down(layout)
        if layout.env_file.exists():
            labfiles.write_env(layout)


# --- status ---------------------------------------------------------------------------------


def status(layout: Layout) -> int:
    """Prints each part's state. Exit status: 0 healthy, 1 partly up, 3 not running."""
    ports = _started_ports(layout)
    procs = {p.name: p for p in labproc.recorded(layout.run)}
    if ports is None and not procs:
        _say("lab: not running")
        return 3
    if ports is None:
        _say("lab: starting, or a start that failed left processes behind (`labctl down`)")
        for proc in procs.values():
            _say(f"   {proc.name:<24} pid {proc.pid:<8} {'running' if proc.alive() else 'dead'}")
        return 1
    ok = True
    components = [
        *_components(layout, ports),
        *labbind.components(layout),
        *labstepca.components(layout),
    ]
    for component in components:
        found = procs.get(component.name)
        if found is None or not found.alive():
            line, ok = "not running", False
        else:
            why = component.probe()
            line, ok = ("healthy", ok) if why is None else (f"unhealthy: {why}", False)
        pid = found.pid if found else "-"
        _say(f"   {component.name:<24} pid {pid!s:<8} {line}")
    if layout.env_file.exists():
        for key, value in labfiles.read_env(layout.env_file).items():
            _say(f"   {key}={value}")
    _say("lab: running and healthy" if ok else "lab: partly up (`labctl up` restarts it)")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labctl", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=("up", "down", "status", "node-up", "node-down", "node-status", "restart-pebble"),
    )
    parser.add_argument(
        "--repo", type=Path, default=repo_root(), help="the checkout (default: this one)"
    )
    args = parser.parse_args(argv)
    layout = Layout(args.repo.resolve())
    try:
        if args.command == "up":
            up(layout)
        elif args.command == "down":
            down(layout)
        elif args.command == "node-up":
            node_up(layout)
        elif args.command == "node-down":
            node_down(layout)
        elif args.command == "node-status":
            return labnode.status(layout)
        elif args.command == "restart-pebble":
            restart_pebble(layout)
        else:
            return status(layout)
    except (LabError, labbind.BindError, labstepca.StepCaError, labnode.NodeError) as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
