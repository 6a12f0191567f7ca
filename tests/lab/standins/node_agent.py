"""Plays kubelet for solver Pods in the lab: binds them to one Node and runs their command lines.

Test-only stand-in; there is no container runtime here. It registers one Node, binds every Pod
labelled ``acmebridge.io/solver`` to it (there is no scheduler), runs the first container's
command line as a local process on a loopback address, reports the Pod's status through the
status subresource, and on graceful deletion stops the process and deletes the Pod with grace 0,
as kubelet does. Pods without the label are never touched, so they stay Pending as they would on
a cluster with no room for them. Each Pod gets a slot N: its process listens on 127.0.1.N, which
is also what a downward-API ``status.podIP`` gives it, while its status reports 10.244.0.N, an
address EndpointSlices accept (``_podnet`` says why).

What it does not do: restart containers (an exited process leaves the Pod Succeeded or Failed
whatever its restartPolicy), run init or further containers, isolate processes (securityContext,
resources and image are ignored), use an image's entrypoint (a container needs ``command``), or
probe again once Ready.

Threads: the watch thread records what the API says; one supervisor thread starts processes,
probes them and writes their status; a short-lived thread per Pod stops its process, so a slow
shutdown never holds up the others. Each action is logged in one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import _status
from ._container import (
    ContainerConfigError,
    Readiness,
    command_line,
    container_env,
    readiness,
    secret_data,
)
from ._kube import STRATEGIC_MERGE_PATCH, ApiError, Kube, list_and_watch, setup_logging
from ._podnet import PodNetwork, SlotPool
from ._process import PodProcess, probe, reap_strays

JSON = dict[str, Any]
SOLVER_LABEL = "acmebridge.io/solver"
# The lab's real node (tests/lab/labnode.py): while it is Ready, its scheduler binds every Pod and
# this agent binds none, so the two never race for a Pod.
REAL_NODE_LABEL = "acmebridge.io/lab-node=kubelet"
HOST_IP = "127.0.0.1"
TICK_SECONDS = 0.25
HEARTBEAT_SECONDS = 10.0
RETRY_SECONDS = 2.0
# A bind or a final delete is tried this often before the agent leaves it to the next relist.
ATTEMPTS = 4
# Pods may ask for long grace periods; tests should not wait for them.
MAX_GRACE_SECONDS = 3.0
# Variables a process inherits from the agent: what an image would provide, and the lab's marker
# by which `labctl down` finds stray processes. Nothing else (no KUBECONFIG) leaks into a Pod.
INHERITED_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "PYTHONPATH",
    "PYTHONUNBUFFERED",
    "ACMEBRIDGE_LAB_DIR",
)

log = logging.getLogger("standins.node_agent")


def _now() -> str:
    return _status.rfc3339(datetime.now(UTC))


def _key(pod: JSON) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _stem(pod: JSON) -> str:
    return f"{pod['metadata']['namespace']}_{pod['metadata']['name']}"


def node_selector_matches(pod: JSON, node_labels: Mapping[str, str]) -> bool:
    """The scheduler's nodeSelector check: every selected label must be on the node."""
    selector: Mapping[str, str] = pod.get("spec", {}).get("nodeSelector") or {}
    return all(node_labels.get(k) == v for k, v in selector.items())


@dataclass
class Run:
    """One Pod bound to this node, and its process once started."""

    pod: JSON
    slot: int | None = None
    process: PodProcess | None = None
    check: Readiness | None = None
    started_at: str = ""
    ready: bool = False
    finished: bool = False  # ended (or never startable): nothing to do until deletion
    stopping: bool = False
    retry_at: float = 0.0
    config_error: str = ""  # the last reason it could not start, reported once
    # Held while the supervisor works on the Pod and while its process is stopped, so that a
    # process is never started for a Pod that is being let go.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> str:
        return _key(self.pod)


