"""The work queue's promises: one run per wake, never two workers on one key, earlier wakes win,
a change during a run causes one more run, and a failing key does not stop the others."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from acmebridge.reconcile.queue import WorkQueue


async def run_queue(
    reconcile: Callable[[Any], Awaitable[float | None]],
    body: Callable[[WorkQueue], Awaitable[None]],
    workers: int = 4,
) -> None:
    q = WorkQueue(reconcile, workers=workers)
    await q.start()
    try:
        await body(q)
    finally:
        await q.stop()


def test_adds_before_a_run_collapse_into_one_run() -> None:
    runs: Counter[str] = Counter()

    async def reconcile(key: Any) -> None:
        runs[key] += 1

    async def body(q: WorkQueue) -> None:
        for _ in range(5):
            q.add("a")
        await asyncio.sleep(0.05)

    asyncio.run(run_queue(reconcile, body))
    assert runs == {"a": 1}


def test_an_add_during_a_run_runs_once_more_and_never_concurrently() -> None:
    active: set[str] = set()
    overlaps = 0
    runs: Counter[str] = Counter()
    gate = asyncio.Event()

    async def reconcile(key: Any) -> None:
        nonlocal overlaps
        if key in active:
            overlaps += 1
        active.add(key)
        runs[key] += 1
        if runs[key] == 1:
            await gate.wait()
        active.discard(key)

    async def body(q: WorkQueue) -> None:
        q.add("a")
        await asyncio.sleep(0.02)
        q.add("a")
        q.add("a")
        await asyncio.sleep(0.02)
        gate.set()
        await asyncio.sleep(0.05)

    asyncio.run(run_queue(reconcile, body))
    assert runs == {"a": 2}
    assert overlaps == 0


def test_a_returned_delay_schedules_the_next_run() -> None:
    runs: list[float] = []

    async def reconcile(key: Any) -> float | None:
        runs.append(asyncio.get_running_loop().time())
        return 0.05 if len(runs) < 3 else None

    async def body(q: WorkQueue) -> None:
        q.add("a")
        await asyncio.sleep(0.3)

    asyncio.run(run_queue(reconcile, body))
    assert len(runs) == 3
    assert runs[2] - runs[0] >= 0.09


def test_an_earlier_wake_replaces_a_later_one() -> None:
    runs: list[float] = []

    async def reconcile(key: Any) -> None:
        runs.append(asyncio.get_running_loop().time())

    async def body(q: WorkQueue) -> None:
        q.add("a", 10.0)
        q.add("a", 0.01)
        q.add("a", 5.0)  # later than the pending wake: ignored
        await asyncio.sleep(0.1)
        assert q.pending() == 0

    asyncio.run(run_queue(reconcile, body))
    assert len(runs) == 1


def test_forget_drops_a_pending_wake() -> None:
    runs: Counter[str] = Counter()

    async def reconcile(key: Any) -> None:
        runs[key] += 1

    async def body(q: WorkQueue) -> None:
        q.add("gone", 0.05)
        q.forget("gone")
        await asyncio.sleep(0.1)

    asyncio.run(run_queue(reconcile, body))
    assert runs == {}


def test_a_failing_key_is_retried_and_others_keep_running(caplog: pytest.LogCaptureFixture) -> None:
    runs: Counter[str] = Counter()

    async def reconcile(key: Any) -> None:
        runs[key] += 1
        if key == "bad":
            raise RuntimeError("broken object")

    async def body(q: WorkQueue) -> None:
        q.add("bad")
        q.add("good")
        await asyncio.sleep(0.05)
        assert q.errors["bad"] == 1
        assert q.pending() == 1  # the retry is scheduled, with backoff

    asyncio.run(run_queue(reconcile, body))
    assert runs == {"bad": 1, "good": 1}
    assert "broken object" in caplog.text
