"""Pure formatting of the benchmark's results: the table on stdout, with issue 15's targets.

Targets are printed beside each figure with ``met`` or ``missed``; nothing here asserts them
(a shared 2-core machine is noisy, and speed is for reading, not for failing a build).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.requests_cost import Cost, is_write
from bench.stats import Phase, Summary, ratio


@dataclass(frozen=True)
class Target:
    """An upper bound on a figure, and how to say it."""

    limit: float
    text: str

    def verdict(self, value: float | None) -> str:
        if value is None:
            return ""
        return "met" if value <= self.limit else "missed"


FIRST_READY = Target(2.0, "≤ 2 s")
P50_SHARE = Target(0.40, "p50 ≤ 40% of wall")
RATIO = {"dns-01": Target(0.17, "≤ 0.17 × lego"), "http-01": Target(0.30, "≤ 0.3 × lego")}
OWN_WRITES = Target(12, "≤ 12 own writes")
OWN_READS = Target(10, "≤ 10 own reads")
CPU_PER_CERT = Target(0.04, "≤ 0.04 s")
RSS_5000 = Target(200, "≤ 200 MiB")
RSS_GROWTH = Target(10.0, "≤ 10% more than without them")
IDLE_CPU = Target(1.0, "≤ 1% of a core")


def number(value: float | None, unit: str = "", digits: int = 2) -> str:
    """``12.35 s``; ``-`` for a figure that was not measured."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}{' ' + unit if unit else ''}"


#: one table line: figure, acmebridge, lego, acmebridge / lego, target, verdict
Row = tuple[str, str, str, str, str, str]
HEADER: Row = ("figure", "acmebridge", "lego", "ab / lego", "target", "")


def render(rows: Sequence[Row], *, title: str = "") -> str:
    """Rows as aligned columns under a header; a row whose other cells are empty is a section."""
    table = [HEADER, *rows]
    cells = [r for r in table if any(r[1:])]  # section titles may run past the first column
    widths = [max(len(r[i]) for r in cells) for i in range(len(HEADER))]
    lines = [title] if title else []
    for row in table:
        if not any(row[1:]):
            lines.append(row[0])
            continue
        line = [row[0].ljust(widths[0])]
        line += [row[i].rjust(widths[i]) for i in range(1, 4)]
        line += [row[4].ljust(widths[4]), row[5]]
        lines.append("  ".join(line).rstrip())
    return "\n".join(lines)


def timing_rows(
    challenge: str,
    ours: Summary | None,
    lego: Summary | None,
    *,
    not_measured: str = "",
) -> list[Row]:
    """Wall, rate, first Ready, p50 and p95 for one challenge type, acmebridge beside lego."""
    source = ours or lego
    n = source.n if source else 0
    rows: list[Row] = [(f"{challenge.upper()}, N = {n}", "", "", "", "", "")]
    if ours is None and not_measured:
        # a line of its own (a reason is long; it must not widen the table's columns)
        rows.append((f"  acmebridge not measured: {not_measured}", "", "", "", "", ""))

    def row(
        name: str,
        get: Callable[[Summary], float | None],
        unit: str,
        target: Target | None = None,
        digits: int = 2,
    ) -> Row:
        a = get(ours) if ours else None
        b = get(lego) if lego else None
        r = ratio(a, b)
        shown = target.verdict(r if target is RATIO.get(challenge) else a) if target else ""
        return (
            f"  {name}",
            number(a, unit, digits),
            number(b, unit, digits),
            number(r, "", 2),
            target.text if target else "",
            shown,
        )

    rows.append(row("wall", lambda s: s.wall_seconds, "s", RATIO.get(challenge)))
    rows.append(row("certificates/s", lambda s: s.certificates_per_second, "", digits=1))
    rows.append(row("time to first Ready", lambda s: s.first_ready_seconds, "s", FIRST_READY))
    rows.append(row("p50 asked -> Ready", lambda s: s.p50_seconds, "s"))
    rows.append(row("p95 asked -> Ready", lambda s: s.p95_seconds, "s"))
    share = ours.p50_share_of_wall if ours else None
    lego_share = lego.p50_share_of_wall if lego else None
    rows.append(
        (
            "  p50 / wall",
            number(share and share * 100, "%", 0),
            number(lego_share and lego_share * 100, "%", 0),
            "",
            P50_SHARE.text,
            P50_SHARE.verdict(share),
        )
    )
    failed = (ours.failed if ours else None, lego.failed if lego else None)
    if any(failed):
        rows.append(("  failed", number(failed[0], "", 0), number(failed[1], "", 0), "", "", ""))
    return rows


