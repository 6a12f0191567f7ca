"""Pure reading of a py-spy profile: the functions the operator spent its CPU in.

``py-spy record --format raw`` writes one line per distinct stack: frames from the outermost to
the innermost, separated by ``;``, then the number of samples that stack was seen in. Each frame
is ``function (file:line)``. py-spy leaves out idle threads by default, so the samples are CPU.

Two rankings: **self** (the innermost frame: where the CPU actually went) and **total** (any
frame of the stack, counted once per stack: what a call and everything under it cost). Frames
are merged across lines of the same function, and file paths are shortened to the package path
(``acmebridge/adapters/kube.py``, ``kopf/_core/...``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")
_PREFIXES = ("site-packages/", "dist-packages/", "/operator/", "/lib/python3.")


def short_file(path: str) -> str:
    """``/x/.venv/lib/python3.11/site-packages/kopf/_core/a.py`` -> ``kopf/_core/a.py``."""
    for prefix in _PREFIXES:
        at = path.rfind(prefix)
        if at >= 0:
            rest = path[at + len(prefix) :]
            # the standard library: /usr/lib/python3.11/json/decoder.py -> json/decoder.py
            return rest.split("/", 1)[1] if prefix == "/lib/python3." and "/" in rest else rest
    return path


def frame_name(frame: str) -> str:
    """``_call (/x/operator/acmebridge/adapters/kube.py:130)`` ->
    ``_call (acmebridge/adapters/kube.py)``: one entry per function, whatever the line."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['func']} ({short_file(match['file'])})"


@dataclass(frozen=True)
class Profile:
    samples: int
    by_self: Counter[str]
    by_total: Counter[str]

    def top(self, count: int = 15) -> dict[str, list[tuple[str, float]]]:
        """The ``count`` largest entries of each ranking, as shares of all samples (0-1)."""
        if not self.samples:
            return {"self": [], "total": []}
        return {
            "self": [(f, n / self.samples) for f, n in self.by_self.most_common(count)],
            "total": [(f, n / self.samples) for f, n in self.by_total.most_common(count)],
        }


def parse_raw(text: str) -> Profile:
    """A py-spy raw (collapsed stacks) profile; malformed lines are skipped."""
    by_self: Counter[str] = Counter()
    by_total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        samples += count
        by_self[frames[-1]] += count
        for name in set(frames):
            by_total[name] += count
    return Profile(samples=samples, by_self=by_self, by_total=by_total)
