"""``make bench SCALE=5000``: many Certificates on one Issuer, then unrelated objects, then idle.

1. N Certificates (5,000) on one Issuer, created by 8 clients at once: time until all are
   Ready, the operator's RSS and CPU, and the API requests per second the run caused (the
   operator's own, and everyone's from kube-apiserver's counters).
2. 10,000 unrelated Secrets (1 KiB each) and 10,000 unrelated ConfigMaps added to the same
   namespace: the operator's RSS again. An operator that never lists or watches Secrets must not
   grow (the target: within 10%), and must make no requests meanwhile.
3. 60 s idle with every certificate Ready: CPU as a percentage of one core.

DNS-01 when an Issuer with a dns01 rfc2136 solver works in the lab (no solver Pods: the lab's
node agent runs at most 253 at once), else HTTP-01. Everything it made is in one namespace,
deleted at the end. A run where no certificate has become Ready for 5 minutes is stopped and
reported as stalled, with the operator's ACME requests by outcome (what it was waiting on);
steps 2 and 3 need all certificates Ready, so a stalled run skips them.
"""

from __future__ import annotations

import argparse
import base64
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

from acmebridge.adapters.kube import core_path
from bench import adopt, report, requests_cost
from bench.labio import (
    RESULTS,
    BenchKube,
    machine,
    proc_figures,
    revision,
    write_results,
)
from bench.lego import Rfc2136
from bench.operator_burst import OperatorUnderTest
from bench.plot import plot_ready
from bench.stats import phase_table, ratio

UNRELATED = 10_000
IDLE_SECONDS = 60.0
#: a run where no certificate has become Ready for this long is stopped and reported as stalled
STALL_SECONDS = 300.0


