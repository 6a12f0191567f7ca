"""A keyed work queue with delayed wake-ups: one pending wake per object, a few workers, and
work that is further along served first.

Why not one kopf daemon or timer per object: a daemon needs a finalizer on every Certificate
(deleting one would hang while the operator is down) and a timer ticks whether or not anything is
due. Here a waiting object costs one heap entry; the only timer is the one for the earliest wake.
The semantics are controller-runtime's workqueue: a key is never processed by two workers at
once, an ``add`` while it is processed runs it once more afterwards, and an earlier wake replaces
a later one.

Priorities make a burst stream out: keys that are due wait in a heap ordered by priority (lower
first), then by when they became due. A reconcile says how far its object has got (an order
being validated or finalized beats one waiting on a solver, which beats a new order), so a
certificate that has started finishes before new work crowds it out, instead of every
certificate of a burst moving one step at a time and all finishing at the end.
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
#: the priority of work nobody said anything about (new objects, watch events)
DEFAULT_PRIORITY = 2


@dataclass(frozen=True)
class Next:
    """What a reconcile asks for: a run after ``delay`` seconds (None: only on a change), at
    ``priority`` (0 first)."""

    delay: float | None
    priority: int = DEFAULT_PRIORITY


#: a reconcile returns seconds until it wants to run again (None: wait for a change), or a Next
Reconcile = Callable[[Key], Awaitable[float | Next | None]]


@dataclass
class WorkQueue:
    reconcile: Reconcile
    workers: int = 4
    clock: Callable[[], float] = time.monotonic
    _due: dict[Key, float] = field(default_factory=dict)
    _priority: dict[Key, int] = field(default_factory=dict)
    _heap: list[tuple[float, int, Key]] = field(default_factory=list)
    _ready: list[tuple[int, int, Key]] = field(default_factory=list)
    _seq: int = 0
    _queued: set[Key] = field(default_factory=set)
    _active: set[Key] = field(default_factory=set)
    _dirty: set[Key] = field(default_factory=set)
    _wake: asyncio.Event | None = None
    _work: asyncio.Condition | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    errors: dict[Key, int] = field(default_factory=dict)

    def add(self, key: Key, delay: float = 0.0, priority: int | None = None) -> None:
        """Run ``key`` after ``delay`` seconds, unless it is already due sooner."""
        if priority is not None:
            self._priority[key] = priority
        when = self.clock() + max(0.0, delay)
        if key in self._due and self._due[key] <= when:
            return
        self._due[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        self.poke()

    def poke(self) -> None:
        """Look at the clock again (after it moved, in tests)."""
        if self._wake is not None:
            self._wake.set()

    def forget(self, key: Key) -> None:
        """The object is gone: drop its pending wake (a running reconcile finishes)."""
        self._due.pop(key, None)
        self._priority.pop(key, None)
        self.errors.pop(key, None)

    def pending(self) -> int:
        return len(self._due)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._work = asyncio.Condition()
        self._tasks.append(asyncio.create_task(self._timer(), name="acmebridge-queue-timer"))
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"acmebridge-worker-{i}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def idle(self) -> None:
        """Returns once nothing is due, queued or running (for tests with a fake clock)."""
        while True:
            now = self.clock()
            due = bool(self._heap) and self._heap[0][0] <= now
            if not (due or self._ready or self._queued or self._active):
                return
            await asyncio.sleep(0)

    async def _timer(self) -> None:
        assert self._wake is not None and self._work is not None
        while True:
            now = self.clock()
            moved = False
            while self._heap and self._heap[0][0] <= now:
                when, _, key = heapq.heappop(self._heap)
                if self._due.get(key) != when:
                    continue  # superseded by an earlier or a cancelled wake
                del self._due[key]
                if key in self._active:
                    self._dirty.add(key)
                elif key not in self._queued:
                    self._queued.add(key)
                    self._seq += 1
                    priority = self._priority.get(key, DEFAULT_PRIORITY)
                    heapq.heappush(self._ready, (priority, self._seq, key))
                    moved = True
            if moved:
                async with self._work:
                    self._work.notify_all()
            timeout = self._heap[0][0] - now if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _take(self) -> Key:
        assert self._work is not None
        async with self._work:
            await self._work.wait_for(lambda: bool(self._ready))
            _, _, key = heapq.heappop(self._ready)
            return key

    async def _worker(self) -> None:
        while True:
            key = await self._take()
            self._queued.discard(key)
            self._active.add(key)
            result: float | Next | None
            try:
                result = await self.reconcile(key)
                self.errors.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                # One broken object must never stop the operator: log, back off, go on.
                n = self.errors.get(key, 0) + 1
                self.errors[key] = n
                result = min(300.0, 2.0**n)
                log.exception(
                    "reconcile of %s failed (attempt %d); retrying in %.0fs", key, n, result
                )
            finally:
                self._active.discard(key)
            step = result if isinstance(result, Next) else Next(result)
            self._priority[key] = step.priority
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key, 0)
            elif step.delay is not None:
                self.add(key, step.delay)
