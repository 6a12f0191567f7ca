"""Pure reading of a py-spy profile: the functions the operator spent its CPU in.

``py-spy record --format raw`` writes one line per distinct stack: frames from the outermost to
the innermost, separated by ``;``, then the number of samples that stack was seen in. Each frame
is ``function (file:line)``. The benchmark records with ``--gil``: only samples of the thread
holding the GIL, which is Python running. Without it, py-spy counts every thread the kernel calls
running or runnable, and on a busy 2-core machine that is mostly threads waiting for a core: in a
trial (60 certificates, 4.3 CPU seconds) ``--gil`` took 421 samples at 100 Hz, plain
``--nonblocking`` 1,484 and the default (pausing the process) 4,494.

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


def package(name: str) -> str:
    """The package a frame's file is in: ``acmebridge``, ``urllib3``, ``json``, ``asyncio``;
    a top-level module is its own package (``ssl``, ``threading``)."""
    match = _FRAME.match(name)
    path = match["file"] if match else name
    if path.startswith("<"):
        return path.strip("<>").split()[0]
    head = path.split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head


def _operator_code(name: str) -> bool:
    """A function of the operator's package, but not its entry point (``main``, the script's
    ``<module>``): those are under the event loop's every sample and say nothing."""
    match = _FRAME.match(name)
    path = match["file"] if match else ""
    return path.startswith("acmebridge/") and path != "acmebridge/__main__.py"


@dataclass(frozen=True)
class Profile:
    samples: int
    by_self: Counter[str]
    by_total: Counter[str]

    def by_package(self) -> Counter[str]:
        """Self samples summed by package: which library the CPU went to."""
        packages: Counter[str] = Counter()
        for name, count in self.by_self.items():
            packages[package(name)] += count
        return packages

    def top(self, count: int = 15) -> dict[str, list[tuple[str, float]]]:
        """The ``count`` largest entries of each ranking, as shares of all samples (0-1):
        ``self``, ``total``, ``package`` (self by package) and ``acmebridge`` (total, the
        operator's own functions only: which of its code paths cost the most)."""
        rankings = {
            "self": self.by_self,
            "total": self.by_total,
            "package": self.by_package(),
            "acmebridge": Counter({f: n for f, n in self.by_total.items() if _operator_code(f)}),
        }
        if not self.samples:
            return {name: [] for name in rankings}
        return {
            name: [(f, n / self.samples) for f, n in ranking.most_common(count)]
            for name, ranking in rankings.items()
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