def _progress(under: OperatorUnderTest, n: int, stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.wait(30):
        assert under.watch is not None
        print(
            f"   {time.monotonic() - started:5.0f} s: {under.watch.count()}/{n} Ready", flush=True
        )


def unrelated(bench: BenchKube, namespace: str, count: int) -> float:
    """``count`` Secrets of 1 KiB and ``count`` ConfigMaps, none of them acmebridge's; seconds."""
    started = time.monotonic()

    def secret(i: int) -> None:
        blob = base64.b64encode(os.urandom(1024)).decode()
        bench.kube.create(
            core_path("secrets", namespace),
            {"metadata": {"name": f"unrelated-{i:05d}"}, "type": "Opaque", "data": {"blob": blob}},
        )

    def configmap(i: int) -> None:
        bench.kube.create(
            core_path("configmaps", namespace),
            {"metadata": {"name": f"unrelated-{i:05d}"}, "data": {"blob": "x" * 1024}},
        )

    bench.in_parallel(secret, range(count))
    bench.in_parallel(configmap, range(count))
    return time.monotonic() - started


def open_operator(
    bench: BenchKube, server: str, dns: Rfc2136 | None, stamp: int, issuing_root: bytes | None
) -> tuple[OperatorUnderTest, str]:
    """An operator and a Ready Issuer: DNS-01 when it issues a certificate, else HTTP-01."""
    tried = ""
    for challenge in ("dns-01", "http-01") if dns else ("http-01",):
        under = OperatorUnderTest(
            bench.lab, bench, challenge, server=server, dns=dns, issuing_root=issuing_root
        )
        under.__enter__()
        try:
            under.create_issuer()
            zone = dns.zone if challenge == "dns-01" and dns else "bench.lab.test"
            one, why = under.one("warm-up", f"warm-up-{stamp}.scale.{zone}")
        except BaseException:
            under.__exit__()
            raise
        if one is not None:
            return under, tried
        under.__exit__()
        tried = f"DNS-01 does not work yet ({why}); "
    raise RuntimeError(f"no warm-up certificate became Ready: {tried}")


def acme_outcomes(under: OperatorUnderTest) -> dict[str, int]:
    """The operator's ACME requests by ``kind status`` (``new_order unavailable``): what a
    stalled run was waiting on."""
    assert under.op is not None
    counts: dict[str, int] = {}
    for labels, value in requests_cost.samples(
        under.op.metrics(), "acmebridge_acme_client_requests_total"
    ):
        counts[f"{labels.get('kind')} {labels.get('status')}"] = int(value)
    return counts


def top_level_figures(result: dict[str, Any], n: int) -> dict[str, Any]:
    """The scale figures latest.json keeps at its top level (the README quotes them)."""
    return {
        f"rss_mib_{n}": result["rss_mib"],
        f"rss_mib_{n}_plus_objects": result.get("rss_mib_plus_objects"),
        "idle_cpu_percent": result.get("idle", {}).get("cpu_percent"),
    }


def after_all_ready_rows(result: dict[str, Any]) -> list[report.Row]:
    """The rows for what `after_all_ready` measured (both scale runs print them)."""
    growth = report.growth(result["rss_mib"], result.get("rss_mib_plus_objects"))
    idle = result.get("idle", {}).get("cpu_percent")
    return [
        report.figure_row(
            "RSS + 10,000 Secrets + 10,000 ConfigMaps", result.get("rss_mib_plus_objects"), "MiB"
        ),
        report.figure_row(
            "  growth", None if growth is None else growth * 100, "%", report.RSS_GROWTH
        ),
        report.figure_row(f"idle CPU, {IDLE_SECONDS:.0f} s", idle, "%", report.IDLE_CPU),
    ]


def after_all_ready(bench: BenchKube, under: OperatorUnderTest, result: dict[str, Any]) -> None:
    """Steps 2 and 3: unrelated objects, then idle. Fills ``result``."""
    print(f">> {UNRELATED} unrelated Secrets (1 KiB) and {UNRELATED} ConfigMaps", flush=True)
    before = under.snapshot()
    took = unrelated(bench, under.namespace, UNRELATED)
    time.sleep(30)
    after = under.snapshot()
    result["rss_mib_plus_objects"] = round(after.proc.rss_mib, 1)
    result["unrelated_objects"] = {
        "created_in_seconds": round(took, 1),
        "operator_requests_meanwhile": sum(
            requests_cost.delta(before.operator, after.operator).values()
        ),
        "operator_cpu_seconds_meanwhile": round(
            after.proc.cpu_seconds - before.proc.cpu_seconds, 2
        ),
    }
    print(f">> {IDLE_SECONDS:.0f} s idle, all Ready", flush=True)
    idle0 = under.snapshot()
    time.sleep(IDLE_SECONDS)
    idle1 = under.snapshot()
    seconds = idle1.at - idle0.at
    result["idle"] = {
        "seconds": round(seconds, 1),
        "cpu_percent": round((idle1.proc.cpu_seconds - idle0.proc.cpu_seconds) / seconds * 100, 2),
        "operator_requests": sum(requests_cost.delta(idle0.operator, idle1.operator).values()),
    }


def delete_namespace(bench: BenchKube, under: OperatorUnderTest) -> None:
    """With the operator still running, so that it can take its DNS-01 values out and release
    its finalizers (bench/cleanup.py); then the operator stops."""
    print(">> deleting the benchmark's namespace", flush=True)
    under.cleanup_timeout = 450
    under.__exit__()
    print(f"   {under.cleanup}")


def run_scale(args: argparse.Namespace, bench: BenchKube) -> int:
    n = args.scale
    stamp = int(time.time())
    meta: dict[str, Any] = {
        "machine": machine(),
        "revision": revision(),
        "measured_at": datetime.now(UTC).isoformat(),
        "acme_server": args.ca,
    }
    print(f"acmebridge scale benchmark, N = {n}, at {meta['revision']}: {meta['machine']}")
    under, note = open_operator(
        bench, args.server, Rfc2136.from_env(bench.lab.env), stamp, args.issuing_root
    )
    result: dict[str, Any] = {"n": n, "challenge": under.challenge, **meta}
    if args.scale_wave:
        result["waves_of"] = args.scale_wave
    if note:
        print(f"   {note}measuring HTTP-01")
        result["note"] = note.rstrip("; ")
    try:
        under.settle()
        zone = under.dns.zone if under.challenge == "dns-01" and under.dns else "bench.lab.test"
        names = {f"s{i:05d}": f"s{i:05d}-{stamp}.scale.{zone}" for i in range(n)}
        waves = f", in waves of {args.scale_wave}" if args.scale_wave else ""
        print(f">> {n} Certificates on one Issuer ({under.challenge}{waves})", flush=True)
        stop = threading.Event()
        threading.Thread(target=_progress, args=(under, n, stop), daemon=True).start()
        try:
            run = under.burst(
                names,
                workers=8,
                timeout=args.scale_timeout,
                stall=STALL_SECONDS,
                wave=args.scale_wave or None,
            )
        finally:
            stop.set()
        summary = run.burst.summary()
        time.sleep(10)  # the last status writes and watch events pass
        settled = proc_figures(under.pid)
        result.update(
            {
                "ready": n - summary.failed,
                "wall_seconds": round(run.seconds, 1),
                "first_ready_seconds": summary.first_ready_seconds,
                "p50_seconds": summary.p50_seconds,
                "p95_seconds": summary.p95_seconds,
                "created": run.created,
                "cpu_seconds": round(run.cpu_seconds, 1),
                # per certificate Ready: a stalled run spent its CPU on fewer than N
                "cpu_seconds_per_certificate": round(
                    run.cpu_seconds / max(1, n - summary.failed), 4
                ),
                "rss_mib": round(settled.rss_mib, 1),
                "peak_rss_mib": round(settled.peak_rss_mib, 1),
                "threads": settled.threads,
                "operator_requests_per_second": round(
                    sum(run.operator_requests.values()) / run.seconds, 1
                ),
                "apiserver_requests_per_second": round(
                    sum(run.everyone_requests.values()) / run.seconds, 1
                ),
                "api_operator": run.own_cost().as_dict(),
                "acme_requests": acme_outcomes(under),
            }
        )
        if summary.failed:
            result["stalled"] = (
                f"{n - summary.failed}/{n} Ready; none more for {STALL_SECONDS:.0f} s "
                f"(or {args.scale_timeout:.0f} s passed): the unrelated-objects and idle steps "
                "were not run"
            )
            print(f"   stalled: {result['stalled']}")
        else:
            after_all_ready(bench, under, result)
    finally:
        delete_namespace(bench, under)

    rows: list[report.Row] = [
        (f"scale, N = {n}, {under.challenge.upper()}", "", "", "", "", ""),
        report.figure_row("Ready", float(result["ready"]), "", digits=0),
        report.figure_row(
            "all Ready after" if not summary.failed else "stopped after",
            result["wall_seconds"],
            "s",
        ),
        report.figure_row("certificates/s", ratio(float(result["ready"]), run.seconds), ""),
        report.figure_row("p50 asked -> Ready", summary.p50_seconds, "s"),
        report.figure_row("operator CPU", run.cpu_seconds, "s"),
        report.figure_row(
            "operator CPU per certificate Ready",
            result["cpu_seconds_per_certificate"],
            "s",
            report.CPU_PER_CERT,
        ),
        report.figure_row(
            f"operator RSS, {run.created} Certificates", result["rss_mib"], "MiB", report.RSS_5000
        ),
        report.figure_row("operator peak RSS", result["peak_rss_mib"], "MiB"),
        report.figure_row(
            "API requests/s, the operator's", result["operator_requests_per_second"], ""
        ),
        report.figure_row(
            "API requests/s, everyone's", result["apiserver_requests_per_second"], ""
        ),
        *after_all_ready_rows(result),
    ]
    print()
    print(report.render(rows, title=f"acmebridge at scale, N = {n}"))
    phases = phase_table(run.phases)
    print()
    print(report.render_phases(phases, n, title="phases the Certificates showed (seconds)"))
    if summary.failed:
        print("\nthe operator's ACME requests by kind and outcome:")
        for key, value in sorted(result["acme_requests"].items()):
            print(f"  {key}: {value}")
    result["phases"] = [
        {"phase": p.name, "certificates": p.certificates, "p50": round(p.p50, 1)} for p in phases
    ]
    current: dict[str, Any] = {"scale": result}
    if not summary.failed:  # else the adoption run (--scale-adopt) may give these
        current.update(top_level_figures(result, n))
    path = write_results(current, scale=True)
    png = plot_ready(
        [run.burst],
        RESULTS / f"ready-over-time-{n}.png",
        title=f"{n} certificates on one Issuer, {meta['machine']['cpus']} cores "
        f"({meta['revision']})",
    )
    root = RESULTS.parent.parent
    print(f"\nwrote {path.relative_to(root)} and {png.relative_to(root)}")
    return 0


def run_adopted(args: argparse.Namespace, bench: BenchKube) -> int:
    """``--scale-adopt``: N Certificates with valid Secrets, adopted (bench/adopt.py), then
    steps 2 and 3: the memory and idle figures without N issuances."""
    n = args.scale
    stamp = int(time.time())
    dns_settings = Rfc2136.from_env(bench.lab.env)
    challenge = "dns-01" if dns_settings else "http-01"
    result: dict[str, Any] = {
        "n": n,
        "machine": machine(),
        "revision": revision(),
        "measured_at": datetime.now(UTC).isoformat(),
        "acme_server": args.ca,
    }
    print(f"acmebridge scale benchmark by adoption, N = {n}, at {result['revision']}")
    under = OperatorUnderTest(
        bench.lab, bench, challenge, server=args.server, dns=dns_settings, start_at_once=False
    )
    under.__enter__()
    try:
        under.create_issuer(wait=False)
        zone = dns_settings.zone if dns_settings else "bench.lab.test"
        names = {f"a{i:05d}": f"a{i:05d}-{stamp}.adopt.{zone}" for i in range(n)}
        print(f">> {n} Certificates and their Secrets, before the operator starts", flush=True)
        result["prepared_in_seconds"] = round(adopt.prepare(bench, under, names), 1)
        print(">> the operator starts and adopts them", flush=True)
        result.update(adopt.adopt(bench, under, names, timeout=args.scale_timeout))
        if result["ready"] == n:
            after_all_ready(bench, under, result)
    finally:
        delete_namespace(bench, under)
    rows: list[report.Row] = [
        (f"scale by adoption, N = {n}", "", "", "", "", ""),
        report.figure_row("Ready", float(result["ready"]), "", digits=0),
        report.figure_row("all Ready after", result["all_ready_after_seconds"], "s"),
        report.figure_row(
            "operator CPU per certificate", result["cpu_seconds_per_certificate"], "s"
        ),
        report.figure_row(f"operator RSS, {n} Ready", result["rss_mib"], "MiB", report.RSS_5000),
        report.figure_row("operator peak RSS", result["peak_rss_mib"], "MiB"),
        *after_all_ready_rows(result),
    ]
    print()
    print(report.render(rows, title=f"acmebridge at scale (adopted), N = {n}"))
    current: dict[str, Any] = {"scale_adopted": result}
    if result["ready"] == n:
        current.update(top_level_figures(result, n))
    path = write_results(current, scale=True)
    print(f"\nwrote {path.relative_to(RESULTS.parent.parent)}")
    return 0
