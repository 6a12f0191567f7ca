"""The Grafana dashboard shipped in the chart: it asks only for series the operator serves, and
the chart renders it into a ConfigMap for Grafana's sidecar only when asked to."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.chart.chart import CHART, of_kind, one, render

from acmebridge.metrics import PrometheusMetrics

DASHBOARD = CHART / "dashboards" / "acmebridge.json"
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def dashboard() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return parsed


def expressions() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def served_series() -> set[str]:
    """Every sample name the operator's registry can expose."""
    names = set()
    for family in PrometheusMetrics().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in HISTOGRAM_SUFFIXES}
        else:
            names.add(family.name)
    return names


def test_every_query_uses_series_the_operator_serves() -> None:
    served = served_series()
    used = {name for e in expressions() for name in re.findall(r"acmebridge_[a-z0-9_]+", e)}
    assert used, "the dashboard queries nothing"
    assert used <= served, sorted(used - served)


def test_the_dashboard_answers_the_questions_it_is_for() -> None:
    titles = {p["title"] for p in dashboard()["panels"]}
    for title in (
        "Expiring within 7 days",
        "Certificates expiring soonest",
        "Not ready",
        "Issuance failures by reason",
        "Issuance latency",
        "ACME error rate by request kind",
    ):
        assert title in titles, title
    used = " ".join(expressions())
    for family in PrometheusMetrics().registry.collect():
        assert family.name in used, f"{family.name} is on no panel"


def test_the_dashboard_is_portable() -> None:
    d = dashboard()
    assert d["uid"] == "acmebridge" and d["title"] == "acmebridge"
    # The data source is a variable, so the dashboard imports into any Grafana.
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in d["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))


def test_off_by_default(helm: Path) -> None:
    docs = render(helm)
    labelled = [
        d
        for d in of_kind(docs, "ConfigMap")
        if "grafana_dashboard" in (d["metadata"].get("labels") or {})
    ]
    assert labelled == []


def test_enabled_it_is_a_configmap_grafana_finds(helm: Path) -> None:
    docs = render(helm, {"dashboard": {"enabled": True}})
    cm = one(docs, "ConfigMap", "acmebridge-dashboard")
    assert cm["metadata"]["namespace"] == "acmebridge"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["acmebridge.json"]) == dashboard()


def test_the_labels_are_the_users_choice(helm: Path) -> None:
    values = {"dashboard": {"enabled": True, "labels": {"grafana_dashboard": "acmebridge"}}}
    cm = one(render(helm, values), "ConfigMap", "acmebridge-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "acmebridge"
