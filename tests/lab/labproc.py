"""Starting, finding and stopping the lab's processes; standard library only.

Every lab process is started in its own session (so it leads a process group that can be signalled
as a whole, and survives the Ctrl-C that interrupted `make`), with a pidfile holding its pid and its
start time. The start time tells a live lab process from an unrelated one that reused the pid.
Every process also carries ``ACMEBRIDGE_LAB_DIR`` in its environment; descendants inherit it, which
lets `down` find strays whose parent is already gone. `down` must work without the venv, so nothing
here imports a third-party package.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER_ENV = "ACMEBRIDGE_LAB_DIR"


@dataclass(frozen=True)
class Proc:
    """A lab process as recorded in its pidfile."""

    name: str
    pid: int
    start_ticks: int

    def alive(self) -> bool:
        """True while this very process (not a successor with its pid) runs and is no zombie."""
        stat = read_stat(self.pid)
        return stat is not None and stat[1] == self.start_ticks and stat[0] != "Z"


def read_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def start(
    name: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    log_dir: Path,
    env: Mapping[str, str],
    cwd: Path,
) -> Proc:
    """Starts ``argv`` detached, logging to ``log_dir/<name>.log``, and records its pidfile."""
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    stat = read_stat(popen.pid)
    proc = Proc(name=name, pid=popen.pid, start_ticks=stat[1] if stat else -1)
    pidfile = run_dir / f"{name}.pid"
    pidfile.write_text(json.dumps({"pid": proc.pid, "start_ticks": proc.start_ticks}))
    return proc


def recorded(run_dir: Path) -> list[Proc]:
    """The processes recorded in ``run_dir``, oldest first."""
    procs: list[Proc] = []
    for pidfile in sorted(run_dir.glob("*.pid"), key=lambda p: p.stat().st_mtime_ns):
        with contextlib.suppress(ValueError, KeyError, OSError):
            data = json.loads(pidfile.read_text())
            procs.append(Proc(pidfile.stem, int(data["pid"]), int(data["start_ticks"])))
    return procs


def marked_pids(lab_dir: Path) -> list[int]:
    """Pids of live processes whose environment says they belong to the lab at ``lab_dir``."""
    needle = f"{MARKER_ENV}={lab_dir}".encode()
    mine = _own_lineage()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                stat = read_stat(int(entry.name))
                if stat and stat[0] != "Z":
                    found.append(int(entry.name))
    return found


def _own_lineage() -> set[int]:
    """This process and its ancestors: `down` run from inside a lab process must not kill itself."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(raw[raw.rindex(")") + 2 :].split()[1])
    return pids


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signals the process group ``pid`` leads, or the process alone when it leads none."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def terminate(pids: Iterable[int], *, grace: float) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns the pids still alive after that."""
    targets = list(pids)
    for pid in targets:
        signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_running(p) for p in targets):
        time.sleep(0.1)
    for pid in [p for p in targets if _running(p)]:
        signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(p) for p in targets):
        time.sleep(0.1)
    return [p for p in targets if _running(p)]


def _running(pid: int) -> bool:
    stat = read_stat(pid)
    if stat is None or stat[0] == "Z":
        # A zombie child of ours (labctl started it): reap it so it disappears from /proc.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """True when binding 127.0.0.1:``port`` fails because another socket holds it."""
    with socket.socket(socket.AF_INET, kind) as sock:
        # Without SO_REUSEADDR a port in TIME_WAIT would look taken; the Go servers set it too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def accepts_tcp(port: int, *, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log, indented, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"    (no log at {path})"
    tail = text.splitlines()[-lines:] or ["(empty)"]
    return "\n".join("    " + line for line in tail)


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Holds an exclusive lock so that two `up`/`down` never interleave (make and pytest, CI)."""
    import fcntl

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
