"""Pod processes start in their own group, stop within their grace period, and leave no strays."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.lab.standins._container import Readiness
from tests.lab.standins._process import PodProcess, probe, reap_strays
from tests.lab.standins.node_agent import node_selector_matches


def _start(tmp_path: Path, script: str) -> PodProcess:
    workdir = tmp_path / "pods" / "ns_p"
    workdir.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pids").mkdir(exist_ok=True)
    return PodProcess.start(
        ["sh", "-c", script],
        env={"PATH": os.environ["PATH"]},
        workdir=workdir,
        log_path=tmp_path / "p.log",
        pid_file=tmp_path / "pids" / "ns_p.pid",
    )


def _dead(pid: int) -> bool:
    """No such process, or a zombie waiting for whoever inherited it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def test_the_process_gets_its_environment_and_logs_to_its_file(tmp_path: Path) -> None:
    process = _start(tmp_path, 'echo "at $PWD"')
    deadline = time.monotonic() + 5
    while process.exit_code() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.exit_code() == 0
    assert (tmp_path / "p.log").read_text().strip() == f"at {tmp_path / 'pods' / 'ns_p'}"
    assert (tmp_path / "pids" / "ns_p.pid").read_text().strip() == str(process.pid)


def test_stop_kills_a_process_that_ignores_sigterm_and_its_children(tmp_path: Path) -> None:
    process = _start(tmp_path, "trap '' TERM; sleep 300 & echo $! > child; wait; sleep 300")
    child_file = tmp_path / "pods" / "ns_p" / "child"
    deadline = time.monotonic() + 5
    while not child_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(child_file.read_text())

    began = time.monotonic()
    process.stop(0.5, "ns/p")
    assert 0.5 <= time.monotonic() - began < 3
    assert process.exit_code() == 128 + signal.SIGKILL
    assert _dead(process.pid)
    deadline = time.monotonic() + 5
    while not _dead(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _dead(child), "the group's other processes are stopped too"
    assert not (tmp_path / "pids" / "ns_p.pid").exists()


def test_strays_are_killed_only_when_they_run_in_a_pod_directory(tmp_path: Path) -> None:
    stray = _start(tmp_path, "sleep 300")
    outsider = subprocess.Popen(["sleep", "300"], cwd=tmp_path)
    (tmp_path / "pids" / "other.pid").write_text(f"{outsider.pid}\n")
    try:
        reap_strays(tmp_path / "pids", tmp_path / "pods")
        assert stray.popen.wait(5) == -signal.SIGKILL
        assert outsider.poll() is None, "a process elsewhere is not a stray"
        assert list((tmp_path / "pids").iterdir()) == []
    finally:
        outsider.kill()
        outsider.wait()


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_probes(health_port: int) -> None:
    assert probe(Readiness("http", health_port, "/healthz"), "127.0.0.1")
    assert not probe(Readiness("http", health_port, "/other"), "127.0.0.1")
    assert probe(Readiness("tcp", health_port), "127.0.0.1")
    assert probe(Readiness("alive"), "127.0.0.1")


def test_probes_fail_when_nothing_listens() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Health) as server:
        port = server.server_address[1]
    assert not probe(Readiness("tcp", port), "127.0.0.1")
    assert not probe(Readiness("http", port, "/healthz"), "127.0.0.1")


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param(None, True, id="no nodeSelector fits"),
        pytest.param({"kubernetes.io/os": "linux"}, True, id="a label the node has fits"),
        pytest.param({"disk": "ssd"}, False, id="a label the node lacks does not"),
    ],
)
def test_node_selector(selector: dict[str, str] | None, matches: bool) -> None:
    pod = {"spec": {"nodeSelector": selector}}
    labels = {"kubernetes.io/hostname": "lab-node", "kubernetes.io/os": "linux"}
    assert node_selector_matches(pod, labels) is matches
