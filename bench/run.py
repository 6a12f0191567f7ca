"""``make bench``: acmebridge beside lego on the same N certificates from the lab's Pebble.

For each challenge type (HTTP-01 through the solver Pod, Service and Ingress; DNS-01 by RFC 2136
through the lab's BIND, when the lab has it), in one run on one machine:

- **acmebridge**: N Certificates on one Issuer created back to back; time to first Ready, p50
  and p95 apply -> Ready, wall until all are Ready, certificates per second; the operator's API
  requests per certificate by verb and resource, its own and everyone's (kube-apiserver's count,
  which includes what the controller manager and the lab's node and ingress stand-ins do for the
  solver objects); its CPU seconds per certificate and its memory.
- **lego** (``bench/lego.py``): the same N names with 10 lego processes at once.
- **acmebridge / lego**: the ratio of the walls, per challenge type.

Output: a table with issue 15's targets beside each figure (printed, never asserted),
``bench/results/latest.json`` and ``bench/results/ready-over-time.png``. ``--profile`` records
the operator with py-spy during the HTTP-01 burst and prints where its CPU went. ``--scale N``
runs the scale benchmark instead (``bench/scale.py``). Run from the repository root with the lab
up: ``make bench`` (``PROFILE=1``, ``SCALE=5000``, ``BENCH_N=50``).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench import report, requests_cost
from bench.ca import bench_pebble
from bench.labio import (
    RESULTS,
    BenchKube,
    load_lab,
    machine,
    reference_cpu_seconds,
    revision,
    write_results,
)
from bench.lego import Rfc2136, run_lego_burst
from bench.operator_burst import OperatorRun, OperatorUnderTest, PySpy
from bench.plot import plot_ready
from bench.profile_top import parse_raw
from bench.stats import Burst, Summary, phase_table, ratio

HTTP_ZONE = "bench.lab.test"
NO_BIND = "the lab has no BIND yet (no BIND_* settings in .lab/env)"


def background_rate(bench: BenchKube, seconds: float = 5) -> float:
    """Requests per second the API server served for others just before the run."""
    before = requests_cost.apiserver_requests(bench.apiserver_metrics())
    own_before = dict(bench.own)
    time.sleep(seconds)
    after = requests_cost.apiserver_requests(bench.apiserver_metrics())
    moved = requests_cost.minus(
        requests_cost.delta(before, after), requests_cost.delta(own_before, bench.own)
    )
    return sum(moved.values()) / seconds


def summary_dict(summary: Summary) -> dict[str, Any]:
    return {
        "n": summary.n,
        "failed": summary.failed,
        "wall_seconds": _round(summary.wall_seconds),
        "certificates_per_second": _round(summary.certificates_per_second),
        "first_ready_seconds": _round(summary.first_ready_seconds),
        "p50_seconds": _round(summary.p50_seconds),
        "p95_seconds": _round(summary.p95_seconds),
        "p50_share_of_wall": _round(summary.p50_share_of_wall),
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def operator_dict(run: OperatorRun, one: float | None, n: int) -> dict[str, Any]:
    own = run.own_cost()
    everyone, other = run.everyone_cost()
    phases = [
        {
            "phase": p.name,
            "certificates": p.certificates,
            "first": _round(p.first, 2),
            "p50": _round(p.p50, 2),
            "p95": _round(p.p95, 2),
        }
        for p in phase_table(run.phases)
    ]
    return {
        **summary_dict(run.burst.summary()),
        "one_certificate_seconds": _round(one),
        "cpu_seconds": _round(run.cpu_seconds),
        "cpu_seconds_per_certificate": _round(run.cpu_seconds / n, 4),
        "rss_mib": _round(run.rss_mib, 1),
        "peak_rss_mib": _round(run.peak_rss_mib, 1),
        "api_operator": own.as_dict(),
        "api_everyone": everyone.as_dict(),
        "api_other_kinds_per_certificate": _round(other, 2),
        "phases": phases,
        "solver_pods_on": run.solver_nodes,
        "apiserver_requests_per_second": _round(sum(run.everyone_requests.values()) / run.seconds),
    }


def measure(
    args: argparse.Namespace, bench: BenchKube, challenge: str, stamp: int
) -> tuple[dict[str, Any], list[Burst], list[report.Row], dict[str, Any], str]:
    """One challenge type, both clients: its JSON section, bursts, table rows and profile."""
    lab = bench.lab
    dns = Rfc2136.from_env(lab.env)
    zone = HTTP_ZONE if challenge == "http-01" else (dns.zone if dns else "")
    section: dict[str, Any] = {"n": args.n}
    bursts: list[Burst] = []
    profile: dict[str, Any] = {}
    ours_run: OperatorRun | None = None
    why = ""
    if challenge == "dns-01" and dns is None:
        why = NO_BIND
    else:
        print(f">> acmebridge, {challenge}: {args.n} certificates", flush=True)
        with OperatorUnderTest(
            lab, bench, challenge, server=args.server, dns=dns, issuing_root=args.issuing_root
        ) as under:
            under.create_issuer()
            one, why = under.one("warm-up", f"warm-up-{stamp}.ab.{zone}", timeout=60)
            if one is not None:
                names = {f"c{i:04d}": f"c{i:04d}-{stamp}.ab.{zone}" for i in range(args.n)}
                # Other clients of the shared lab show in the API server's counts too: their
                # rate just before the burst (the operator idle) estimates their share.
                under.settle()
                background = background_rate(bench)
                spy = None
                if args.profile and challenge == "http-01":
                    out = RESULTS / "profile-acmebridge-http01.txt"
                    spy = PySpy(under.pid, out)
                reference = reference_cpu_seconds()
                ours_run = under.burst(names, timeout=args.timeout)
                reference = (reference + reference_cpu_seconds()) / 2
                if spy is not None:
                    print(f"   {spy.stop()}")
                    parsed = parse_raw(spy.out.read_text())
                    profile = {
                        **parsed.top(15),
                        "samples": parsed.samples,
                        "cpu_seconds": round(ours_run.cpu_seconds, 2),
                        "file": str(spy.out.relative_to(RESULTS.parent.parent)),
                    }
                section["acmebridge"] = operator_dict(ours_run, one, args.n)
                section["acmebridge"]["reference_cpu_seconds"] = _round(reference, 4)
                section["acmebridge"]["api_background_per_certificate_estimate"] = _round(
                    background * ours_run.seconds / args.n, 2
                )
                bursts.append(ours_run.burst)
            elif challenge == "dns-01":
                why = f"an Issuer with a dns01 rfc2136 solver does not work yet ({why})"
    if ours_run is None:
        section["acmebridge"] = {"not_measured": why}

    lego_summary: Summary | None = None
    lego_why = NO_BIND if challenge == "dns-01" and dns is None else ""
    if not lego_why:
        print(f">> lego, {challenge}: {args.n} certificates, {args.slots} at once", flush=True)
        names_lego = [f"l{i:04d}-{stamp}.lego.{zone}" for i in range(args.n)]
        lego = run_lego_burst(
            lab,
            names_lego,
            challenge,
            server=args.server,
            slots=args.slots,
            dns=dns,
            timeout=args.timeout,
        )
        lego_summary = lego.burst.summary()
        bursts.append(lego.burst)
        section["lego"] = {
            **summary_dict(lego_summary),
            "processes_at_once": args.slots,
            "cpu_seconds_per_certificate": _round(lego.cpu_seconds / args.n, 4),
            "max_rss_mib": _round(lego.max_rss_mib, 1),
            "errors": lego.errors[:5],
        }
        if challenge == "http-01":
            # Proof that Pebble fetched the tokens from lego's listeners, not the ingress.
            section["lego"]["validation_requests_served"] = lego.served
    else:
        section["lego"] = {"not_measured": lego_why}

    phases_text = ""
    if ours_run is not None:
        phases_text = report.render_phases(
            phase_table(ours_run.phases),
            args.n,
            title=f"acmebridge, {challenge.upper()}: phases the Certificates showed "
            "(seconds since the burst started)",
        )
    ours_summary = ours_run.burst.summary() if ours_run else None
    section["ratio_vs_lego"] = _round(
        ratio(
            ours_summary.wall_seconds if ours_summary else None,
            lego_summary.wall_seconds if lego_summary else None,
        )
    )
    rows = report.timing_rows(challenge, ours_summary, lego_summary, not_measured=why)
    if ours_run is not None:
        n = args.n
        rows.append(
            report.figure_row(
                "one certificate alone", section["acmebridge"]["one_certificate_seconds"], "s"
            )
        )
        rows += report.cpu_rows(
            ours_run.cpu_seconds / n,
            section["lego"].get("cpu_seconds_per_certificate"),
            section["acmebridge"].get("reference_cpu_seconds"),
        )
        rows.append(report.figure_row("operator RSS after the burst", ours_run.rss_mib, "MiB"))
        if ours_run.solver_nodes:
            nodes = ", ".join(f"{k} {v}" for k, v in sorted(ours_run.solver_nodes.items()))
            rows.append((f"  solver Pods ran on: {nodes}", "", "", "", "", ""))
        rows += report.cost_rows("the operator's own", ours_run.own_cost(), own=True)
        everyone, other = ours_run.everyone_cost()
        rows += report.cost_rows(
            "everyone's on the kinds an issuance touches (apiserver_request_total)",
            everyone,
            own=False,
        )
        rows.append(report.figure_row("other kinds (other lab users)", other, ""))
        estimate = section["acmebridge"]["api_background_per_certificate_estimate"]
        rows.append(report.figure_row("lab background before the burst", estimate, ""))
    return section, bursts, rows, profile, phases_text


def top_level(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's flat keys, from the HTTP-01 run (measured on every lab)."""
    http = sections.get("http-01", {})
    ours, lego = http.get("acmebridge", {}), http.get("lego", {})
    return {
        "n": http.get("n"),
        "challenge": "http-01",
        "acmebridge_seconds": ours.get("wall_seconds"),
        "lego_seconds": lego.get("wall_seconds"),
        "ratio_vs_lego": http.get("ratio_vs_lego"),
        "first_ready_seconds": ours.get("first_ready_seconds"),
        "p50_seconds": ours.get("p50_seconds"),
        "p95_seconds": ours.get("p95_seconds"),
        "api_writes_per_certificate": ours.get("api_operator", {}).get("writes_per_certificate"),
        "api_reads_per_certificate": ours.get("api_operator", {}).get("reads_per_certificate"),
        "cpu_seconds_per_certificate": ours.get("cpu_seconds_per_certificate"),
        "lego_cpu_seconds_per_certificate": lego.get("cpu_seconds_per_certificate"),
        "reference_cpu_seconds": ours.get("reference_cpu_seconds"),
        "rss_mib": ours.get("rss_mib"),
    }


