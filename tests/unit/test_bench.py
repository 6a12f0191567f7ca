"""The benchmark's pure parts: percentiles, burst figures, metric parsing, request accounting,
profile reading, the table and latest.json. The measuring itself needs the lab (`make bench`)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
from bench import report, requests_cost
from bench.lego import tsig_algorithm
from bench.plot import steps
from bench.profile_top import frame_name, package, parse_raw, short_file
from bench.ready_watch import solver_pod_phase
from bench.stats import Burst, Phase, percentile, phase_of, phase_table, ratio

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bench"

# -- percentiles and bursts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([1, 2, 3, 4], 50, 2.5, id="the median of an even count interpolates"),
        pytest.param([3, 1, 2], 50, 2, id="unsorted input is sorted first"),
        pytest.param([5], 95, 5, id="one value is every percentile"),
        pytest.param(list(range(1, 101)), 95, 95.05, id="p95 of 1..100"),
        pytest.param([1, 2, 3, 4], 0, 1, id="p0 is the smallest"),
        pytest.param([1, 2, 3, 4], 100, 4, id="p100 is the largest"),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_agrees_with_the_standard_librarys_inclusive_quantiles() -> None:
    values = [0.3, 7.1, 2.2, 9.9, 4.4, 4.4, 1.0, 8.5]
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    assert percentile(values, 50) == pytest.approx(statistics.median(values))
    assert percentile(values, 95) == pytest.approx(cuts[18])


@pytest.mark.parametrize(
    ("values", "q"),
    [pytest.param([], 50, id="no values"), pytest.param([1.0], 101, id="above 100")],
)
def test_percentile_refuses_what_has_none(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def test_a_burst_measures_latency_from_each_certificates_own_apply() -> None:
    burst = Burst(
        "acmebridge",
        "http-01",
        asked={"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0},
        ready={"a": 2.0, "b": 4.0, "c": 8.0},
    )
    s = burst.summary()
    assert (s.n, s.failed) == (4, 1)
    assert s.first_ready_seconds == 2.0
    assert s.wall_seconds == 8.0
    assert s.certificates_per_second == pytest.approx(3 / 8)
    assert s.p50_seconds == pytest.approx(3.0)  # latencies 2, 3, 6
    assert s.p95_seconds == pytest.approx(5.7)
    assert s.p50_share_of_wall == pytest.approx(3 / 8)


def test_a_burst_where_nothing_became_ready_has_no_timing() -> None:
    s = Burst("lego", "dns-01", asked={"a": 0.0}, ready={}).summary()
    assert (s.failed, s.wall_seconds, s.p50_seconds, s.p50_share_of_wall) == (1, None, None, None)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(3.0, 12.0, 0.25, id="acmebridge a quarter of lego"),
        pytest.param(None, 12.0, None, id="acmebridge not measured"),
        pytest.param(3.0, 0.0, None, id="a zero denominator"),
    ],
)
def test_ratio(a: float | None, b: float | None, expected: float | None) -> None:
    assert ratio(a, b) == expected


def test_the_plot_starts_at_zero_and_steps_up_once_per_certificate() -> None:
    burst = Burst("lego", "http-01", asked=dict.fromkeys("abc", 0.0), ready={"a": 2.0, "b": 1.0})
    assert steps(burst) == ([0.0, 1.0, 2.0], [0, 1, 2])


def cert_status(**conditions: tuple[str, str]) -> dict[str, object]:
    return {
        "status": {
            "conditions": [
                {"type": t, "status": status, "reason": reason}
                for t, (status, reason) in conditions.items()
            ]
        }
    }


@pytest.mark.parametrize(
    ("body", "phase"),
    [
        pytest.param(cert_status(Ready=("True", "Ready")), "Ready", id="ready"),
        pytest.param(
            cert_status(Ready=("False", "DoesNotExist"), Issuing=("True", "Validating")),
            "Issuing: Validating",
            id="issuing wins over not ready",
        ),
        pytest.param(
            {
                "status": {
                    **cert_status(Issuing=("True", "Issuing"))["status"],  # type: ignore[dict-item]
                    "order": {"state": "pending"},
                }
            },
            "Issuing: Issuing, order pending",
            id="with the order's state",
        ),
        pytest.param(
            cert_status(Ready=("False", "SolverNotSupported"), Issuing=("False", "Failed")),
            "Ready=False: SolverNotSupported",
            id="a failure",
        ),
        pytest.param({}, None, id="no status yet"),
    ],
)
def test_the_phase_a_certificate_shows(body: dict[str, object], phase: str | None) -> None:
    assert phase_of(body) == phase


@pytest.mark.parametrize(
    ("event", "pod", "phase"),
    [
        pytest.param("ADDED", {"metadata": {}}, "solver Pod created", id="created"),
        pytest.param(
            "MODIFIED",
            {"metadata": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            "solver Pod ready",
            id="ready",
        ),
        pytest.param(
            "MODIFIED",
            {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}},
            "solver Pod deleted",
            id="being deleted",
        ),
        pytest.param("DELETED", {"metadata": {}}, "solver Pod deleted", id="gone"),
    ],
)
def test_a_solver_pods_lifecycle_as_phases(event: str, pod: dict[str, Any], phase: str) -> None:
    assert solver_pod_phase(event, pod) == phase


def test_phases_are_ordered_by_when_most_certificates_reach_them() -> None:
    seen = {
        "a": {"Issuing: Issuing": 0.5, "Ready": 9.0},
        "b": {"Issuing: Issuing": 1.0, "Issuing: Validating": 6.0, "Ready": 10.0},
    }
    assert phase_table(seen) == [
        Phase("Issuing: Issuing", 2, 0.5, 0.75, 0.975),
        Phase("Issuing: Validating", 1, 6.0, 6.0, 6.0),
        Phase("Ready", 2, 9.0, 9.5, 9.95),
    ]
    text = report.render_phases(phase_table(seen), 2, title="phases")
    assert text.splitlines()[3] == "  Issuing: Validating           1/2  6.0 s  6.0 s  6.0 s"


# -- metrics and requests -----------------------------------------------------------------------

APISERVER = (FIXTURES / "apiserver-metrics.txt").read_text()

OPERATOR = (FIXTURES / "operator-metrics.txt").read_text()


def test_apiserver_requests_by_verb_and_resource_leave_out_non_resource_paths() -> None:
    assert requests_cost.apiserver_requests(APISERVER) == {
        ("POST", "events"): 10,
        ("PATCH", "certificates/status"): 5,
        ("LIST", "pods"): 3,
    }


def test_the_operators_requests_by_method_and_resource_whatever_their_status() -> None:
    assert requests_cost.operator_requests(OPERATOR) == {
        ("GET", "secrets"): 15,
        ("PATCH", "certificates/status"): 8,
    }


def test_delta_drops_what_did_not_move_and_restarts_from_zero_after_a_reset() -> None:
    before = {("GET", "secrets"): 10, ("POST", "events"): 5, ("PUT", "secrets"): 9}
    after = {("GET", "secrets"): 14, ("POST", "events"): 5, ("PUT", "secrets"): 2}
    assert requests_cost.delta(before, after) == {("GET", "secrets"): 4, ("PUT", "secrets"): 2}


def test_minus_takes_out_the_benchmarks_own_requests_and_never_goes_below_zero() -> None:
    everyone = {("POST", "certificates"): 200, ("LIST", "pods"): 3, ("GET", "secrets"): 7}
    own = {("POST", "certificates"): 200, ("LIST", "pods"): 5}
    assert requests_cost.minus(everyone, own) == {("GET", "secrets"): 7}


def test_cost_per_certificate_splits_writes_from_reads_writes_first() -> None:
    cost = requests_cost.per_certificate(
        {("GET", "secrets"): 20, ("PATCH", "certificates/status"): 16, ("POST", "events"): 4},
        n=4,
    )
    assert (cost.writes, cost.reads) == (5.0, 5.0)
    assert cost.rows == (
        ("PATCH", "certificates/status", 4.0),
        ("POST", "events", 1.0),
        ("GET", "secrets", 5.0),
    )
    assert cost.as_dict()["by_verb_and_resource"] == {
        "PATCH certificates/status": 4.0,
        "POST events": 1.0,
        "GET secrets": 5.0,
    }


def test_refused_requests_are_counted_apart_in_both_sources() -> None:
    assert requests_cost.apiserver_requests(APISERVER, refused_only=True) == {
        ("PATCH", "certificates/status"): 1
    }
    assert requests_cost.operator_requests(OPERATOR, refused_only=True) == {("GET", "secrets"): 3}


def test_cost_rows_say_how_many_requests_were_refused() -> None:
    cost = requests_cost.per_certificate(
        {("POST", "pods"): 20}, n=10, refused={("POST", "pods"): 10}
    )
    row = next(r for r in report.cost_rows("own", cost, own=True) if "POST pods" in r[0])
    assert row[1:5] == ("2.00", "", "", "1.00 of them refused")
    assert cost.as_dict()["refused_by_verb_and_resource"] == {"POST pods": 1.0}


def test_cpu_per_certificate_stands_beside_legos_with_the_machines_speed() -> None:
    cpu, reference = report.cpu_rows(0.036, 0.024, 0.105)
    assert cpu[1:] == ("0.0360 s", "0.0240 s", "1.50", "≤ 0.04 s", "met")
    assert reference[0].strip().startswith("reference workload") and reference[1] == "0.105 s"
    assert report.cpu_rows(0.05, None, None)[0][1:] == ("0.0500 s", "-", "-", "≤ 0.04 s", "missed")


def test_requests_on_kinds_no_issuance_touches_are_set_apart() -> None:
    related, other = requests_cost.split_issuance(
        {("PUT", "endpointslices"): 3, ("PATCH", "pods/status"): 2, ("DELETE", "roles"): 1}
    )
    assert related == {("PUT", "endpointslices"): 3, ("PATCH", "pods/status"): 2}
    assert other == {("DELETE", "roles"): 1}


# -- the profile --------------------------------------------------------------------------------

PROFILE = (FIXTURES / "py-spy-raw.txt").read_text()


@pytest.mark.parametrize(
    ("path", "short"),
    [
        pytest.param(
            "/x/.venv/lib/python3.11/site-packages/kopf/_core/a.py",
            "kopf/_core/a.py",
            id="an installed package",
        ),
        pytest.param(
            "/work/main/operator/acmebridge/adapters/kube.py",
            "acmebridge/adapters/kube.py",
            id="the operator's source",
        ),
        pytest.param("/usr/lib/python3.11/json/decoder.py", "json/decoder.py", id="the stdlib"),
        pytest.param("<frozen runpy>", "<frozen runpy>", id="anything else is left alone"),
    ],
)
def test_short_file(path: str, short: str) -> None:
    assert short_file(path) == short


def test_frames_of_one_function_are_one_entry_whatever_the_line() -> None:
    a = frame_name("_call (/work/main/operator/acmebridge/adapters/kube.py:130)")
    b = frame_name("_call (/work/main/operator/acmebridge/adapters/kube.py:131)")
    assert a == b == "_call (acmebridge/adapters/kube.py)"


def test_a_profile_ranks_by_innermost_frame_and_by_presence_on_the_stack() -> None:
    profile = parse_raw(PROFILE)
    assert profile.samples == 100
    top = profile.top(3)
    assert top["self"] == [
        ("sign (josepy/jws.py)", 0.6),
        ("loads (json/__init__.py)", 0.3),
        ("_call (acmebridge/adapters/kube.py)", 0.1),
    ]
    assert top["total"][:2] == [("_bootstrap (threading.py)", 1.0), ("sign (josepy/jws.py)", 0.6)]
    # a function is counted once per stack, and both of its lines add up
    assert profile.by_total["_call (acmebridge/adapters/kube.py)"] == 40


def test_an_empty_profile_has_no_top() -> None:
    assert parse_raw("").top() == {"self": [], "total": [], "package": [], "acmebridge": []}


@pytest.mark.parametrize(
    ("frame", "name"),
    [
        pytest.param("loads (json/__init__.py)", "json", id="a standard library package"),
        pytest.param("read (ssl.py)", "ssl", id="a top-level module"),
        pytest.param("isdir (<frozen genericpath>)", "frozen", id="a frozen module"),
        pytest.param("_call (acmebridge/adapters/kube.py)", "acmebridge", id="the operator"),
    ],
)
def test_the_package_of_a_frame(frame: str, name: str) -> None:
    assert package(frame) == name


def test_a_profile_sums_self_time_by_package_and_ranks_the_operators_own_code() -> None:
    top = parse_raw(PROFILE).top()
    assert top["package"] == [("josepy", 0.6), ("json", 0.3), ("acmebridge", 0.1)]
    assert top["acmebridge"] == [("_call (acmebridge/adapters/kube.py)", 0.4)]


# -- the table and latest.json ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "value", "verdict"),
    [
        pytest.param(report.FIRST_READY, 1.5, "met", id="under the bound"),
        pytest.param(report.FIRST_READY, 2.0, "met", id="at the bound"),
        pytest.param(report.OWN_WRITES, 25.0, "missed", id="over the bound"),
        pytest.param(report.CPU_PER_CERT, None, "", id="not measured"),
    ],
)
def test_targets_say_met_or_missed(
    target: report.Target, value: float | None, verdict: str
) -> None:
    assert target.verdict(value) == verdict


def test_the_timing_table_puts_lego_and_the_ratio_beside_acmebridge() -> None:
    ours = Burst("acmebridge", "http-01", asked={"a": 0.0, "b": 0.0}, ready={"a": 1, "b": 4})
    lego = Burst("lego", "http-01", asked={"a": 0.0, "b": 0.0}, ready={"a": 5, "b": 16})
    rows = report.timing_rows("http-01", ours.summary(), lego.summary())
    wall = next(r for r in rows if r[0].strip() == "wall")
    assert wall == ("  wall", "4.00 s", "16.00 s", "0.25", "≤ 0.3 × lego", "met")
    first = next(r for r in rows if r[0].strip() == "time to first Ready")
    assert (first[1], first[5]) == ("1.00 s", "met")
    share = next(r for r in rows if r[0].strip() == "p50 / wall")
    assert (share[1], share[5]) == ("62 %", "missed")  # p50 2.5 of a 4 s wall


def test_a_client_not_measured_says_why_on_a_line_of_its_own() -> None:
    lego = Burst("lego", "dns-01", asked={"a": 0.0}, ready={"a": 5.0})
    rows = report.timing_rows("dns-01", None, lego.summary(), not_measured="no solver yet")
    assert ("  acmebridge not measured: no solver yet", "", "", "", "", "") in rows
    wall = next(r for r in rows if r[0].strip() == "wall")
    assert wall[1:5] == ("-", "5.00 s", "-", "≤ 0.17 × lego")


def test_the_rendered_table_aligns_columns_and_keeps_sections_on_their_own_lines() -> None:
    rows: list[report.Row] = [
        ("A section title much longer than any figure's name", "", "", "", "", ""),
        ("  wall", "4.00 s", "16.00 s", "0.25", "≤ 0.3 × lego", "met"),
        ("  certificates/s", "50.0", "12.5", "4.00", "", ""),
    ]
    lines = report.render(rows).splitlines()
    assert lines[1] == "A section title much longer than any figure's name"
    assert lines[2].index("4.00 s") + len("4.00 s") == lines[3].index("50.0") + len("50.0")
    assert lines[0].startswith("figure ") and lines[2].endswith("met")


def test_cost_rows_list_writes_then_reads_and_sum_the_small_ones() -> None:
    cost = requests_cost.per_certificate(
        {("POST", "events"): 800, ("PUT", "leases"): 1, ("GET", "secrets"): 1200}, n=100
    )
    rows = report.cost_rows("the operator's own", cost, own=True)
    names = [r[0].strip() for r in rows]
    assert names == [
        "API requests per certificate, the operator's own",
        "writes",
        "POST events",
        "1 other",
        "reads",
        "GET secrets",
    ]
    assert rows[1][4:] == ("≤ 12 own writes", "met")
    assert rows[4][4:] == ("≤ 10 own reads", "missed")


def test_a_default_run_keeps_the_last_scale_runs_keys_and_replaces_its_own() -> None:
    previous = {"n": 200, "p50_seconds": 28.1, "rss_mib_5000": 150, "scale": {"n": 5000}}
    merged = report.merge_results(previous, {"n": 200, "p50_seconds": 9.0}, scale=False)
    assert merged == {"n": 200, "p50_seconds": 9.0, "rss_mib_5000": 150, "scale": {"n": 5000}}


def test_a_scale_run_keeps_the_default_runs_keys_and_the_other_scale_runs() -> None:
    previous = {"n": 200, "rss_mib_5000": 150, "idle_cpu_percent": 3.0, "scale": {"n": 1}}
    merged = report.merge_results(previous, {"rss_mib_5000": 120, "scale_adopted": {}}, scale=True)
    assert merged == {
        "n": 200,
        "rss_mib_5000": 120,
        "idle_cpu_percent": 3.0,
        "scale": {"n": 1},
        "scale_adopted": {},
    }


def test_growth_is_relative_to_the_figure_before() -> None:
    assert report.growth(100.0, 108.0) == pytest.approx(0.08)
    assert report.growth(None, 108.0) is None


@pytest.mark.parametrize(
    ("given", "lego", "issuer"),
    [
        pytest.param("HMACSHA256", "hmac-sha256.", "HMACSHA256", id="cert-manager's spelling"),
        pytest.param("hmac-sha512", "hmac-sha512.", "HMACSHA512", id="BIND's spelling"),
        pytest.param("hmac-md5.", "hmac-md5.", "HMACMD5", id="miekg's spelling"),
    ],
)
def test_tsig_algorithm_names_for_lego_and_for_an_issuer(
    given: str, lego: str, issuer: str
) -> None:
    assert tsig_algorithm(given) == (lego, issuer)


def test_an_unknown_tsig_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="gss-tsig"):
        tsig_algorithm("gss-tsig")
