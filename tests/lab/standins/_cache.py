"""A watch cache of one resource, as an informer keeps one: what the stand-ins route and act on.

A controller does not ask the API server on every request; it lists a resource once, watches
from the list's resourceVersion, and lists again when the watch expires (410) or breaks
(``_kube.list_and_watch``). Readers get the last objects the API server showed, also while it is
unreachable: an API server restart does not turn into failed requests. Each cache has one thread
filling it; reads and writes take its lock, and readers get copies of the lists they ask for.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ._kube import ListWatch, list_and_watch

JSON = dict[str, Any]


def _key(obj: JSON) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


class WatchCache:
    """The objects of one list path (all namespaces), kept current by a watch."""

    def __init__(self, path: str, query: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.query = dict(query or {})
        self._objects: dict[tuple[str, str], JSON] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()

    # ---- filling -----------------------------------------------------------------------

    def run(self, kube: ListWatch, stop: threading.Event) -> None:
        """Lists and watches until ``stop`` is set (the caller's thread)."""
        list_and_watch(
            kube,
            self.path,
            query=self.query,
            on_list=self.replace,
            on_event=self.apply,
            keep_going=lambda: not stop.is_set(),
        )

    def start(self, kube: ListWatch, stop: threading.Event) -> threading.Thread:
        name = f"watch {self.path}"
        thread = threading.Thread(target=self.run, args=(kube, stop), name=name, daemon=True)
        thread.start()
        return thread

    def replace(self, items: list[JSON]) -> None:
        """A fresh list: it is the whole truth (objects deleted while unwatched go away)."""
        with self._lock:
            self._objects = {_key(obj): obj for obj in items}
        self._synced.set()

    def apply(self, kind: str, obj: JSON) -> None:
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(_key(obj), None)
            else:  # ADDED, MODIFIED
                self._objects[_key(obj)] = obj

    # ---- reading -----------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """True once the first list arrived; the cache never forgets it had one."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def items(self) -> list[JSON]:
        with self._lock:
            return list(self._objects.values())

    def get(self, namespace: str, name: str) -> JSON | None:
        with self._lock:
            return self._objects.get((namespace, name))

    def labelled(self, namespace: str, label: str, value: str) -> list[JSON]:
        """The objects of one namespace whose ``label`` is ``value``."""
        with self._lock:
            return [
                obj
                for (ns, _), obj in self._objects.items()
                if ns == namespace and (obj["metadata"].get("labels") or {}).get(label) == value
            ]

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)
