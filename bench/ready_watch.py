"""When each Certificate of a namespace first shows ``Ready=True``, and each phase on the way
(``bench.stats.phase_of``), from a watch (no polling).

A list then a watch from its resourceVersion, renewed every 30 s and re-listed when the API
server says the version is too old (410). The time of a Ready is when its event arrived here;
the requests this makes are counted as the benchmark's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from acmebridge.adapters.kube import GROUP, VERSION
from acmebridge.domain.solvers import CERTIFICATE_LABEL, SOLVER_LABEL
from bench.labio import BenchKube
from bench.stats import phase_of


def _plain(bench: BenchKube, obj: Any) -> dict[str, Any]:
    """The client's model objects (Pods) as the API's JSON, camelCase; dicts as they are."""
    if isinstance(obj, dict):
        return obj
    return cast(dict[str, Any], bench.api.sanitize_for_serialization(obj))


def is_ready(obj: dict[str, Any] | None) -> bool:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def solver_pod_phase(event_type: str, pod: dict[str, Any]) -> str:
    """A solver Pod's lifecycle, as its Certificate's phases: created, ready (serving the
    token), deleted (the challenge is over)."""
    if event_type == "DELETED" or pod.get("metadata", {}).get("deletionTimestamp"):
        return "solver Pod deleted"
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return "solver Pod ready"
    return "solver Pod created"


class ReadyWatch:
    """Records the monotonic time of each Certificate's first Ready=True in one namespace, and
    of each phase on the way: its conditions, and its HTTP-01 solver Pod's lifecycle."""

    def __init__(self, bench: BenchKube, namespace: str) -> None:
        self.bench = bench
        self.namespace = namespace
        self.ready: dict[str, float] = {}
        #: certificate -> phase -> when it was first seen
        self.phases: dict[str, dict[str, float]] = {}
        #: solver Pod -> the Node it ran on: the lab's node stand-in (``lab-node``, local
        #: processes) or its real node (``lab-kubelet``, containers), which differ in speed
        self.solver_nodes: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Condition(self._lock)
        custom = client.CustomObjectsApi(bench.api)
        core = client.CoreV1Api(bench.api)
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(
                    "certificates",
                    custom.list_namespaced_custom_object,
                    (GROUP, VERSION, namespace, "certificates"),
                    {},
                    self._note,
                ),
                name="ready-watch",
                daemon=True,
            ),
            threading.Thread(
                target=self._run,
                args=(
                    "pods",
                    core.list_namespaced_pod,
                    (namespace,),
                    {"label_selector": SOLVER_LABEL},
                    self._note_pod,
                ),
                name="solver-watch",
                daemon=True,
            ),
        ]
        self.error: BaseException | None = None

    def __enter__(self) -> ReadyWatch:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)

    def _note(self, event_type: str, obj: dict[str, Any]) -> None:
        now = time.monotonic()
        name = obj["metadata"]["name"]
        phase = phase_of(obj)
        with self._changed:
            if phase is not None:
                self.phases.setdefault(name, {}).setdefault(phase, now)
            if is_ready(obj) and name not in self.ready:
                self.ready[name] = now
                self._changed.notify_all()

    def _note_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        now = time.monotonic()
        certificate = (pod.get("metadata", {}).get("labels") or {}).get(CERTIFICATE_LABEL)
        node = (pod.get("spec") or {}).get("nodeName")
        with self._lock:
            if node:
                self.solver_nodes[pod["metadata"]["name"]] = node
            if certificate:
                phases = self.phases.setdefault(certificate, {})
                phases.setdefault(solver_pod_phase(event_type, pod), now)

    def _run(
        self,
        resource: str,
        list_fn: Callable[..., Any],
        args: tuple[str, ...],
        kwargs: dict[str, str],
        note: Callable[[str, dict[str, Any]], None],
    ) -> None:
        try:
            while not self._stop.is_set():
                listed = _plain(self.bench, list_fn(*args, **kwargs))
                self.bench.count("LIST", resource)
                for item in listed.get("items", []):
                    note("ADDED", item)
                version = listed["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    w = watch.Watch()
                    self.bench.count("WATCH", resource)
                    try:
                        for event in w.stream(
                            list_fn,
                            *args,
                            **kwargs,
                            resource_version=version,
                            timeout_seconds=30,
                            allow_watch_bookmarks=True,
                        ):
                            obj = _plain(self.bench, event["object"])
                            version = obj.get("metadata", {}).get("resourceVersion", version)
                            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                                note(event["type"], obj)
                            if self._stop.is_set():
                                w.stop()
                    except ApiException as e:
                        if e.status == 410:
                            break  # too old: list again
                        raise
                    except ProtocolError:
                        # The API server closed the stream mid-chunk (it does so at the
                        # watch's timeout now and then): watch again from the last version.
                        continue
        except BaseException as e:  # reported by wait_for; the thread must not die silently
            self.error = e
            with self._changed:
                self._changed.notify_all()

    def wait_for(self, names: set[str], timeout: float, *, stall: float | None = None) -> set[str]:
        """Block until every name is Ready, ``timeout`` passes, or (with ``stall``) no name has
        become Ready for that many seconds; the names still not Ready."""
        deadline = time.monotonic() + timeout
        progress, last = time.monotonic(), -1
        with self._changed:
            while True:
                missing = names - self.ready.keys()
                if not missing or self.error is not None:
                    break
                now = time.monotonic()
                if len(missing) != last:
                    progress, last = now, len(missing)
                if now >= deadline or (stall is not None and now - progress >= stall):
                    break
                self._changed.wait(min(deadline - now, 1.0))
        if self.error is not None:
            raise RuntimeError(f"the Ready watch failed: {self.error}") from self.error
        return names - self.ready.keys()

    def count(self) -> int:
        with self._lock:
            return len(self.ready)
