"""The chart's workload mTLS (``mtls.enabled``): off by default; when on, the webhook Service and
MutatingWebhookConfiguration the operator would register itself, the flags, and RBAC that is
exactly what the operator uses. Last, against the lab: the rendering is admitted (the API server
compiles the CEL match conditions), and the operator run as the chart's ServiceAccount does the
whole workload flow without one refusal.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.chart.chart import JSON, of_kind, one, operator_container, render, workload
from tests.chart.test_lab import (
    apply,
    assert_no_permission_errors,
    ensure_namespace,
    service_account_kubeconfig,
)
from tests.chart.test_render import EVERYTHING, lint, parse_run_args
from tests.conftest import TEST_LABEL
from tests.lab import manifests
from tests.lab.labenv import Lab
from tests.lab.mtls_support import mounts, wait_pods
from tests.lab.mtls_support import workload as workload_manifest
from tests.lab.operator_proc import CLUSTER_RESOURCE_NAMESPACE, free_port, start_operator
from tests.lab.waits import wait_for, wait_for_condition

from acmebridge.adapters.kube import Kube, KubeError, core_path, group_path, ours_path
from acmebridge.domain import webhook_config

ON = {"mtls": {"enabled": True}}
Rule = tuple[str, str, str, str]  # group, resource, verb, resourceName ("" for any)


def rules(docs: list[JSON], name_suffix: str = "") -> set[Rule]:
    """Every (group, resource, verb, resourceName) the Roles and ClusterRoles grant."""
    return {
        (group, resource, verb, name)
        for doc in docs
        if doc["kind"] in ("ClusterRole", "Role")
        and not doc["metadata"]["name"].endswith(("-view", "-edit"))
        and doc["metadata"]["name"].endswith(name_suffix)
        for rule in doc.get("rules") or []
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames") or [""]
    }


def test_mtls_is_off_by_default_and_adds_nothing(helm: Path) -> None:
    docs = render(helm)
    assert not of_kind(docs, "MutatingWebhookConfiguration")
    assert not [d for d in docs if "mtls" in d["metadata"]["name"]]
    assert not [a for a in operator_container(docs)["args"] if "mtls" in a or "webhook" in a]
    assert parse_run_args(operator_container(docs)["args"]).mtls is False


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(ON, id="lints with mtls"),
        pytest.param(
            {**EVERYTHING, "mtls": {"enabled": True, "dnsNamesTemplate": "{name}.x"}},
            id="lints with mtls and every other value changed",
        ),
    ],
)
def test_lint(helm: Path, values: dict[str, Any]) -> None:
    assert "0 chart(s) failed" in lint(helm, values)


def test_values_reach_the_operator(helm: Path) -> None:
    values = {
        "mtls": {
            "enabled": True,
            "webhookPort": 10250,
            "webhookCertDurationSeconds": 86400,
            "dnsNamesTemplate": "{name}.{namespace}.mesh.example.com",
            "duration": "12h",
            "spiffeTrustDomain": "corp.example",
            "clusterDomain": "k8s.corp.example",
        }
    }
    docs = render(helm, values, release="acmebridge", namespace="pki")
    container = operator_container(docs)
    cfg = parse_run_args(container["args"])
    assert cfg.mtls and cfg.webhook_port == 10250
    assert cfg.webhook_service == "pki/acmebridge-webhook" and not cfg.webhook_url
    assert cfg.webhook_configuration == "acmebridge"
    assert cfg.webhook_cert_duration.total_seconds() == 86400
    assert cfg.workload_dns_names_template == "{name}.{namespace}.mesh.example.com"
    assert cfg.workload_duration.total_seconds() == 12 * 3600
    assert (cfg.spiffe_trust_domain, cfg.cluster_domain) == ("corp.example", "k8s.corp.example")
    assert {"name": "webhook", "containerPort": 10250, "protocol": "TCP"} in container["ports"]
    service = one(docs, "Service", "acmebridge-webhook")
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == workload(docs)["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(ON, id="cluster-wide"),
        pytest.param({**ON, "namespaces": ["shop", "pki", "payments"]}, id="namespaced"),
        pytest.param({**ON, "namespaces": ["pki"]}, id="serving only its own namespace"),
        pytest.param({**ON, "clusterResourceNamespace": "pki-system"}, id="other resource ns"),
    ],
)
def test_the_charts_webhooks_are_the_ones_the_operator_would_register(
    helm: Path, values: dict[str, Any]
) -> None:
    docs = render(helm, values, release="acmebridge", namespace="pki")
    cfg = parse_run_args(operator_container(docs)["args"])
    namespace, _, service = cfg.webhook_service.partition("/")
    expected = webhook_config.configuration(
        cfg.webhook_configuration,
        webhook_config.ClientConfig(service_namespace=namespace, service_name=service),
        namespaces=cfg.namespaces,
        excluded=webhook_config.excluded_namespaces(
            service_namespace=namespace,
            cluster_resource_namespace=cfg.cluster_resource_namespace,
        ),
        ca_bundle=b"",
    )
    rendered = one(docs, "MutatingWebhookConfiguration")
    assert rendered["metadata"]["name"] == cfg.webhook_configuration
    assert rendered["webhooks"] == expected["webhooks"]


def test_mtls_grants_exactly_what_the_operator_uses(helm: Path) -> None:
    docs = render(helm, ON, release="acmebridge", namespace="pki")
    base = rules(render(helm, release="acmebridge", namespace="pki"))
    added = rules(docs) - base
    assert added == {
        ("", "namespaces", "get", ""),
        ("", "namespaces", "list", ""),
        ("", "namespaces", "watch", ""),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "get", "acmebridge"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch", "acmebridge"),
        *{
            ("apps", r, v, "")
            for r in ("deployments", "statefulsets", "daemonsets")
            for v in ("get", "list", "watch", "patch")
        },
        ("", "configmaps", "create", ""),
        ("", "configmaps", "get", "acmebridge-trust"),
        ("", "configmaps", "update", "acmebridge-trust"),
        ("", "configmaps", "delete", "acmebridge-trust"),
    }
    granted = rules(docs)
    # The workloads' Certificates: create, replace, delete (granted for the Ingress shim too).
    for verb in ("create", "update", "delete"):
        assert ("acmebridge.io", "certificates", verb, "") in granted, verb
    for never in (("", "secrets", "list"), ("", "secrets", "watch"), ("", "configmaps", "list")):
        assert (*never, "") not in granted, never
    assert not [r for r in granted if "*" in r], "no wildcards"


def test_a_namespaced_release_binds_the_workload_permissions_where_it_works(helm: Path) -> None:
    docs = render(helm, {**ON, "namespaces": ["shop", "payments"]}, namespace="pki")
    bindings = [
        (b["metadata"]["namespace"], b["roleRef"]["name"])
        for b in of_kind(docs, "RoleBinding")
        if b["roleRef"]["name"].endswith("-mtls-workload")
    ]
    assert sorted(bindings) == [
        ("payments", "acmebridge-mtls-workload"),
        ("shop", "acmebridge-mtls-workload"),
    ]
    cluster = {b["roleRef"]["name"] for b in of_kind(docs, "ClusterRoleBinding")}
    assert "acmebridge-mtls" in cluster and "acmebridge-mtls-workload" not in cluster


def test_the_schema_refuses_a_bad_duration(helm: Path) -> None:
    with pytest.raises(AssertionError, match="duration"):
        render(helm, {"mtls": {"enabled": True, "duration": "1 day"}})


# --- against the lab ----------------------------------------------------------------------------

APPLIED = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


@pytest.fixture
def mtls_release(lab: Lab, helm: Path, kube: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A namespaced release with mTLS: its RBAC and webhook configuration applied to the lab
    (the webhook pointed at a local port, as the lab has no Service routing), and a kubeconfig
    of its ServiceAccount."""
    admin = Kube(kube)
    suffix = secrets.token_hex(3)
    name, release_ns, work_ns = f"mtls-{suffix}", f"chart-mtls-{suffix}", f"work-mtls-{suffix}"
    for ns in (release_ns, work_ns):
        ensure_namespace(admin, ns, {TEST_LABEL: "true"})
    ensure_namespace(admin, CLUSTER_RESOURCE_NAMESPACE)
    values = {
        **ON,
        "namespaces": [work_ns],
        "clusterResourceNamespace": CLUSTER_RESOURCE_NAMESPACE,
        "allowedACMEServers": [lab.pebble_directory_url],
        "http01": {"selfCheckPort": lab.http01_port, "selfCheckNameservers": [lab.dns_server]},
    }
    docs = render(helm, values, release=name, namespace=release_ns)
    port = free_port()
    config = one(docs, "MutatingWebhookConfiguration")
    for hook in config["webhooks"]:
        path = hook["clientConfig"].pop("service")["path"]
        hook["clientConfig"]["url"] = f"https://127.0.0.1:{port}{path}"
    objects = [d for d in docs if d["kind"] in APPLIED] + [config]
    try:
        apply(lab, objects, dry_run=True)
        apply(lab, objects, dry_run=False)
        sa = workload(docs)["spec"]["template"]["spec"]["serviceAccountName"]
        wait_for(
            lambda: admin.get(core_path("serviceaccounts", release_ns, sa)),
            timeout=30,
            describe="the ServiceAccount",
        )
        kubeconfig = service_account_kubeconfig(lab, release_ns, sa, tmp_path / "kubeconfig")
        yield {
            "docs": docs,
            "port": port,
            "kubeconfig": kubeconfig,
            "work": work_ns,
            "config": config["metadata"]["name"],
        }
    finally:
        for doc in objects:
            if "namespace" not in doc["metadata"]:
                kind = doc["kind"]
                group = doc["apiVersion"].rpartition("/")[0]
                plural = {"MutatingWebhookConfiguration": "mutatingwebhookconfigurations"}.get(
                    kind, kind.lower() + "s"
                )
                with contextlib.suppress(KubeError):
                    admin.delete(group_path(group, "v1", plural, None, doc["metadata"]["name"]))
        with contextlib.suppress(KubeError):
            admin.delete(
                core_path(
                    "secrets",
                    CLUSTER_RESOURCE_NAMESPACE,
                    f"{config['metadata']['name']}-webhook-tls",
                )
            )
        for ns in (work_ns, release_ns):
            admin.delete(core_path("namespaces", None, ns))


