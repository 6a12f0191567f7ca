"""The work queue's promises: one run per wake, never two workers on one key, earlier wakes win,
a change during a run causes one more run, a failing key does not stop the others, and work that
is further along runs first. Time is a fake clock the tests move; nothing sleeps."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from acmebridge.reconcile.queue import Next, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def run_queue(
    reconcile: Callable[[Any], Awaitable[float | Next | None]],
    body: Callable[[WorkQueue, Clock], Awaitable[None]],
    workers: int = 4,
) -> None:
    clock = Clock()
    q = WorkQueue(reconcile, workers=workers, clock=clock)
    await q.start()
    try:
        await body(q, clock)
    finally:
        await q.stop()


async def advance(q: WorkQueue, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    q.poke()
    await q.idle()


def test_adds_before_a_run_collapse_into_one_run() -> None:
    runs: Counter[str] = Counter()

    async def reconcile(key: Any) -> None:
        runs[key] += 1

    async def body(q: WorkQueue, clock: Clock) -> None:
        for _ in range(5):
            q.add("a")
        await q.idle()

    asyncio.run(run_queue(reconcile, body))
    assert runs == {"a": 1}


def test_an_add_during_a_run_runs_once_more_and_never_concurrently() -> None:
    active: set[str] = set()
    overlaps = 0
    runs: Counter[str] = Counter()
    started = asyncio.Event()
    gate = asyncio.Event()

    async def reconcile(key: Any) -> None:
        nonlocal overlaps
        if key in active:
            overlaps += 1
        active.add(key)
        runs[key] += 1
        if runs[key] == 1:
            started.set()
            await gate.wait()
        active.discard(key)

    async def body(q: WorkQueue, clock: Clock) -> None:
        q.add("a")
        await started.wait()
        q.add("a")
        q.add("a")
        gate.set()
        await q.idle()

    asyncio.run(run_queue(reconcile, body))
    assert runs == {"a": 2}
    assert overlaps == 0


def test_a_returned_delay_schedules_the_next_run() -> None:
    runs: list[float] = []
    clock_seen: list[Clock] = []

    async def reconcile(key: Any) -> float | None:
        runs.append(clock_seen[0].now)
        return 5.0 if len(runs) < 3 else None

    async def body(q: WorkQueue, clock: Clock) -> None:
        clock_seen.append(clock)
        q.add("a")
        await q.idle()
        assert len(runs) == 1
        await advance(q, clock, 4.9)
        assert len(runs) == 1, "not due yet"
        await advance(q, clock, 0.1)
        await advance(q, clock, 5.0)
        await advance(q, clock, 100.0)

    asyncio.run(run_queue(reconcile, body))
    assert runs == [1000.0, 1005.0, 1010.0]


def test_an_earlier_wake_replaces_a_later_one() -> None:
    runs: Counter[str] = Counter()

    async def reconcile(key: Any) -> None:
        runs[key] += 1

    async def body(q: WorkQueue, clock: Clock) -> None:
        q.add("a", 10.0)
        q.add("a", 1.0)
        q.add("a", 5.0)  # later than the pending wake: ignored
        await advance(q, clock, 1.0)
        assert q.pending() == 0
        await advance(q, clock, 20.0)

    asyncio.run(run_queue(reconcile, body))
    assert runs == {"a": 1}


def test_forget_drops_a_pending_wake() -> None:
    runs: Counter[str] = Counter()

    async def reconcile(key: Any) -> None:
        runs[key] += 1

    async def body(q: WorkQueue, clock: Clock) -> None:
        q.add("gone", 5.0)
        q.forget("gone")
        await advance(q, clock, 10.0)

    asyncio.run(run_queue(reconcile, body))
    assert runs == {}


def test_a_failing_key_is_retried_with_backoff_and_others_keep_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: Counter[str] = Counter()

    async def reconcile(key: Any) -> None:
        runs[key] += 1
        if key == "bad":
            raise RuntimeError("broken object")

    async def body(q: WorkQueue, clock: Clock) -> None:
        q.add("bad")
        q.add("good")
        await q.idle()
        assert q.errors["bad"] == 1
        assert q.pending() == 1  # the retry is scheduled, with backoff
        await advance(q, clock, 1.9)
        assert runs["bad"] == 1
        await advance(q, clock, 0.1)
        assert runs["bad"] == 2 and q.errors["bad"] == 2

    asyncio.run(run_queue(reconcile, body))
    assert runs == {"bad": 2, "good": 1}
    assert "broken object" in caplog.text


def test_work_further_along_runs_before_new_work() -> None:
    order: list[str] = []

    async def reconcile(key: Any) -> Next:
        order.append(key)
        # "started" has got somewhere and wants to come back in a second, at high priority.
        return Next(1.0, priority=0) if key == "started" and order.count(key) == 1 else Next(None)

    async def body(q: WorkQueue, clock: Clock) -> None:
        q.add("started")
        await q.idle()
        for i in range(5):
            q.add(f"new-{i}", 1.0)
        await advance(q, clock, 1.0)

    asyncio.run(run_queue(reconcile, body, workers=1))
    assert order[:2] == ["started", "started"], order
    assert order[2:] == [f"new-{i}" for i in range(5)]
