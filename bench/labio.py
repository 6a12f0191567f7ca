"""The benchmark's IO against the lab: the API client, metric scrapes, process figures, the
machine, and the benchmark's own request count (subtracted from the API server's)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from kubernetes import client, config
from tests.lab.labenv import Lab

from acmebridge.adapters.kube import Conflict, Kube, core_path
from bench.report import merge_results
from bench.requests_cost import Key

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / ".bench"
T = TypeVar("T")

#: the API server's verb for each HTTP method of our client (a GET without a name is a LIST)
_VERBS = {"POST": "POST", "PUT": "PUT", "PATCH": "PATCH", "DELETE": "DELETE"}


def load_lab() -> Lab:
    env_file = ROOT / ".lab" / "env"
    if not env_file.exists():
        sys.exit("the lab is not up: run `make lab-up` first")
    return Lab.from_env_file(env_file)


class BenchKube:
    """The benchmark's own API access, counting each request as the API server will, so that
    "everyone's" requests can leave the benchmark's out."""

    def __init__(self, lab: Lab, *, pool: int = 8) -> None:
        api = client.ApiClient(config.new_client_from_config(lab.env["KUBECONFIG"]).configuration)
        # One connection per worker thread; urllib3's default pool of 4 would serialise them.
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = pool
        self.lab = lab
        self.api = api
        self.own: Counter[Key] = Counter()
        self._lock = threading.Lock()
        self._listing = threading.local()
        self.kube = Kube(api, on_request=self._count)

    def _count(self, method: str, status: int, resource: str) -> None:
        # The API server calls a GET of a collection LIST; only self.list makes those.
        listing = getattr(self._listing, "on", False)
        verb = _VERBS.get(method) or ("LIST" if listing else "GET")
        with self._lock:
            self.own[(verb, resource)] += 1

    def count(self, verb: str, resource: str, n: int = 1) -> None:
        """A request made outside Kube (the Ready watch)."""
        with self._lock:
            self.own[(verb, resource)] += n

    def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        self._listing.on = True
        try:
            return self.kube.list(path, label_selector=label_selector)
        finally:
            self._listing.on = False

    def ensure_namespace(self, name: str) -> None:
        with contextlib.suppress(Conflict):
            self.kube.create(core_path("namespaces", None), {"metadata": {"name": name}})

    def raw_get(self, path: str) -> str:
        """A GET outside the resource APIs (``/metrics``) with the admin client certificate."""
        method, url, headers, _, _ = self.api.param_serialize(
            "GET", path, auth_settings=["BearerToken"]
        )
        resp = self.api.call_api(method, url, header_params=headers, _request_timeout=(5, 60))
        return str(resp.read().decode())

    def apiserver_metrics(self) -> str:
        return self.raw_get("/metrics")

    def in_parallel(self, fn: Callable[[T], object], items: Iterable[T], workers: int = 8) -> None:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(fn, items):
                pass


@dataclass(frozen=True)
class ProcFigures:
    cpu_seconds: float
    rss_mib: float
    peak_rss_mib: float
    threads: int


def proc_figures(pid: int) -> ProcFigures:
    """utime + stime from /proc/<pid>/stat (all threads), and VmRSS, VmHWM, Threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()

    def kib(key: str) -> float:
        return int(status.get(key, "0 kB").split()[0]) / 1024

    return ProcFigures(cpu, kib("VmRSS"), kib("VmHWM"), int(status.get("Threads", "0")))


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


#: a Certificate-sized body: what the operator mostly spends its CPU on is moving such JSON
_REFERENCE_BODY = {
    "apiVersion": "acmebridge.io/v1alpha1",
    "kind": "Certificate",
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "labels": {f"k{i}": "v" * 20 for i in range(8)},
    },
    "spec": {"secretName": "web-tls", "dnsNames": [f"n{i}.shop.example" for i in range(4)]},
    "status": {"conditions": [{"type": "Ready", "status": "True", "message": "m" * 200}] * 3},
}


def reference_cpu_seconds(rounds: int = 3) -> float:
    """CPU seconds this process needs for a fixed Python workload (JSON round trips of a
    Certificate-sized body, SHA-256, dict work), the best of ``rounds``: how fast the machine runs
    Python just now. On a shared machine it drifts (a similar fixed loop took 0.24 to 0.39 s
    within one minute here), and the operator's CPU per certificate drifts with it: runs are
    compared by CPU per certificate divided by this, or by the ratio to lego's CPU in the same
    run."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        digest = hashlib.sha256()
        for _ in range(10000):
            text = json.dumps(_REFERENCE_BODY)
            body = json.loads(text)
            body["metadata"] = {**body["metadata"], "resourceVersion": str(len(text))}
            digest.update(text.encode())
        best = min(best, time.thread_time() - started)
    return best


def revision() -> str:
    """The commit measured, with ``+dirty`` when the operator's source has uncommitted changes;
    ``BENCH_REVISION`` when set (a tree exported without git)."""
    if os.environ.get("BENCH_REVISION"):
        return os.environ["BENCH_REVISION"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "operator"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    if not head:
        return "unknown"
    return f"{head}+dirty" if dirty else head


class Challtestsrv:
    """pebble-challtestsrv's management API: the lab's DNS as Pebble sees it."""

    def __init__(self, lab: Lab) -> None:
        self.url = lab.env["CHALLTESTSRV_URL"]

    def add_a(self, host: str, address: str) -> None:
        r = requests.post(
            f"{self.url}/add-a", json={"host": _fqdn(host), "addresses": [address]}, timeout=5
        )
        r.raise_for_status()

    def clear_a(self, host: str) -> None:
        requests.post(f"{self.url}/clear-a", json={"host": _fqdn(host)}, timeout=5)


def _fqdn(host: str) -> str:
    return host if host.endswith(".") else host + "."


def wait_until(what: str, done: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def write_results(current: dict[str, Any], *, scale: bool) -> Path:
    path = RESULTS / "latest.json"
    previous: dict[str, Any] = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = {}
    merged = merge_results(previous, current, scale=scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    return path
