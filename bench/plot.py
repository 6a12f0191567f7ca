"""Certificates Ready over time, one line per client, one panel per challenge type (PNG)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.stats import Burst

COLOURS = {"acmebridge": "#1f77b4", "lego": "#ff7f0e"}


def steps(burst: Burst) -> tuple[list[float], list[int]]:
    """(seconds since start, certificates Ready by then), starting at (0, 0)."""
    times = burst.ready_times()
    return [0.0, *times], list(range(len(times) + 1))


def plot_ready(
    bursts: Sequence[Burst], path: Path, *, title: str, notes: Mapping[str, str] | None = None
) -> Path:
    """One panel per challenge type, in the order measured; ``notes`` (challenge -> text) are
    written into their panel, for a client that was not measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    notes = notes or {}
    challenges = list(dict.fromkeys([*(b.challenge for b in bursts), *notes]))
    fig, axes = plt.subplots(
        1, len(challenges), figsize=(6 * len(challenges), 4.2), squeeze=False, sharey=True
    )
    for ax, challenge in zip(axes[0], challenges, strict=True):
        for burst in (b for b in bursts if b.challenge == challenge):
            x, y = steps(burst)
            ax.step(
                x,
                y,
                where="post",
                label=f"{burst.client} ({len(burst.ready)}/{burst.n})",
                color=COLOURS.get(burst.client),
            )
        if challenge in notes:
            ax.text(
                0.02,
                0.97,
                textwrap.fill(notes[challenge], 60),
                transform=ax.transAxes,
                va="top",
                fontsize=7,
                color="#555555",
            )
        ax.set_title(challenge.upper())
        ax.set_xlabel("seconds since the burst started")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right")
    axes[0][0].set_ylabel("certificates Ready")
    axes[0][0].yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
