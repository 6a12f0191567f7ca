"""The chart rendered without a cluster: lint, values to flags, RBAC, Pod security, HA, schema.

The flags a rendering passes are parsed by the operator's own command-line parser, so a value
that maps to a flag the operator does not have, or to the wrong setting, fails here, not in a
crash-looping Pod. What the API server says about the manifests is in test_lab.py.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.chart.chart import (
    CHART,
    JSON,
    ROOT,
    HelmError,
    is_hook,
    lint,
    of_kind,
    one,
    operator_container,
    render,
    workload,
)

from acmebridge.__main__ import _config, _run_parser
from acmebridge.config import OperatorConfig

# No lab: rendering needs only the helm binary, and is quick.
pytestmark = pytest.mark.timeout(120)

EXAMPLES = ROOT / "examples" / "helm"

# Every knob set away from its default, for the "non-default values" renderings.
EVERYTHING: dict[str, Any] = {
    "image": {"repository": "registry.internal.example/pki/acmebridge", "tag": "1.2.3"},
    "solverImage": "registry.internal.example/pki/acmebridge-solver:1.2.3",
    "imagePullSecrets": [{"name": "registry"}],
    "replicas": 3,
    "peering": {"name": "pki"},
    "namespaces": ["shop", "payments"],
    "clusterResourceNamespace": "pki-system",
    "allowedACMEServers": ["https://ca.internal.example/acme/", "ca2.internal.example"],
    "secretOwnerReferences": True,
    "backoffCapSeconds": 900,
    "concurrency": 32,
    "secretCheckIntervalSeconds": 600,
    "orderPollMaxSeconds": 5,
    "ariRecheckMaxSeconds": 3600,
    "dns01": {"nameservers": ["10.0.0.53:53", "[2001:db8::53]:53"]},
    "http01": {"selfCheckPort": 8080, "selfCheckNameservers": ["10.0.0.53:53", "10.0.0.54"]},
    "logLevel": "DEBUG",
    "logFormat": "json",
    "metrics": {"port": 9500, "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "pki", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {}},
    "priorityClassName": "system-cluster-critical",
    "extraArgs": ["--verbose"],
}


def parse_run_args(args: list[str]) -> OperatorConfig:
    """The OperatorConfig `acmebridge` makes of the container's args (no ACMEBRIDGE_* set)."""
    assert args[0] == "run", args
    parser = argparse.ArgumentParser(prog="acmebridge", exit_on_error=False)
    _run_parser(parser.add_subparsers(dest="command", required=True))
    # The kubelet expands $(POD_INDEX) from the StatefulSet's pod-index label.
    parsed = parser.parse_args([a.replace("$(POD_INDEX)", "1") for a in args])
    return _config(parsed)