def print_profile(profile: dict[str, Any]) -> None:
    print(
        f"\noperator CPU profile ({profile.get('file', '')}): {profile.get('samples')} samples "
        f"holding the GIL at 100/s; the operator used {profile.get('cpu_seconds')} CPU s"
    )
    for ranking, title in (
        ("package", "by package (self)"),
        ("acmebridge", "the operator's own functions (total: with what they call)"),
        ("self", "by function (self: the innermost frame)"),
        ("total", "by function (total)"),
    ):
        print(f"  {title}:")
        for name, share in profile.get(ranking, [])[:12]:
            print(f"    {share * 100:5.1f}%  {name}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200, help="certificates per client and challenge")
    p.add_argument("--slots", type=int, default=10, help="lego processes at once")
    p.add_argument("--challenges", default="http-01,dns-01")
    p.add_argument("--profile", action="store_true", help="py-spy the operator (HTTP-01 burst)")
    p.add_argument("--scale", type=int, default=0, help="run the scale benchmark with N instead")
    p.add_argument("--timeout", type=float, default=900, help="seconds per burst")
    p.add_argument("--scale-timeout", type=float, default=7200, help="seconds for the scale burst")
    p.add_argument(
        "--scale-wave",
        type=int,
        default=0,
        help="create the scale run's Certificates in waves of this many (0: all at once)",
    )
    p.add_argument(
        "--scale-adopt",
        action="store_true",
        help="scale by adopting ready-made Secrets instead of issuing (bench/adopt.py)",
    )
    p.add_argument(
        "--shared-pebble",
        action="store_true",
        help="use the lab's Pebble instead of the benchmark's own (bench/ca.py says why not)",
    )
    args = p.parse_args()
    lab = load_lab()
    bench = BenchKube(lab)
    if args.shared_pebble:
        args.server, args.ca = lab.pebble_directory_url, "the lab's Pebble"
        args.issuing_root = lab.pebble_root.read_bytes()
        return run(args, bench)
    with bench_pebble(lab) as pebble:
        args.server, args.ca = pebble.directory_url, "the benchmark's own Pebble (bench/ca.py)"
        args.issuing_root = pebble.root_pem()
        print(f"ACME server: {args.ca}, {args.server}")
        return run(args, bench)


def run(args: argparse.Namespace, bench: BenchKube) -> int:
    if args.scale:
        from bench.scale import run_adopted, run_scale

        return run_adopted(args, bench) if args.scale_adopt else run_scale(args, bench)

    started = datetime.now(UTC)
    stamp = int(time.time())
    meta: dict[str, Any] = {
        "machine": machine(),
        "revision": revision(),
        "measured_at": started.isoformat(),
        "acme_server": args.ca,
    }
    print(f"acmebridge benchmark at {meta['revision']}: {meta['machine']}")
    background = background_rate(bench)
    print(f"other API traffic on the lab just before: {background:.1f} requests/s\n")
    sections: dict[str, dict[str, Any]] = {}
    bursts: list[Burst] = []
    rows: list[report.Row] = []
    profile: dict[str, Any] = {}
    phase_texts: list[str] = []
    notes: dict[str, str] = {}
    for challenge in [c.strip() for c in args.challenges.split(",") if c.strip()]:
        section, b, r, prof, phases_text = measure(args, bench, challenge, stamp)
        sections[challenge] = section
        bursts += b
        rows += r
        profile = profile or prof
        if phases_text:
            phase_texts.append(phases_text)
        if "not_measured" in section.get("acmebridge", {}):
            notes[challenge] = "acmebridge not measured: " + section["acmebridge"]["not_measured"]

    print()
    print(report.render(rows, title=f"acmebridge beside lego, N = {args.n}"))
    for text in phase_texts:
        print(f"\n{text}")
    if profile:
        print_profile(profile)
    current = {
        **top_level(sections),
        **meta,
        "background_api_requests_per_second": round(background, 1),
        "profiled": bool(profile),
        "by_challenge": sections,
    }
    if profile:
        current["profile"] = profile
    path = write_results(current, scale=False)
    png = plot_ready(
        bursts,
        RESULTS / "ready-over-time.png",
        notes=notes,
        title=f"{args.n} certificates from Pebble, {meta['machine']['cpus']} cores "
        f"({meta['revision']})",
    )
    root = RESULTS.parent.parent
    print(f"\nwrote {path.relative_to(root)} and {png.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
