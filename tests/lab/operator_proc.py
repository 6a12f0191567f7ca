"""Run the real operator (``acmebridge run``) as a subprocess against the lab, for lab tests.

The operator runs exactly as a user runs it, with the flags the lab needs: the HTTP-01 self check
resolves names through the lab's DNS (pebble-challtestsrv) and connects to the port Pebble
validates on, where the ingress stand-in listens.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_STARTED = itertools.count(1)
CLUSTER_RESOURCE_NAMESPACE = "acmebridge"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int
    health_port: int

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def acme_requests(self) -> dict[str, float]:
        """The operator's ACME requests so far, by kind (its own metrics)."""
        from prometheus_client.parser import text_string_to_metric_families

        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == "acmebridge_acme_client_requests_total":
                    kind = sample.labels["kind"]
                    counts[kind] = counts.get(kind, 0) + sample.value
        return counts

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def operator_args(
    env: Mapping[str, str], extra: Sequence[str] = (), *, verbose: bool = True
) -> list[str]:
    """The flags for the lab; ``verbose`` (debug logs, for tests to read) is off in benchmarks,
    which measure the operator as users run it."""
    return [
        "run",
        "--self-check-nameserver",
        env["LAB_DNS_SERVER"],
        "--http01-self-check-port",
        env["LAB_HTTP01_PORT"],
        "--cluster-resource-namespace",
        CLUSTER_RESOURCE_NAMESPACE,
        "--backoff-cap",
        "20",
        *(["--verbose"] if verbose else []),
        *extra,
    ]


def start_operator(
    env: Mapping[str, str],
    *,
    name: str = "operator",
    extra: Sequence[str] = (),
    process_env: Mapping[str, str] | None = None,
    verbose: bool = True,
    kill_after: str | None = None,
) -> OperatorProcess:
    """``kill_after`` names an ACME call (``new_order``, ``answer_challenge``, ``finalize``)
    after whose return the operator SIGKILLs itself: the test-only hook in tests/lab/hooks."""
    logs = Path(env.get("LAB_DIR", str(ROOT / ".lab"))) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # Two operators started in the same second (a kill-and-restart test) need two files.
    log_path = logs / f"{name}-{int(time.time())}-{os.getpid()}-{next(_STARTED)}.log"
    metrics_port, health_port = free_port(), free_port()
    child_env = dict(os.environ)
    child_env.update(
        KUBECONFIG=env["KUBECONFIG"],
        PYTHONPATH=f"{ROOT / 'operator'}:{ROOT}",
        PATH=f"{ROOT / '.venv' / 'bin'}:{child_env.get('PATH', '')}",
    )
    child_env.update(process_env or {})
    if kill_after:
        hooks = Path(__file__).resolve().parent / "hooks"
        child_env["PYTHONPATH"] = f"{hooks}:{child_env['PYTHONPATH']}"
        child_env["LAB_KILL_AFTER"] = kill_after
    args = [
        str(ROOT / ".venv" / "bin" / "acmebridge"),
        *operator_args(env, extra, verbose=verbose),
        "--metrics-port",
        str(metrics_port),
        "--liveness",
        f"http://127.0.0.1:{health_port}/healthz",
    ]
    out = open(log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=child_env, cwd=ROOT)
    op = OperatorProcess(proc, log_path, metrics_port, health_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"operator exited with {proc.returncode}:\n{op.log_text()[-4000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2)
            return op
        except OSError:
            time.sleep(0.3)
    op.stop()
    raise RuntimeError(f"operator not healthy within 60s:\n{op.log_text()[-4000:]}")


@contextmanager
def running_operator(env: Mapping[str, str], **kw: object) -> Iterator[OperatorProcess]:
    op = start_operator(env, **kw)  # type: ignore[arg-type]
    try:
        yield op
    finally:
        op.stop()