def rules_of(doc: JSON) -> list[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a Role or ClusterRole grants."""
    return [
        (group, resource, verb)
        for rule in doc.get("rules") or []
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]


def cluster_scoped(docs: list[JSON]) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in docs if "namespace" not in d["metadata"]}


def granted(docs: list[JSON], *, roles: tuple[str, ...] = ("ClusterRole", "Role")) -> set[Any]:
    return {
        triple
        for doc in docs
        if doc["kind"] in roles and not doc["metadata"]["name"].endswith(("-view", "-edit"))
        for triple in rules_of(doc)
    }


# Lint and the CRD copies


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({}, id="lints with default values"),
        pytest.param(EVERYTHING, id="lints with every value changed"),
        pytest.param({"replicas": 2}, id="lints cluster-wide with peering"),
    ],
)
def test_lint(helm: Path, values: dict[str, Any]) -> None:
    out = lint(helm, values)
    assert "0 chart(s) failed" in out, out


def test_the_chart_crds_are_byte_identical_to_crds() -> None:
    source = {p.name: p.read_bytes() for p in sorted((ROOT / "crds").glob("*.yaml"))}
    copies = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*"))}
    assert source, "crds/ is empty"
    assert sorted(copies) == sorted(source), "run `make sync-chart-crds`"
    for name, body in source.items():
        assert copies[name] == body, f"{CHART / 'crds' / name} differs: run `make sync-chart-crds`"


# Defaults


def test_defaults_run_one_standalone_operator_for_all_namespaces(helm: Path) -> None:
    docs = render(helm, release="acmebridge", namespace="pki")
    deployment = workload(docs)
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = operator_container(docs)
    assert container["image"] == "ghcr.io/acmebridge/acmebridge:0.1.0"
    assert container["args"] == [
        "run",
        "--cluster-resource-namespace=pki",
        "--solver-image=ghcr.io/acmebridge/acmebridge:0.1.0",
        "--backoff-cap=3600",
        "--concurrency=8",
        "--http01-self-check-port=80",
        "--metrics-port=9402",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--log-format=text",
        "--log-level=INFO",
    ]
    defaults = OperatorConfig()
    cfg = parse_run_args(container["args"])
    # The chart's defaults are the operator's, except where the chart must decide.
    assert cfg == OperatorConfig(
        cluster_resource_namespace="pki",
        solver_image="ghcr.io/acmebridge/acmebridge:0.1.0",
        backoff_cap=defaults.backoff_cap,
    )
    assert not of_kind(docs, "StatefulSet") and not of_kind(docs, "ServiceMonitor")
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev/")]
    assert not [d for d in of_kind(docs, "CustomResourceDefinition")]


def test_the_pod_meets_the_restricted_pod_security_standard(helm: Path) -> None:
    docs = render(helm)
    pod = workload(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = operator_container(docs)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # The ACME adapter writes caBundles to temporary files: /tmp is the one writable place.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_probes_use_kopfs_liveness_endpoint(helm: Path) -> None:
    container = operator_container(render(helm, {"healthPort": 8181}))
    assert "--liveness=http://0.0.0.0:8181/healthz" in container["args"]
    assert {"name": "health", "containerPort": 8181, "protocol": "TCP"} in container["ports"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe


def test_the_metrics_service_and_the_optional_service_monitor(helm: Path) -> None:
    docs = render(helm, {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"a": "b"}}}})
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9402, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == workload(docs)["spec"]["selector"]["matchLabels"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["a"] == "b"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


# Values to flags


def test_every_value_reaches_the_operator(helm: Path) -> None:
    docs = render(helm, EVERYTHING, release="acmebridge", namespace="ops")
    container = operator_container(docs)
    assert container["image"] == "registry.internal.example/pki/acmebridge:1.2.3"
    cfg = parse_run_args(container["args"])
    assert cfg.namespaces == ("shop", "payments")
    assert cfg.cluster_resource_namespace == "pki-system"
    assert cfg.solver_image == "registry.internal.example/pki/acmebridge-solver:1.2.3"
    assert cfg.allowed_acme_servers == (
        "https://ca.internal.example/acme/",
        "ca2.internal.example",
    )
    assert cfg.secret_owner_references is True
    assert cfg.backoff_cap == timedelta(seconds=900)
    assert cfg.concurrency == 32
    assert cfg.secret_check_interval == timedelta(seconds=600)
    assert cfg.order_poll_max == timedelta(seconds=5)
    assert cfg.ari_recheck_max == timedelta(seconds=3600)
    assert cfg.dns01_nameservers == ("10.0.0.53:53", "[2001:db8::53]:53")
    assert cfg.http01_self_check_port == 8080
    assert cfg.self_check_nameservers == ("10.0.0.53:53", "10.0.0.54")
    assert cfg.metrics_port == 9500
    assert cfg.log_format == "json"
    assert cfg.log_level == "DEBUG"  # --verbose from extraArgs says the same
    assert container["args"][-1] == "--verbose", "extraArgs come last, so that they win"
    pod = workload(docs)["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == EVERYTHING["tolerations"]
    assert pod["affinity"] == {"podAntiAffinity": {}}
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert {"name": "metrics", "containerPort": 9500, "protocol": "TCP"} in container["ports"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            {}, "ghcr.io/acmebridge/acmebridge:0.1.0", id="the tag defaults to appVersion"
        ),
        pytest.param(
            {"image": {"repository": "mirror.example/acmebridge", "tag": "dev"}},
            "mirror.example/acmebridge:dev",
            id="the solver image follows the operator image",
        ),
        pytest.param(
            {"solverImage": "mirror.example/solver:1"},
            "mirror.example/solver:1",
            id="the solver image can differ",
        ),
    ],
)
def test_the_solver_image(helm: Path, values: dict[str, Any], expected: str) -> None:
    cfg = parse_run_args(operator_container(render(helm, values))["args"])
    assert cfg.solver_image == expected


# RBAC


FORBIDDEN_EVERYWHERE = [
    ("", "secrets", "list"),
    ("", "secrets", "watch"),
    ("", "secrets", "deletecollection"),
    ("", "configmaps", "get"),
    ("acmebridge.io", "certificates", "patch"),
    ("acmebridge.io", "certificates", "deletecollection"),
    ("acmebridge.io", "issuers", "delete"),
    ("acmebridge.io", "issuers", "update"),
    ("networking.k8s.io", "ingresses", "update"),
    ("networking.k8s.io", "ingresses", "patch"),
]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({}, id="cluster-wide"),
        pytest.param({"namespaces": ["shop"], "replicas": 2}, id="namespaced with peering"),
    ],
)
def test_the_operator_gets_what_it_uses_and_no_more(helm: Path, values: dict[str, Any]) -> None:
    docs = render(helm, values)
    rules = granted(docs)
    for rule in FORBIDDEN_EVERYWHERE:
        assert rule not in rules, rule
    assert not [r for r in rules if "*" in r], "no wildcards"
    secrets = {verb for group, resource, verb in rules if resource == "secrets"}
    assert secrets == {"get", "create", "update", "patch", "delete"}
    for resource, group in (("pods", ""), ("services", ""), ("ingresses", "networking.k8s.io")):
        verbs = {v for g, r, v in rules if (g, r) == (group, resource)}
        # Ingresses are also watched, for the certificate annotations (docs/ingress.md).
        extra = {"watch"} if resource == "ingresses" else set()
        assert verbs == {"get", "list", "create", "delete"} | extra, resource
    assert {v for g, r, v in rules if r == "events"} == {"get", "create", "patch"}
    for plural in ("certificates", "issuers", "clusterissuers"):
        # Certificates asked for by annotated Ingresses are created, replaced and deleted.
        extra = {"create", "update", "delete"} if plural == "certificates" else set()
        assert {v for g, r, v in rules if r == plural} == {"get", "list", "watch"} | extra, plural
        assert {v for g, r, v in rules if r == f"{plural}/status"} == {"get", "patch", "update"}
    assert {v for g, r, v in rules if r == "customresourcedefinitions"} == {"list", "watch"}


def test_cluster_wide_rbac_binds_both_roles_cluster_wide(helm: Path) -> None:
    docs = render(helm, release="acmebridge", namespace="pki")
    bound = {b["roleRef"]["name"] for b in of_kind(docs, "ClusterRoleBinding")}
    assert bound == {"acmebridge", "acmebridge-workload"}
    assert not of_kind(docs, "RoleBinding") and not of_kind(docs, "Role")
    rules = granted(docs)
    assert ("", "namespaces", "list") not in rules, "kopf lists namespaces only when namespaced"
    assert not [r for r in rules if r[0] == "kopf.dev"], "standalone: no peering"
    for binding in of_kind(docs, "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "acmebridge", "namespace": "pki"}
        ]


def test_a_namespaced_release_is_bound_only_where_it_works(helm: Path) -> None:
    docs = render(
        helm,
        {"namespaces": ["shop", "payments"], "clusterResourceNamespace": "pki-system"},
        release="acmebridge",
        namespace="ops",
    )
    (cluster_binding,) = of_kind(docs, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == "acmebridge"
    workload_bindings = {
        b["metadata"]["namespace"]
        for b in of_kind(docs, "RoleBinding")
        if b["roleRef"]
        == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "acmebridge-workload",
        }
    }
    assert workload_bindings == {"shop", "payments"}
    # ClusterIssuers' Secrets live in the cluster-resource namespace; their Events in default.
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in of_kind(docs, "Role")}
    assert set(roles) == {
        ("pki-system", "acmebridge-cluster-resources"),
        ("default", "acmebridge-cluster-events"),
    }
    assert {r[1:] for r in rules_of(roles["pki-system", "acmebridge-cluster-resources"])} == {
        ("secrets", v) for v in ("get", "create", "update", "patch", "delete")
    }
    assert {r[1:] for r in rules_of(roles["default", "acmebridge-cluster-events"])} == {
        ("events", v) for v in ("get", "create", "patch")
    }
    # kopf lists namespaces to follow a namespace list (and falls back without it, warning).
    assert ("", "namespaces", "list") in granted(docs)


def test_no_extra_role_when_the_cluster_resource_namespace_is_served(helm: Path) -> None:
    docs = render(helm, {"namespaces": ["pki", "default"]}, namespace="pki")
    assert not of_kind(docs, "Role")


def test_users_may_manage_certificates_and_issuers_but_never_their_status(helm: Path) -> None:
    docs = render(helm, release="acmebridge")
    view = one(docs, "ClusterRole", "acmebridge-view")
    edit = one(docs, "ClusterRole", "acmebridge-edit")
    labels = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k in view["metadata"]["labels"] if k.startswith(labels)} == {
        labels + "view",
        labels + "edit",
        labels + "admin",
    }
    assert {k for k in edit["metadata"]["labels"] if k.startswith(labels)} == {
        labels + "edit",
        labels + "admin",
    }
    assert set(rules_of(view)) == {
        ("acmebridge.io", r, v)
        for r in ("certificates", "issuers")
        for v in ("get", "list", "watch")
    }
    edit_rules = set(rules_of(edit))
    for verb in ("create", "update", "patch", "delete"):
        assert ("acmebridge.io", "certificates", verb) in edit_rules
        assert ("acmebridge.io", "issuers", verb) in edit_rules
    assert not [r for r in edit_rules if "/" in r[1] or r[1] == "clusterissuers"], edit_rules
    assert not [
        d
        for d in of_kind(render(helm, {"rbac": {"userRoles": False}}), "ClusterRole")
        if d["metadata"]["name"].endswith(("-view", "-edit"))
    ]


# High availability


def test_several_replicas_peer_with_distinct_priorities(helm: Path) -> None:
    docs = render(helm, {"replicas": 3}, release="acmebridge", namespace="pki")
    sts = workload(docs)
    assert sts["kind"] == "StatefulSet"
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == one(docs, "Service")["metadata"]["name"]
    container = operator_container(docs)
    assert "--peering=acmebridge" in container["args"]
    # Two kopf peers with one priority would both pause: the ordinal tells them apart.
    assert "--priority=$(POD_INDEX)" in container["args"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {
        "POD_ID": "metadata.name",
        "POD_INDEX": "metadata.labels['apps.kubernetes.io/pod-index']",
    }
    crds = {c["metadata"]["name"]: c for c in of_kind(docs, "CustomResourceDefinition")}
    assert set(crds) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    for crd in crds.values():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    # The operator creates its peering object at start: as a Helm hook it would be recreated
    # empty on each upgrade, and every replica would work until its next keep-alive.
    assert not of_kind(docs, "ClusterKopfPeering")
    assert not [d for d in docs if is_hook(d)]
    assert {v for g, r, v in granted(docs) if r == "clusterkopfpeerings"} == {
        "get",
        "list",
        "watch",
        "create",
        "patch",
    }
    assert ("kopf.dev", "kopfpeerings", "patch") not in granted(docs)


def test_namespaced_replicas_peer_in_each_namespace(helm: Path) -> None:
    docs = render(
        helm, {"replicas": 2, "namespaces": ["shop", "payments"], "peering": {"createCRDs": False}}
    )
    assert not of_kind(docs, "CustomResourceDefinition")
    assert not of_kind(docs, "ClusterKopfPeering")
    assert not of_kind(docs, "KopfPeering"), "the operator creates them at start"
    rules = granted(docs)
    assert {v for g, r, v in rules if r == "kopfpeerings"} == {
        "get",
        "list",
        "watch",
        "create",
        "patch",
    }
    assert ("kopf.dev", "clusterkopfpeerings", "get") not in rules


# The values schema


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"replica": 2}, "additional properties 'replica'", id="a misspelt key"),
        pytest.param({"logFormat": "xml"}, "logFormat", id="an unknown log format"),
        pytest.param({"replicas": -1}, "replicas", id="a negative replica count"),
        pytest.param({"namespaces": ["Shop"]}, "namespaces", id="a namespace that cannot exist"),
        pytest.param({"concurrency": 0}, "concurrency", id="no concurrency"),
        pytest.param({"http01": {"selfCheckPort": 0}}, "selfCheckPort", id="port zero"),
        pytest.param(
            {"allowedACMEServers": "ca.example"},
            "allowedACMEServers",
            id="a string where a list belongs",
        ),
    ],
)
def test_the_schema_refuses_bad_values(helm: Path, values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(helm, values)


# The scale-out example


def test_the_scale_out_example_splits_namespaces_between_two_releases(helm: Path) -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) == 2, files
    releases = []
    for path in files:
        out = lint(helm, values_files=[path])
        assert "0 chart(s) failed" in out, out
        docs = render(helm, release=f"acmebridge-{path.stem}", values_files=[path])
        cfg = parse_run_args(operator_container(docs)["args"])
        releases.append((docs, cfg))
    (docs_a, cfg_a), (docs_b, cfg_b) = releases
    assert cfg_a.namespaces and cfg_b.namespaces
    assert not set(cfg_a.namespaces) & set(cfg_b.namespaces), "a namespace served twice"
    assert cfg_a.cluster_resource_namespace == cfg_b.cluster_resource_namespace
    # Both can be installed side by side: only one of them installs kopf's peering CRDs.
    crds_a = of_kind(docs_a, "CustomResourceDefinition")
    crds_b = of_kind(docs_b, "CustomResourceDefinition")
    assert len(crds_a) + len(crds_b) == 2 and not (crds_a and crds_b)
    assert not cluster_scoped(docs_a) & cluster_scoped(docs_b), "objects both releases would own"
