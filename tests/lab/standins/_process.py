"""A Pod's process on this machine: started in its own process group, probed, stopped, reaped.

Test-only code for the node agent. Each process leads its own process group, so stopping it
also reaches whatever it started. A pid file per Pod lets ``labctl down``, or the next agent,
find processes that outlived their agent.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._container import Readiness

log = logging.getLogger("standins.node_agent")


@dataclass
class PodProcess:
    popen: subprocess.Popen[bytes]
    pid_file: Path

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: Path,
        log_path: Path,
        pid_file: Path,
    ) -> PodProcess:
        """Raises OSError when the command cannot be executed (kubelet's StartError)."""
        with open(log_path, "ab") as log_file:
            popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pid_file.write_text(f"{popen.pid}\n")
        return cls(popen, pid_file)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_code(self) -> int | None:
        """None while running; death by signal N reads 128 + N, as kubelet reports it."""
        code = self.popen.poll()
        if code is None:
            return None
        _signal_group(self.pid, signal.SIGKILL)  # children it left behind
        return code if code >= 0 else 128 - code

    def stop(self, grace: float, name: str) -> None:
        """SIGTERM to the group, SIGKILL after ``grace`` seconds; returns once it has ended."""
        if self.popen.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                log.info("%s ignored SIGTERM for %.0fs; killing it", name, grace)
                _signal_group(self.pid, signal.SIGKILL)
                self.popen.wait()
            log.info("stopped %s (pid %d, exit %s)", name, self.pid, self.popen.returncode)
        _signal_group(self.pid, signal.SIGKILL)
        # A new Pod of the same name may already run and own the file.
        with contextlib.suppress(OSError):
            if self.pid_file.read_text().strip() == str(self.pid):
                self.pid_file.unlink()


def probe(check: Readiness, address: str) -> bool:
    """One readiness check against the process's loopback address."""
    try:
        if check.kind == "http":
            connection = http.client.HTTPConnection(address, check.port, timeout=1.0)
            try:
                connection.request("GET", check.path, headers=check.headers)
                return 200 <= connection.getresponse().status < 400
            finally:
                connection.close()
        if check.kind == "tcp":
            socket.create_connection((address, check.port), timeout=1.0).close()
        return True
    except OSError:
        return False


def reap_strays(pids_dir: Path, pods_dir: Path) -> None:
    """Kills the process groups a previous agent left behind, so their addresses are free.

    A pid file is trusted only while its process still runs in a Pod's directory: a pid reused
    by an unrelated process has another working directory.
    """
    inside = str(pods_dir.resolve()) + os.sep
    for pid_file in pids_dir.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if os.readlink(f"/proc/{pid}/cwd").startswith(inside):
                os.killpg(pid, signal.SIGKILL)
                log.info("killed stray process group %d from %s", pid, pid_file.name)
        pid_file.unlink(missing_ok=True)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