@dataclass
class NodeAgent:
    kube: Kube
    node_name: str
    state_dir: Path
    network: PodNetwork = field(default_factory=PodNetwork)
    pool: SlotPool = field(default_factory=SlotPool)
    _runs: dict[str, Run] = field(default_factory=dict)  # by Pod uid
    _deleting: set[str] = field(default_factory=set)  # uids of Pods being deleted without a Run
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _real_node: bool = False
    _real_node_checked: float = -1e9

    @property
    def node_labels(self) -> dict[str, str]:
        return {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux"}

    # ---- lifecycle -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serves until ``stop`` is set, then stops every process it started."""
        for sub in ("logs", "pids", "pods"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        reap_strays(self.state_dir / "pids", self.state_dir / "pods")
        self._stop = stop
        while not stop.is_set():
            try:
                self._ensure_node()
                break
            except Exception as error:  # the API server may still be starting
                log.warning("cannot register node %s yet: %s", self.node_name, error)
                stop.wait(RETRY_SECONDS)
        for target in (self._heartbeat, self._supervise, self._watch):
            threading.Thread(target=target, name=target.__name__, daemon=True).start()
        stop.wait()
        with self._lock:
            runs = list(self._runs.values())
            self._runs.clear()
            for run in runs:
                run.stopping = True
        threads = [threading.Thread(target=self._retire, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log.info("stopped %d pod process(es); exiting", len(runs))

    def _ensure_node(self) -> None:
        try:
            self.kube.get(f"/api/v1/nodes/{self.node_name}")
        except ApiError as error:
            if error.status != 404:
                raise
            metadata = {"name": self.node_name, "labels": self.node_labels}
            # Unschedulable: when the real node's scheduler runs, it must not place Pods here.
            body = {"metadata": metadata, "spec": {"unschedulable": True}}
            self.kube.request("POST", "/api/v1/nodes", body=body)
            log.info("registered node %s", self.node_name)
        self._report_node()

    def _report_node(self) -> None:
        node = self.kube.get(f"/api/v1/nodes/{self.node_name}")
        existing = node.get("status", {}).get("conditions") or []
        patch = _status.node(existing, address=HOST_IP, hostname=self.node_name, now=_now())
        path = f"/api/v1/nodes/{self.node_name}/status"
        self.kube.request("PATCH", path, body=patch, content_type=STRATEGIC_MERGE_PATCH)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._report_node()
            except Exception as error:
                log.warning("node heartbeat failed: %s", error)

    # ---- what the API says -----------------------------------------------------------------

    def _watch(self) -> None:
        list_and_watch(
            self.kube,
            "/api/v1/pods",
            query={"labelSelector": SOLVER_LABEL},
            on_list=self._on_list,
            on_event=self._on_event,
            keep_going=lambda: not self._stop.is_set(),
        )

    def _on_list(self, pods: list[JSON]) -> None:
        """A fresh list: forget what is gone (the missed DELETED events), then take the rest."""
        present = {pod["metadata"]["uid"] for pod in pods}
        with self._lock:
            gone = (set(self._runs) | self._deleting) - present
        for uid in gone:
            self._forget(uid)
        # Pods that have an address claim it before new Pods are given one.
        for pod in sorted(pods, key=lambda p: not p.get("status", {}).get("podIP")):
            self._on_event("ADDED", pod)

    def _on_event(self, kind: str, pod: JSON) -> None:
        try:
            if kind == "DELETED":
                self._forget(pod["metadata"]["uid"])
            else:
                self._on_pod(pod)
        except Exception:  # one broken Pod must not stop the agent
            log.exception("could not handle %s %s", kind, _key(pod))

    def _on_pod(self, pod: JSON) -> None:
        meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
        node = spec.get("nodeName")
        if meta.get("deletionTimestamp"):
            if node == self.node_name:
                self._begin_termination(pod)
            return  # an unbound Pod is deleted by the API server itself
        if not node:
            self._bind(pod)
            return
        if node != self.node_name:
            return
        with self._lock:
            run = self._runs.get(meta["uid"])
            if run is not None:
                run.pod = pod
                return
            # A Pod this node ran before (the agent restarted) keeps its address, and an ended
            # Pod holds its address until deleted, so no two Pods ever report the same IP.
            previous = self.network.slot_of(status.get("podIP", ""))
            slot = previous if previous is not None and self.pool.reserve(previous) else None
            ended = status.get("phase") in ("Succeeded", "Failed")
            self._runs[meta["uid"]] = Run(pod=pod, slot=slot, finished=ended)

    def _real_node_ready(self) -> bool:
        """True while the lab's real node (make node-up) is Ready: its scheduler places Pods.

        Asked at most once a second; an error counts as no real node, as before it existed.
        """
        now = time.monotonic()
        if now - self._real_node_checked < 1.0:
            return self._real_node
        self._real_node_checked = now
        try:
            nodes = self.kube.get("/api/v1/nodes", {"labelSelector": REAL_NODE_LABEL})
        except Exception:
            self._real_node = False
            return False
        self._real_node = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for node in nodes.get("items") or []
            for c in node.get("status", {}).get("conditions") or []
        )
        return self._real_node

    def _bind(self, pod: JSON) -> None:
        if self._real_node_ready():
            log.info("left %s to the scheduler: the lab's real node is up", _key(pod))
            return
        if not node_selector_matches(pod, self.node_labels):
            log.info("left %s pending: its nodeSelector does not match", _key(pod))
            return
        meta = pod["metadata"]
        body = {
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding"

        def bind() -> None:
            self.kube.request("POST", path, body=body)
            log.info("bound %s to %s", _key(pod), self.node_name)

        self._retrying(f"binding {_key(pod)}", bind)  # 404, 409: gone or bound meanwhile

    @staticmethod
    def _retrying(what: str, action: Callable[[], None]) -> bool:
        """Runs ``action``, trying a few times; False when every attempt failed.

        A 404 or 409 means someone else got there first, which counts as done.
        """
        for attempt in range(1, ATTEMPTS + 1):
            try:
                action()
                return True
            except ApiError as error:
                if error.status in (404, 409):
                    return True
                failure: Exception = error
            except Exception as error:  # the API server may be restarting
                failure = error
            log.warning("%s failed (%d/%d): %s", what, attempt, ATTEMPTS, failure)
            time.sleep(attempt * 0.5)
        return False

    # ---- stopping --------------------------------------------------------------------------

    def _begin_termination(self, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            run = self._runs.get(uid)
            if run is not None:
                if run.stopping:
                    return
                run.stopping, run.pod = True, pod
            elif uid in self._deleting:
                return
            else:
                self._deleting.add(uid)
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 30)
        args = (pod, run, min(grace, MAX_GRACE_SECONDS))
        threading.Thread(target=self._terminate, args=args, daemon=True).start()

    def _terminate(self, pod: JSON, run: Run | None, grace: float) -> None:
        """Kubelet's part of a graceful deletion: stop the process, then remove the Pod."""
        if run is not None:
            with run.lock:
                if run.process is not None:
                    run.process.stop(grace, run.key)
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}

        def delete() -> None:
            self.kube.request("DELETE", path, body=body)
            log.info("deleted %s after stopping it", _key(pod))

        # 404, 409: already gone, or the name belongs to a new Pod now.
        if not self._retrying(f"deleting {_key(pod)}", delete):
            with self._lock:  # let the next event or list try again
                if run is not None:
                    run.stopping = False
                self._deleting.discard(meta["uid"])

    def _forget(self, uid: str) -> None:
        """The Pod is gone from the API: stop what is left of it and free its address."""
        with self._lock:
            run = self._runs.pop(uid, None)
            self._deleting.discard(uid)
            if run is not None:
                run.stopping = True
        if run is not None:
            threading.Thread(target=self._retire, args=(run,), daemon=True).start()

    def _retire(self, run: Run) -> None:
        with run.lock:
            if run.process is not None:
                run.process.stop(MAX_GRACE_SECONDS, run.key)
        if run.slot is not None:
            self.pool.release(run.slot)
        log.info("released %s", run.key)

    # ---- running ---------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self._lock:
                runs = [r for r in self._runs.values() if not (r.stopping or r.finished)]
            for run in runs:
                if not run.lock.acquire(blocking=False):
                    continue  # being stopped
                try:
                    if not run.stopping and time.monotonic() >= run.retry_at:
                        self._step(run)
                except Exception as error:  # an API hiccup: try this Pod again shortly
                    log.warning("%s: %s", run.key, error)
                    run.retry_at = time.monotonic() + RETRY_SECONDS
                finally:
                    run.lock.release()

    def _step(self, run: Run) -> None:
        if run.process is None:
            self._start(run)
            return
        code = run.process.exit_code()
        if code is not None:
            self._patch_status(run, self._ended(run, code, "Completed" if code == 0 else "Error"))
            run.finished, run.ready = True, False
            log.info("%s exited with code %d", run.key, code)
        elif not run.ready and self._probe(run):
            self._patch_status(run, self._running(run, ready=True))
            run.ready = True
            log.info("%s is ready", run.key)

    def _probe(self, run: Run) -> bool:
        assert run.check is not None and run.slot is not None
        return probe(run.check, self.network.local_ip(run.slot))

    def _start(self, run: Run) -> None:
        pod = run.pod
        if run.slot is None:
            run.slot = self.pool.allocate()
            if run.slot is None:
                log.warning("no free pod address for %s; waiting", run.key)
                run.retry_at = time.monotonic() + RETRY_SECONDS
                return
        local_ip = self.network.local_ip(run.slot)
        try:
            env = container_env(pod, pod_ip=local_ip, host_ip=HOST_IP, lookup=self._lookup)
            argv = command_line(pod, env)
            run.check = readiness(pod)
        except ContainerConfigError as error:
            # kubelet keeps such a Pod Pending and tries again: a Secret may appear later.
            run.retry_at = time.monotonic() + RETRY_SECONDS
            if str(error) != run.config_error:
                log.info("cannot start %s yet: %s", run.key, error)
                patch = _status.waiting(
                    pod, reason="CreateContainerConfigError", message=str(error), now=_now()
                )
                self._patch_status(run, patch)
                run.config_error = str(error)
            return
        workdir = self.state_dir / "pods" / _stem(pod)
        workdir.mkdir(exist_ok=True)
        inherited = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        process_env = {**inherited, "HOME": str(workdir), "HOSTNAME": pod["metadata"]["name"]}
        run.started_at = _now()
        try:
            run.process = PodProcess.start(
                argv,
                env={**process_env, **env},
                workdir=workdir,
                log_path=self.state_dir / "logs" / f"{_stem(pod)}.log",
                pid_file=self.state_dir / "pids" / f"{_stem(pod)}.pid",
            )
        except OSError as error:
            log.info("cannot start %s: %s", run.key, error)
            self._patch_status(run, self._ended(run, 128, "StartError", message=str(error)))
            run.finished = True
            return
        log.info(
            "started %s as pid %d on %s (pod IP %s): %s",
            run.key,
            run.process.pid,
            local_ip,
            self.network.pod_ip(run.slot),
            " ".join(argv),
        )
        ready = run.check.kind == "alive"
        self._patch_status(run, self._running(run, ready=ready))
        run.ready = ready

    def _running(self, run: Run, *, ready: bool) -> JSON:
        assert run.process is not None and run.slot is not None
        return _status.running(
            run.pod,
            host_ip=HOST_IP,
            pod_ip=self.network.pod_ip(run.slot),
            started_at=run.started_at,
            ready=ready,
            container_id=f"standin://{run.process.pid}",
            now=_now(),
        )

    def _ended(self, run: Run, code: int, reason: str, *, message: str = "") -> JSON:
        assert run.slot is not None
        return _status.terminated(
            run.pod,
            host_ip=HOST_IP,
            pod_ip=self.network.pod_ip(run.slot),
            started_at=run.started_at,
            exit_code=code,
            reason=reason,
            message=message,
            container_id=f"standin://{run.process.pid}" if run.process else "",
            now=_now(),
        )

    def _patch_status(self, run: Run, patch: JSON) -> None:
        meta = run.pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        try:
            run.pod = self.kube.request(
                "PATCH", path, body=patch, content_type=STRATEGIC_MERGE_PATCH
            )
        except ApiError as error:
            if error.status != 404:  # a vanished Pod is handled by its DELETED event
                raise

    def _lookup(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        """A ConfigMap's or Secret's data, read by name as kubelet would."""
        plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
        try:
            obj = self.kube.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return secret_data(obj) if kind == "Secret" else dict(obj.get("data") or {})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path, help="logs/, pids/, pods/")
    parser.add_argument("--node-name", default="lab-node")
    parser.add_argument(
        "--pod-ip-prefix",
        default="127.0.1.",
        help="loopback prefix the Pods' processes listen on (slot N gets PREFIX + N)",
    )
    parser.add_argument(
        "--pod-network-prefix",
        default="10.244.0.",
        help="prefix of the addresses Pods report in status.podIP (see _podnet)",
    )
    args = parser.parse_args(argv)
    setup_logging("node-agent")
    network = PodNetwork(pod_prefix=args.pod_network_prefix, loopback_prefix=args.pod_ip_prefix)
    kube = Kube(args.kubeconfig)
    agent = NodeAgent(kube, node_name=args.node_name, state_dir=args.state_dir, network=network)
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        # Event.set takes the lock that the interrupted stop.wait() may hold: set it elsewhere.
        threading.Thread(target=stop.set).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    log.info("node agent for %s starting; pod network %s0/24", args.node_name, network.pod_prefix)
    agent.run(stop)


if __name__ == "__main__":
    main()