def test_the_operator_does_the_workload_flow_as_the_charts_service_account(
    lab: Lab, kube: Any, mtls_release: dict[str, Any]
) -> None:
    admin = Kube(kube)
    work, port = mtls_release["work"], mtls_release["port"]
    args = operator_container(mtls_release["docs"])["args"][1:]
    args = [
        a
        for a in args
        if not a.startswith(
            ("--liveness=", "--metrics-port=", "--webhook-service=", "--webhook-port=")
        )
    ]
    args += [
        f"--webhook-url=https://127.0.0.1:{port}",
        f"--webhook-port={port}",
        "--webhook-address=127.0.0.1",
    ]
    op = start_operator(
        {**lab.env, "KUBECONFIG": str(mtls_release["kubeconfig"])}, name="chart-mtls", extra=args
    )
    try:
        acme = manifests.pebble_acme(
            lab.env, issuingCABundle=manifests.b64_file(lab.env["PEBBLE_ROOT"])
        )
        admin.create(ours_path("issuers", work), manifests.issuer(work, "mesh", acme))
        admin.merge_patch(
            core_path("namespaces", None, work),
            {"metadata": {"labels": {"acmebridge.io/trust": "true"}}},
        )
        annotations = {
            "acmebridge.io/inject": "true",
            "acmebridge.io/issuer": "mesh",
            "acmebridge.io/dns-names": "{name}.{namespace}.chart.lab.test",
        }
        admin.create(
            group_path("apps", "v1", "deployments", work),
            workload_manifest(work, "web", annotations),
        )
        (pod,) = wait_pods(admin, work, "web")
        assert mounts(pod) == {"app": "/var/run/acmebridge"}
        wait_for_condition(
            admin.api,
            "acmebridge.io",
            "v1alpha1",
            "certificates",
            work,
            "web-deployment-mtls",
            "Ready",
            timeout=120,
        )
        wait_for(
            lambda: admin.get(core_path("configmaps", work, "acmebridge-trust")),
            timeout=60,
            describe="the trust bundle",
        )
        config = admin.get(
            f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
            f"{mtls_release['config']}"
        )
        assert config is not None and config["webhooks"][0]["clientConfig"].get("caBundle"), (
            "the operator wrote the caBundle into the chart's configuration"
        )
        admin.delete(group_path("apps", "v1", "deployments", work, "web"))
        wait_for(
            lambda: (
                admin.get(ours_path("certificates", work, "web-deployment-mtls")) is None
                and admin.get(core_path("secrets", work, "web-deployment-mtls")) is None
            ),
            timeout=60,
            describe="the workload's Certificate and Secret gone with it",
        )
        assert_no_permission_errors(op)
    finally:
        op.stop()
        print(f"operator log: {op.log_path}")
