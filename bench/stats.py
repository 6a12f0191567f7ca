"""Pure arithmetic of a burst: percentiles, and the timing figures of one client's run.

A burst is N certificates asked for at once. For each certificate the benchmark records when it
was asked for (acmebridge: just before its Certificate was created; lego: the burst's start, as
every name is queued then) and when it was Ready (acmebridge: the watch event that shows
``Ready=True``; lego: its process exited with a certificate), both in seconds since the burst
started. Everything printed about timing is derived here from those two lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating linearly between the closest ranks.

    The same definition as numpy's default and Python's ``statistics.quantiles(method=
    "inclusive")``, so figures can be checked by hand: p50 of [1, 2, 3, 4] is 2.5.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Burst:
    """One client's burst: when each certificate was asked for and when it was Ready.

    ``asked`` and ``ready`` are seconds since the burst started, keyed by certificate name; a
    name in ``asked`` but not in ``ready`` failed or timed out.
    """

    client: str
    challenge: str
    asked: dict[str, float]
    ready: dict[str, float]

    @property
    def n(self) -> int:
        return len(self.asked)

    @property
    def failed(self) -> int:
        return sum(1 for name in self.asked if name not in self.ready)

    def latencies(self) -> list[float]:
        """Asked -> Ready per certificate, in seconds, for those that became Ready."""
        return [self.ready[n] - self.asked[n] for n in self.asked if n in self.ready]

    def ready_times(self) -> list[float]:
        """When each certificate became Ready, sorted: the curve the plot draws."""
        return sorted(self.ready.values())

    def summary(self) -> Summary:
        times = self.ready_times()
        latencies = self.latencies()
        if not times:
            return Summary(n=self.n, failed=self.failed)
        wall = times[-1]
        return Summary(
            n=self.n,
            failed=self.failed,
            wall_seconds=wall,
            certificates_per_second=len(times) / wall if wall > 0 else None,
            first_ready_seconds=times[0],
            p50_seconds=percentile(latencies, 50),
            p95_seconds=percentile(latencies, 95),
        )


@dataclass(frozen=True)
class Summary:
    """The timing figures of a burst; None where nothing became Ready."""

    n: int
    failed: int
    wall_seconds: float | None = None
    certificates_per_second: float | None = None
    first_ready_seconds: float | None = None
    p50_seconds: float | None = None
    p95_seconds: float | None = None

    @property
    def p50_share_of_wall(self) -> float | None:
        """p50 / wall: near 1 when nothing finishes until everything does, low when
        certificates stream out of the burst."""
        return ratio(self.p50_seconds, self.wall_seconds)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def phase_of(body: Mapping[str, Any]) -> str | None:
    """Where a Certificate is, as its user sees it: ``Ready``, the reason of ``Issuing=True``
    (with the ACME order's state when the status shows one), or ``Ready=False: <reason>``."""
    status = body.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    ready, issuing = conditions.get("Ready"), conditions.get("Issuing")
    if ready and ready.get("status") == "True":
        return "Ready"
    if issuing and issuing.get("status") == "True":
        label = f"Issuing: {issuing.get('reason')}"
    elif ready:
        label = f"Ready={ready.get('status')}: {ready.get('reason')}"
    else:
        return None
    order = status.get("order")
    state = order.get("state") if isinstance(order, Mapping) else None
    return f"{label}, order {state}" if state else label


@dataclass(frozen=True)
class Phase:
    """How many certificates passed through a phase, and when they first showed it (seconds
    since the burst started)."""

    name: str
    certificates: int
    first: float
    p50: float
    p95: float


def phase_table(seen: Mapping[str, Mapping[str, float]]) -> list[Phase]:
    """``seen``: certificate -> phase -> when it first showed that phase. One row per phase,
    in the order certificates typically reach them (by median)."""
    by_phase: dict[str, list[float]] = {}
    for phases in seen.values():
        for phase, when in phases.items():
            by_phase.setdefault(phase, []).append(when)
    rows = [
        Phase(name, len(ts), min(ts), percentile(ts, 50), percentile(ts, 95))
        for name, ts in by_phase.items()
    ]
    return sorted(rows, key=lambda r: (r.p50, r.name))
