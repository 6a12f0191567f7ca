"""A keyed work queue with delayed wake-ups: one pending wake per object, a few workers.

Why not one kopf daemon or timer per object: a daemon needs a finalizer on every Certificate
(deleting one would hang while the operator is down) and a timer ticks whether or not anything is
due. Here a waiting object costs one heap entry; the only timer is the one for the earliest wake.
The semantics are controller-runtime's workqueue: a key is never processed by two workers at
once, an ``add`` while it is processed runs it once more afterwards, and an earlier wake replaces
a later one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Key = Hashable
#: a reconcile returns seconds until it wants to run again, or None to wait for a change
Reconcile = Callable[[Key], Awaitable[float | None]]


@dataclass
class WorkQueue:
    reconcile: Reconcile
    workers: int = 4
    clock: Callable[[], float] = time.monotonic
    _due: dict[Key, float] = field(default_factory=dict)
    _heap: list[tuple[float, int, Key]] = field(default_factory=list)
    _seq: int = 0
    _ready: asyncio.Queue[Key] | None = None
    _queued: set[Key] = field(default_factory=set)
    _active: set[Key] = field(default_factory=set)
    _dirty: set[Key] = field(default_factory=set)
    _wake: asyncio.Event | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    errors: dict[Key, int] = field(default_factory=dict)

    def add(self, key: Key, delay: float = 0.0) -> None:
        """Run ``key`` after ``delay`` seconds, unless it is already due sooner."""
        when = self.clock() + max(0.0, delay)
        if key in self._due and self._due[key] <= when:
            return
        self._due[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        if self._wake is not None:
            self._wake.set()

    def forget(self, key: Key) -> None:
        """The object is gone: drop its pending wake (a running reconcile finishes)."""
        self._due.pop(key, None)
        self.errors.pop(key, None)

    def pending(self) -> int:
        return len(self._due)

    async def start(self) -> None:
        self._ready = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._timer(), name="acmebridge-queue-timer"))
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"acmebridge-worker-{i}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _timer(self) -> None:
        assert self._ready is not None and self._wake is not None
        while True:
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                when, _, key = heapq.heappop(self._heap)
                if self._due.get(key) != when:
                    continue  # superseded by an earlier or a cancelled wake
                del self._due[key]
                if key in self._active:
                    self._dirty.add(key)
                elif key not in self._queued:
                    self._queued.add(key)
                    self._ready.put_nowait(key)
            timeout = self._heap[0][0] - now if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _worker(self) -> None:
        assert self._ready is not None
        while True:
            key = await self._ready.get()
            self._queued.discard(key)
            self._active.add(key)
            delay: float | None
            try:
                delay = await self.reconcile(key)
                self.errors.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                # One broken object must never stop the operator: log, back off, go on.
                n = self.errors.get(key, 0) + 1
                self.errors[key] = n
                delay = min(300.0, 2.0**n)
                log.exception(
                    "reconcile of %s failed (attempt %d); retrying in %.0fs", key, n, delay
                )
            finally:
                self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key, 0)
            elif delay is not None:
                self.add(key, delay)
