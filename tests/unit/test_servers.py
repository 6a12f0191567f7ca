"""reconcile.servers: a server that is down is probed once for everyone, and everyone waiting on
it is woken together when it answers. The probe's delays are real but short (the first is one
second), so these tests run the probe with a fake that answers on its second try."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from acmebridge.reconcile import servers
from acmebridge.reconcile.servers import ServerHealth


def test_an_outage_is_probed_once_and_wakes_every_waiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "PROBE_FIRST", 0.001)
    woken: list[tuple[object, float]] = []
    changes: list[str] = []
    probes = 0

    async def probe() -> None:
        nonlocal probes
        probes += 1
        if probes < 2:
            raise OSError("connection refused")

    async def body() -> None:
        health = ServerHealth(
            wake=lambda key, delay: woken.append((key, delay)),
            clock=lambda: datetime(2026, 6, 1, tzinfo=UTC),
            on_change=changes.append,
        )
        first = health.report("https://ca/dir", "refused", probe, ("certificates", "a", "1"))
        again = health.report("https://ca/dir", "refused", probe, ("certificates", "a", "2"))
        health.wait("https://ca/dir", ("issuers", "a", "ca"))
        assert first is again and health.outage("https://ca/dir") is first
        assert "unavailable since" in first.message()
        assert first.task is not None
        await first.task
        assert health.outage("https://ca/dir") is None

    asyncio.run(body())
    assert probes == 2, "one prober, however many reported the outage"
    assert sorted(k for k, _ in woken) == [
        ("certificates", "a", "1"),
        ("certificates", "a", "2"),
        ("issuers", "a", "ca"),
    ]
    assert all(delay == 0.0 for _, delay in woken)
    assert changes == ["https://ca/dir", "https://ca/dir"], "down, then back"
