"""When each Certificate of a namespace first shows ``Ready=True``, from a watch (no polling).

A list then a watch from its resourceVersion, renewed every 30 s and re-listed when the API
server says the version is too old (410). The time of a Ready is when its event arrived here;
the requests this makes are counted as the benchmark's own.
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from acmebridge.adapters.kube import GROUP, VERSION
from bench.labio import BenchKube


def is_ready(obj: dict[str, Any] | None) -> bool:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


class ReadyWatch:
    """Records the monotonic time of each Certificate's first Ready=True in one namespace."""

    def __init__(self, bench: BenchKube, namespace: str) -> None:
        self.bench = bench
        self.namespace = namespace
        self.ready: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name="ready-watch", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=40)

    def _note(self, obj: dict[str, Any]) -> None:
        if not is_ready(obj):
            return
        name = obj["metadata"]["name"]
        with self._changed:
            if name not in self.ready:
                self.ready[name] = time.monotonic()
                self._changed.notify_all()

    def _run(self) -> None:
        api = client.CustomObjectsApi(self.bench.api)
        args = (GROUP, VERSION, self.namespace, "certificates")
        try:
            while not self._stop.is_set():
                listed = cast(dict[str, Any], api.list_namespaced_custom_object(*args))
                self.bench.count("LIST", "certificates")
                for item in listed.get("items", []):
                    self._note(item)
                version = listed["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    w = watch.Watch()
                    self.bench.count("WATCH", "certificates")
                    try:
                        for event in w.stream(
                            api.list_namespaced_custom_object,
                            *args,
                            resource_version=version,
                            timeout_seconds=30,
                            allow_watch_bookmarks=True,
                        ):
                            obj: dict[str, Any] = event["object"]
                            version = obj.get("metadata", {}).get("resourceVersion", version)
                            if event["type"] in ("ADDED", "MODIFIED"):
                                self._note(obj)
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

    def wait_for(self, names: set[str], timeout: float) -> set[str]:
        """Block until every name is Ready or ``timeout`` passes; the names still not Ready."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                missing = names - self.ready.keys()
                if not missing or self.error is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 1.0))
        if self.error is not None:
            raise RuntimeError(f"the Ready watch failed: {self.error}") from self.error
        return names - self.ready.keys()

    def count(self) -> int:
        with self._lock:
            return len(self.ready)
