"""ACME servers that are down: one probe per server, and everyone waiting on it woken together.

When a CA goes away (a restart, a network cut), every Certificate that talks to it fails the same
way. Counting that as each Certificate's own failure would make each back off on its own, so
that when the CA returns they trickle back over minutes (and a thousand of them would poll a
dead server on their own schedules). Instead a transport failure (refused, timeout, reset, an
HTTP error page) marks the *server* down: Issuers using it say ``ACMEServerUnavailable``, their
Certificates wait without counting a failure, and one prober per server fetches its directory
with a short backoff. The first answer marks it up and wakes every waiter at once.

TLS trust errors are not outages (the Issuer's caBundle is wrong) and never mark a server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

log = logging.getLogger("acmebridge.servers")

#: (plural, namespace or "", name), as the work queue keys objects
Waiter = tuple[str, str, str]

# Probe delays: quick at first (a CA restart takes seconds), then every PROBE_MAX seconds.
PROBE_FIRST = 1.0
PROBE_MAX = 8.0


@dataclass
class Outage:
    url: str
    since: datetime
    detail: str
    waiters: set[Waiter] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    def message(self) -> str:
        return (
            f"the ACME server {self.url} is unavailable since {self.since:%H:%M:%SZ}: {self.detail}"
        )


class ServerHealth:
    """Which ACME directories are down, probing each until it answers."""

    def __init__(
        self,
        *,
        wake: Callable[[Waiter, float], None],
        clock: Callable[[], datetime],
        on_change: Callable[[str], None] = lambda url: None,
    ) -> None:
        self._wake = wake
        self._clock = clock
        self._listeners = [on_change]
        self._down: dict[str, Outage] = {}

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Also call ``listener(url)`` when a server goes down or comes back."""
        self._listeners.append(listener)

    def _changed(self, url: str) -> None:
        for listener in self._listeners:
            listener(url)

    def outage(self, url: str) -> Outage | None:
        return self._down.get(url)

    def report(
        self, url: str, detail: str, probe: Callable[[], Awaitable[object]], waiter: Waiter
    ) -> Outage:
        """A request to ``url`` failed in transport: mark it down (once) and wait for it."""
        outage = self._down.get(url)
        if outage is None:
            outage = Outage(url, self._clock(), detail)
            self._down[url] = outage
            outage.task = asyncio.get_running_loop().create_task(
                self._probe(outage, probe), name=f"acmebridge-probe-{url}"
            )
            log.warning("ACME server %s is unavailable: %s; probing it", url, detail)
            self._changed(url)
        outage.waiters.add(waiter)
        return outage

    def wait(self, url: str, waiter: Waiter) -> None:
        outage = self._down.get(url)
        if outage is not None:
            outage.waiters.add(waiter)

    async def _probe(self, outage: Outage, probe: Callable[[], Awaitable[object]]) -> None:
        delay = PROBE_FIRST
        while True:
            await asyncio.sleep(delay)
            try:
                await probe()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure: still down
                outage.detail = str(e) or type(e).__name__
                delay = min(delay * 2, PROBE_MAX)
                continue
            break
        self._down.pop(outage.url, None)
        took = (self._clock() - outage.since).total_seconds()
        log.info(
            "ACME server %s answers again after %.0fs; resuming %d waiting object(s)",
            outage.url,
            took,
            len(outage.waiters),
        )
        for waiter in outage.waiters:
            self._wake(waiter, 0.0)
        self._changed(outage.url)

    async def stop(self) -> None:
        tasks = [o.task for o in self._down.values() if o.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._down.clear()
