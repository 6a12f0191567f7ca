"""acmebridge under measurement: its own namespace, its own operator process, one Issuer, and
bursts of Certificates whose time, API requests and CPU are recorded.

The operator is the real ``acmebridge run`` (``tests/lab/operator_proc.py``) serving only the
benchmark's namespace, at its default settings and log level (no debug logs), so that it is
measured as users run it. Figures of one burst, between a scrape just before the first create
and one after every certificate is Ready and the solver objects are gone:

- CPU: utime + stime of the operator process (all its threads) from ``/proc/<pid>/stat``;
- memory: its VmRSS after the burst, and VmHWM (the peak);
- the operator's own API requests, from its ``acmebridge_kube_api_requests_total``;
- everyone's, from kube-apiserver's ``apiserver_request_total``, less the benchmark's own.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab import manifests
from tests.lab.labenv import Lab
from tests.lab.operator_proc import (
    CLUSTER_RESOURCE_NAMESPACE,
    OperatorProcess,
    start_operator,
)

from acmebridge.adapters.kube import KubeError, core_path, group_path, ours_path
from bench import cleanup, requests_cost
from bench.labio import ROOT, BenchKube, ProcFigures, proc_figures, wait_until
from bench.lego import Rfc2136, tsig_algorithm
from bench.ready_watch import ReadyWatch, is_ready
from bench.stats import Burst

ISSUER = "bench"
#: Ready=False reasons that no waiting will change (docs/operations.md)
CANNOT_ISSUE = (" SolverNotSupported:", " NoSolver:", " InvalidSpec:")
SOLVER_LABEL = "acmebridge.io/solver"


@dataclass
class Snapshot:
    at: float
    proc: ProcFigures
    apiserver: Counter[requests_cost.Key]
    operator: Counter[requests_cost.Key]
    own: Counter[requests_cost.Key]
    #: of those, the requests answered with something other than 2xx
    apiserver_refused: Counter[requests_cost.Key]
    operator_refused: Counter[requests_cost.Key]


@dataclass
class OperatorRun:
    burst: Burst
    seconds: float
    cpu_seconds: float
    rss_mib: float
    peak_rss_mib: float
    #: the operator's own requests, and everyone's less the benchmark's, over the burst
    operator_requests: Counter[requests_cost.Key]
    everyone_requests: Counter[requests_cost.Key]
    operator_refused: Counter[requests_cost.Key]
    everyone_refused: Counter[requests_cost.Key]
    #: certificate -> phase (bench.stats.phase_of) -> seconds since the burst started
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Certificates created (fewer than the burst's names when a wave stalled)
    created: int = 0
    #: Node -> solver Pods of the burst that ran on it
    solver_nodes: dict[str, int] = field(default_factory=dict)

    def own_cost(self) -> requests_cost.Cost:
        """The operator's own requests per certificate."""
        return requests_cost.per_certificate(
            self.operator_requests, self.burst.n, self.operator_refused
        )

    def everyone_cost(self) -> tuple[requests_cost.Cost, float]:
        """Everyone's requests per certificate on the kinds an issuance touches, and the
        requests per certificate on other kinds (other users of the shared lab)."""
        related, other = requests_cost.split_issuance(self.everyone_requests)
        cost = requests_cost.per_certificate(related, self.burst.n, self.everyone_refused)
        return cost, sum(other.values()) / self.burst.n


def acme_spec(
    lab: Lab, server: str, challenge: str, dns: Rfc2136 | None, issuing_root: bytes | None = None
) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "server": server,
        "privateKeySecretRef": {"name": "bench-account"},
    }
    if issuing_root is not None:
        # As docs/existing-pki.md tells users to: the operator proves ca.crt from it, so the
        # run measures what a well-configured Issuer costs (no CAUnknown Warning per issuance).
        overrides["issuingCABundle"] = base64.b64encode(issuing_root).decode()
    if challenge == "dns-01":
        assert dns is not None
        algorithm = tsig_algorithm(dns.tsig_algorithm)[1]
        overrides["solvers"] = [
            {
                "dns01": {
                    "rfc2136": {
                        "nameserver": dns.nameserver,
                        "tsigKeyName": dns.tsig_name,
                        "tsigAlgorithm": algorithm,
                        "tsigSecretSecretRef": {"name": "bench-tsig", "key": "secret"},
                    }
                }
            }
        ]
    return manifests.pebble_acme(lab.env, **overrides)