def cost_rows(who: str, cost: Cost | None, *, own: bool, floor: float = 0.05) -> list[Row]:
    """Writes, then reads, per certificate, each followed by its (verb, resource) rows; rows
    under ``floor`` per certificate are summed into one "other" line."""
    if cost is None:
        return []
    rows: list[Row] = [(f"API requests per certificate, {who}", "", "", "", "", "")]
    for name, value, target, writes in (
        ("writes", cost.writes, OWN_WRITES if own else None, True),
        ("reads", cost.reads, OWN_READS if own else None, False),
    ):
        rows.append(
            (
                f"  {name}",
                number(value, "", 1),
                "",
                "",
                target.text if target else "",
                target.verdict(value) if target else "",
            )
        )
        mine = [row for row in cost.rows if is_write(row[0]) == writes]
        shown = [row for row in mine if row[2] >= floor]
        for verb, resource, x in shown:
            refused = cost.refused.get((verb, resource))
            note = f"{number(refused, '', 2)} of them refused" if refused else ""
            rows.append((f"    {verb} {resource}", number(x, "", 2), "", "", note, ""))
        rest = [row[2] for row in mine if row[2] < floor]
        if rest:
            rows.append((f"    {len(rest)} other", number(sum(rest), "", 2), "", "", "", ""))
    return rows


def figure_row(
    name: str,
    value: float | None,
    unit: str,
    target: Target | None = None,
    *,
    digits: int | None = None,
) -> Row:
    """A figure of acmebridge alone (CPU, memory), with its target."""
    if digits is None:
        small = unit == "s" and value is not None and value < 1
        digits = (4 if value is not None and value < 0.1 else 3) if small else 1
    return (
        f"  {name}",
        number(value, unit, digits),
        "",
        "",
        target.text if target else "",
        target.verdict(value) if target else "",
    )


def cpu_rows(ours: float | None, lego: float | None, reference: float | None) -> list[Row]:
    """The operator's CPU per certificate beside lego's (all its processes) in the same run,
    and the machine's speed at the burst: CPU figures of runs on a shared machine are compared
    by these two, not as seconds (bench.labio.reference_cpu_seconds)."""
    return [
        (
            "  CPU per certificate",
            number(ours, "s", 4),
            number(lego, "s", 4),
            number(ratio(ours, lego), "", 2),
            CPU_PER_CERT.text,
            CPU_PER_CERT.verdict(ours),
        ),
        (
            "  reference workload CPU (machine speed)",
            number(reference, "s", 3),
            "",
            "",
            "",
            "",
        ),
    ]


def growth(before: float | None, after: float | None) -> float | None:
    """(after - before) / before: how much memory grew when unrelated objects arrived."""
    if before is None or after is None or before == 0:
        return None
    return (after - before) / before


def is_scale_key(key: str) -> bool:
    """Keys the scale runs write (``rss_mib_5000``, ``idle_cpu_percent``, ``scale``,
    ``scale_adopted``)."""
    return key == "idle_cpu_percent" or key.startswith(("scale", "rss_mib_"))


def merge_results(
    previous: Mapping[str, Any], current: Mapping[str, Any], *, scale: bool
) -> dict[str, Any]:
    """latest.json after a run, so that one file holds the last default run and the last scale
    runs: a default run replaces every key but the scale runs'; a scale run replaces the keys it
    writes and keeps the rest (the issuance and the adoption scale runs write different ones)."""
    if scale:
        return {**previous, **current}
    kept = {k: v for k, v in previous.items() if is_scale_key(k)}
    return {**kept, **current}


def render_phases(phases: Sequence[Phase], n: int, *, title: str) -> str:
    """Where the time of a burst goes: each phase the Certificates showed, how many showed it,
    and when they first did (seconds since the burst started). A phase most certificates reach
    late, all at once, is where a burst waits."""
    header = ("phase", "certificates", "first", "p50", "p95")
    rows = [header] + [
        (p.name, f"{p.certificates}/{n}", f"{p.first:.1f} s", f"{p.p50:.1f} s", f"{p.p95:.1f} s")
        for p in phases
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [title]
    for r in rows:
        lines.append(
            "  " + "  ".join([r[0].ljust(widths[0]), *(r[i].rjust(widths[i]) for i in range(1, 5))])
        )
    return "\n".join(lines)