class OperatorUnderTest:
    """A namespace, an operator serving it, and a Ready Issuer; all removed on exit."""

    def __init__(
        self,
        lab: Lab,
        bench: BenchKube,
        challenge: str,
        *,
        server: str,
        dns: Rfc2136 | None = None,
        start_at_once: bool = True,
        issuing_root: bytes | None = None,
    ) -> None:
        self.issuing_root = issuing_root
        self.lab = lab
        self.start_at_once = start_at_once
        self.server = server
        self.bench = bench
        self.challenge = challenge
        self.dns = dns
        self.namespace = f"acmebridge-bench-{secrets.token_hex(3)}"
        self.op: OperatorProcess | None = None
        self.watch: ReadyWatch | None = None
        #: how long the namespace's deletion may take before the benchmark finishes the
        #: operator's DNS-01 clean-up itself; what happened
        self.cleanup_timeout = 120.0
        self.cleanup = ""

    def __enter__(self) -> OperatorUnderTest:
        k = self.bench
        k.ensure_namespace(self.namespace)
        try:
            k.ensure_namespace(CLUSTER_RESOURCE_NAMESPACE)
            self.watch = ReadyWatch(k, self.namespace).__enter__()
            if self.start_at_once:
                self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self) -> None:
        """Start the operator (at once on entering, unless ``start_at_once`` is False)."""
        extra = [f"--namespace={self.namespace}"]
        if self.challenge == "dns-01" and self.dns is not None:
            # The lab's zone names no NS host a resolver knows: BIND is its only server,
            # so the propagation check asks BIND (docs/dns01.md).
            extra.append(f"--dns01-nameservers={self.dns.nameserver}")
        self.op = start_operator(
            self.lab.env,
            name=f"bench-operator-{self.challenge}",
            extra=extra,
            verbose=False,
        )

    def __exit__(self, *_: object) -> None:
        """Delete the namespace while the operator still runs (it releases its DNS-01
        finalizers: bench/cleanup.py), then stop the operator and the watch."""
        try:
            self.cleanup = cleanup.delete_namespace(
                self.bench, self.namespace, self.dns, timeout=self.cleanup_timeout
            )
        except KubeError as e:
            self.cleanup = f"namespace {self.namespace}: {e}"
        finally:
            if self.watch is not None:
                self.watch.__exit__()
            if self.op is not None:
                self.op.stop()

    @property
    def pid(self) -> int:
        assert self.op is not None
        return self.op.proc.pid

    def create_issuer(self, timeout: float = 60, *, wait: bool = True) -> None:
        k = self.bench.kube
        if self.challenge == "dns-01":
            assert self.dns is not None
            k.create(
                core_path("secrets", self.namespace),
                {
                    "metadata": {"name": "bench-tsig"},
                    "stringData": {"secret": self.dns.tsig_secret},
                },
            )
        spec = acme_spec(self.lab, self.server, self.challenge, self.dns, self.issuing_root)
        k.create(
            ours_path("issuers", self.namespace), manifests.issuer(self.namespace, ISSUER, spec)
        )
        if wait:
            self.wait_issuer(timeout)

    def wait_issuer(self, timeout: float = 60) -> None:
        k = self.bench.kube
        wait_until(
            "the benchmark's Issuer Ready",
            lambda: is_ready(k.get(ours_path("issuers", self.namespace, ISSUER))),
            timeout,
            interval=0.2,
        )

    def certificate(self, name: str, dns_name: str) -> dict[str, Any]:
        return manifests.certificate(
            self.namespace, name, issuerRef={"name": ISSUER}, dnsNames=[dns_name]
        )

    def one(self, name: str, dns_name: str, timeout: float = 60) -> tuple[float | None, str]:
        """One certificate alone, apply -> Ready: (seconds, "") or (None, why it is not Ready).

        Gives up early when the Certificate says it cannot be issued as specified (a solver the
        operator does not support yet, no solver, an invalid spec): the probe for DNS-01."""
        assert self.watch is not None
        started = time.monotonic()
        try:
            self.bench.kube.create(
                ours_path("certificates", self.namespace), self.certificate(name, dns_name)
            )
        except KubeError as e:
            return None, f"the Certificate was refused: {e.message or e}"
        deadline = started + timeout
        while self.watch.wait_for({name}, min(2.0, max(0.0, deadline - time.monotonic()))):
            why = self._not_ready(name)
            if time.monotonic() >= deadline or any(r in why for r in CANNOT_ISSUE):
                return None, why or f"no Ready condition within {timeout:.0f} s"
        return self.watch.ready[name] - started, ""

    def _not_ready(self, name: str) -> str:
        body = self.bench.kube.get(ours_path("certificates", self.namespace, name)) or {}
        for c in (body.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                return f"Ready={c.get('status')} {c.get('reason')}: {c.get('message')}"
        return ""

    def snapshot(self) -> Snapshot:
        assert self.op is not None
        apiserver, operator = self.bench.apiserver_metrics(), self.op.metrics()
        return Snapshot(
            at=time.monotonic(),
            proc=proc_figures(self.pid),
            apiserver=requests_cost.apiserver_requests(apiserver),
            operator=requests_cost.operator_requests(operator),
            own=Counter(self.bench.own),
            apiserver_refused=requests_cost.apiserver_requests(apiserver, refused_only=True),
            operator_refused=requests_cost.operator_requests(operator, refused_only=True),
        )

    def solver_objects(self) -> int:
        """Solver Pods, Services and Ingresses left in the namespace (the garbage collector
        deletes a Service and an Ingress after their Pod)."""
        paths = (
            core_path("pods", self.namespace),
            core_path("services", self.namespace),
            group_path("networking.k8s.io", "v1", "ingresses", self.namespace),
        )
        return sum(len(self.bench.list(p, label_selector=SOLVER_LABEL)) for p in paths)

    def settle(self, timeout: float = 120) -> None:
        """Wait until no solver object is left: the end of the last issuance's clean-up."""
        with contextlib.suppress(TimeoutError):
            wait_until("solver objects gone", lambda: self.solver_objects() == 0, timeout, 1)

    def burst(
        self,
        names: dict[str, str],
        *,
        workers: int = 1,
        timeout: float = 900,
        stall: float | None = None,
        wave: int | None = None,
    ) -> OperatorRun:
        """Create every Certificate (name -> DNS name) back to back, wait for all Ready (or
        until none has become Ready for ``stall`` seconds). With ``wave``, create that many,
        wait for them, then the next ones: fewer orders in flight at once."""
        assert self.watch is not None
        before = self.snapshot()
        started = time.monotonic()
        asked: dict[str, float] = {}

        def create(name: str) -> None:
            asked[name] = time.monotonic() - started
            self.bench.kube.create(
                ours_path("certificates", self.namespace), self.certificate(name, names[name])
            )

        order = list(names)
        size = wave or len(order)
        deadline = started + timeout
        for i in range(0, len(order), size):
            chunk = order[i : i + size]
            if workers == 1:
                for name in chunk:
                    create(name)
            else:
                self.bench.in_parallel(create, chunk, workers)
            left = deadline - time.monotonic()
            if self.watch.wait_for(set(chunk), max(0.0, left), stall=stall):
                break  # stalled or out of time: the later waves are not created
        ready = {n: t - started for n, t in self.watch.ready.items() if n in names}
        phases = {
            n: {phase: t - started for phase, t in self.watch.phases.get(n, {}).items()}
            for n in names
        }
        seconds = time.monotonic() - started
        # The last solver objects are deleted after Ready: their requests belong to the burst,
        # and so do the controller manager's reactions to them (a moment later).
        self.settle()
        time.sleep(2)
        after = self.snapshot()
        own = requests_cost.delta(before.own, after.own)
        # A Certificate of a wave never created counts as not Ready.
        created = len(asked)
        asked.update({n: seconds for n in names if n not in asked})
        return OperatorRun(
            burst=Burst("acmebridge", self.challenge, asked=asked, ready=ready),
            created=created,
            phases=phases,
            solver_nodes=dict(Counter(self.watch.solver_nodes.values())),
            seconds=seconds,
            cpu_seconds=after.proc.cpu_seconds - before.proc.cpu_seconds,
            rss_mib=after.proc.rss_mib,
            peak_rss_mib=after.proc.peak_rss_mib,
            operator_requests=requests_cost.delta(before.operator, after.operator),
            everyone_requests=requests_cost.minus(
                requests_cost.delta(before.apiserver, after.apiserver), own
            ),
            operator_refused=requests_cost.delta(before.operator_refused, after.operator_refused),
            everyone_refused=requests_cost.delta(before.apiserver_refused, after.apiserver_refused),
        )


class PySpy:
    """``py-spy record`` attached to a process, writing collapsed stacks (``--format raw``) of
    the thread holding the GIL, without pausing the process."""

    def __init__(self, pid: int, out: Path, *, rate: int = 100) -> None:
        self.out = out
        self.log = out.with_suffix(".log")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--nonblocking",
                "--gil",  # Python's own CPU; bench/profile_top.py says why
                "--output",
                str(out),
            ],
            # a file, not a pipe: nothing reads a pipe until the end, and a full one would stall
            # the sampler
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> str:
        """Stop sampling and write the file; py-spy's own summary ("Samples: N Errors: M")."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return next((line for line in lines if "Samples:" in line), lines[-1] if lines else "")
