"""The chart against the lab's real kube-apiserver: admitted, sufficient, and least.

The chart is rendered for a release in a fresh namespace and applied server-side, first as a
dry run (the API server validates every object against its schema; Pod Security admission checks
the Pod template at the `restricted` level), then for real. Then the operator runs on this
machine with a token of the chart's ServiceAccount and the flags the chart gives the container,
and issues a certificate from Pebble end to end: the chart's RBAC is enough (and the solver Pods
it creates pass the namespace's `restricted` enforcement). Requests the operator never needs are
refused: its RBAC is least. A user bound to the chart's edit role may manage Certificates but
not write their status. Two replicas peer as the StatefulSet's would: the standby one waits, and
takes over when the active one stops. Last, helm itself installs, upgrades and uninstalls it.

The lab is shared, and other operators there may watch every namespace. This release therefore
serves only its own namespace, and is installed with secretOwnerReferences, which the lab's
other operators do not use: a Secret with an ownerReference was written by this operator. It
keeps ClusterIssuers' Secrets in the lab's usual cluster-resource namespace, so that it finds
the same ACME accounts as the others for the lab's ClusterIssuers (kopf serves cluster-scoped
resources cluster-wide even to a namespaced operator) instead of registering new ones.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.chart.chart import (
    CHART,
    JSON,
    is_hook,
    of_kind,
    operator_container,
    render,
    run_helm,
    workload,
)
from tests.conftest import TEST_LABEL
from tests.lab import manifests
from tests.lab.labenv import Lab
from tests.lab.operator_proc import CLUSTER_RESOURCE_NAMESPACE, OperatorProcess, start_operator
from tests.lab.waits import wait_for, wait_for_condition

from acmebridge.adapters.kube import Conflict, Kube, core_path, ours_path

pytestmark = pytest.mark.lab

FIELD_MANAGER = "acmebridge-chart-test"
ISSUE_TIMEOUT = 120
# The tests run the chart's replicas as local processes. Its Pods must never start: with the
# lab's real node up (`make node-up`) the scheduler would run them for real, as another operator
# on the lab's ClusterIssuers and a third peer. No Node has this label, so they stay Pending.
NO_NODE = {"acmebridge.io/lab-test": "replicas-run-as-local-processes"}


@dataclass(frozen=True)
class Release:
    """The chart installed in the lab, and what a test needs to act as its ServiceAccount."""

    name: str
    namespace: str
    docs: list[JSON]
    service_account: str
    kubeconfig: Path

    def operator_args(self, index: int) -> list[str]:
        """The container's `acmebridge run` flags for StatefulSet replica ``index``, minus the
        listeners, which start_operator puts on free local ports."""
        args = operator_container(self.docs)["args"]
        assert args[0] == "run", args
        return [
            a.replace("$(POD_INDEX)", str(index))
            for a in args[1:]
            if not a.startswith(("--liveness=", "--metrics-port="))
        ]

    @contextmanager
    def replica(self, lab: Lab, index: int) -> Iterator[OperatorProcess]:
        """Replica ``index`` of the StatefulSet, run here as the chart's ServiceAccount."""
        op = start_operator(
            {**lab.env, "KUBECONFIG": str(self.kubeconfig)},
            name=f"{self.name}-{index}",
            extra=self.operator_args(index),
            process_env={"POD_ID": f"{self.name}-{index}"},
        )
        try:
            yield op
        finally:
            op.stop()
            print(f"operator log: {op.log_path}")


def kubectl(
    lab: Lab, *args: str, stdin: str | None = None, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The lab's kubectl (as the admin unless ``kubeconfig``); the caller checks the result."""
    return subprocess.run(
        [str(lab.bin / "kubectl"), f"--kubeconfig={kubeconfig or lab.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **lab.env},
        check=False,
    )


def apply(lab: Lab, docs: Sequence[JSON], *, dry_run: bool) -> str:
    """Server-side apply; returns kubectl's stderr (warnings) and fails with it on refusal.

    With ``--force-conflicts``: these tests check what the API server admits, not who owns a
    field, and the lab is shared: the node tests' ``helm install`` leaves the cluster-wide
    peering CRDs behind with ``helm`` as their field manager (helm never deletes CRDs), which
    made every test here fail on a second run against the same lab."""
    args = ["apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}"]
    args += ["-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    result = kubectl(lab, *args, stdin=yaml.safe_dump_all(docs))
    what = "dry run" if dry_run else "apply"
    assert result.returncode == 0, f"server-side {what} refused:\n{result.stderr}"
    return result.stderr


def values_for(lab: Lab, namespace: str) -> dict[str, Any]:
    return {
        "replicas": 2,
        "namespaces": [namespace],
        "clusterResourceNamespace": CLUSTER_RESOURCE_NAMESPACE,
        "allowedACMEServers": [lab.pebble_directory_url],
        "secretOwnerReferences": True,
        "backoffCapSeconds": 20,
        "http01": {"selfCheckPort": lab.http01_port, "selfCheckNameservers": [lab.dns_server]},
        "logLevel": "DEBUG",
        "nodeSelector": NO_NODE,
    }


def ensure_namespace(k: Kube, name: str, labels: Mapping[str, str] | None = None) -> None:
    body = {"metadata": {"name": name, "labels": dict(labels or {})}}
    with suppress(Conflict):
        k.create(core_path("namespaces", None), body)


def wait_established(k: Kube, names: Sequence[str]) -> None:
    def established() -> bool:
        for name in names:
            path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            crd = k.get(path) or {}
            conditions = {
                c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])
            }
            if conditions.get("Established") != "True":
                return False
        return True

    wait_for(established, timeout=30, describe=f"CRDs {', '.join(names)} to be established")


def service_account_kubeconfig(lab: Lab, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig with a TokenRequest token of the ServiceAccount (what a Pod would mount)."""
    result = kubectl(lab, "create", "token", name, "-n", namespace, "--duration=2h")
    assert result.returncode == 0, result.stderr
    admin = yaml.safe_load(lab.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": result.stdout.strip()}}],
        "contexts": [{"name": name, "context": {"cluster": "lab", "user": name}}],
        "current-context": name,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def admin(kube: client.ApiClient) -> Kube:
    return Kube(kube)


@pytest.fixture(scope="module")
def release(
    lab: Lab, admin: Kube, helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """The chart applied in a fresh namespace that enforces the restricted Pod Security level."""
    suffix = secrets.token_hex(3)
    name, namespace = f"acmebridge-t{suffix}", f"chart-{suffix}"
    pss = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    ensure_namespace(admin, namespace, {TEST_LABEL: "true", **pss})
    ensure_namespace(admin, CLUSTER_RESOURCE_NAMESPACE)
    docs = render(helm, values_for(lab, namespace), release=name, namespace=namespace)
    assert not [d for d in docs if is_hook(d)], "helm install and kubectl apply agree"
    try:
        # The CRDs the chart carries, as a dry run: the lab's own copies stay as they are.
        crds = [
            d
            for d in render(helm, release=name, namespace=namespace, include_crds=True)
            if d["kind"] == "CustomResourceDefinition" and d["spec"]["group"] == "acmebridge.io"
        ]
        assert len(crds) == 3
        apply(lab, crds, dry_run=True)
        warnings = apply(lab, docs, dry_run=True)
        assert "PodSecurity" not in warnings, warnings
        apply(lab, docs, dry_run=False)
        wait_established(
            admin, [d["metadata"]["name"] for d in of_kind(docs, "CustomResourceDefinition")]
        )
        # The chart makes no peering object: its replicas create it when they start.
        peering = f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/{name}"
        assert admin.get(peering) is None
        sa = workload(docs)["spec"]["template"]["spec"]["serviceAccountName"]
        path = tmp_path_factory.mktemp("chart") / "kubeconfig"
        yield Release(
            name, namespace, docs, sa, service_account_kubeconfig(lab, namespace, sa, path)
        )
    finally:
        # Everything but kopf's CRDs, which the chart keeps on uninstall too.
        leftovers = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
        kubectl(
            lab,
            "delete",
            "--ignore-not-found",
            "--wait=false",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(leftovers),
        )
        admin.delete(core_path("namespaces", None, namespace))


def as_service_account(lab: Lab, release: Release, *args: str) -> subprocess.CompletedProcess[str]:
    return kubectl(lab, *args, kubeconfig=release.kubeconfig)


def forbidden(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and "forbidden" in result.stderr.lower()


def acme_issuer(lab: Lab, namespace: str, name: str) -> JSON:
    acme = manifests.pebble_acme(
        lab.env,
        privateKeySecretRef={"name": f"{name}-account"},
        solvers=[{"http01": {"ingress": {"ingressClassName": lab.ingress_class}}}],
    )
    return manifests.issuer(namespace, name, acme)


def certificate(namespace: str, name: str, issuer: str) -> JSON:
    return manifests.certificate(
        namespace, name, issuerRef={"name": issuer}, dnsNames=[f"{name}.{namespace}.chart.lab.test"]
    )


def ready(admin: Kube, plural: str, namespace: str, name: str) -> JSON:
    return wait_for_condition(
        admin.api,
        "acmebridge.io",
        "v1alpha1",
        plural,
        namespace,
        name,
        "Ready",
        timeout=ISSUE_TIMEOUT,
    )


def written_by_this_release(admin: Kube, namespace: str, certificate: JSON) -> JSON:
    """The Certificate's Secret, which must carry the ownerReference only this release adds."""
    name = certificate["spec"]["secretName"]
    secret = admin.get(core_path("secrets", namespace, name))
    assert secret is not None, f"Secret {namespace}/{name} does not exist"
    owners = [r.get("uid") for r in secret["metadata"].get("ownerReferences") or []]
    assert owners == [certificate["metadata"]["uid"]], (
        f"Secret {namespace}/{name} has no ownerReference to its Certificate: another operator "
        "in the shared lab issued it before the one under test"
    )
    return secret


def assert_no_permission_errors(op: OperatorProcess) -> None:
    # The operator's KubeError reads "403 Forbidden: ..."; kopf warns "Not enough permissions".
    refusal = ("forbidden", "not enough permissions")
    bad = [line for line in op.log_text().splitlines() if any(r in line.lower() for r in refusal)]
    assert not bad, "the operator was refused:\n" + "\n".join(bad[:20])


# The tests


def test_every_rendering_is_admitted_by_the_api_server(
    lab: Lab, helm: Path, release: Release
) -> None:
    # The release fixture applied the namespaced HA rendering; these are dry runs of the others.
    renderings: dict[str, dict[str, Any]] = {
        "defaults (cluster-wide, standalone)": {},
        "cluster-wide with peering": {"replicas": 3, "peering": {"createCRDs": False}},
        "namespaced, standalone": {"namespaces": [release.namespace]},
    }
    for what, values in renderings.items():
        docs = render(helm, values, release=f"{release.name}-x", namespace=release.namespace)
        warnings = apply(lab, docs, dry_run=True)
        assert "PodSecurity" not in warnings, f"{what}: {warnings}"


def test_the_pod_is_admitted_under_the_restricted_pod_security_level(
    lab: Lab, release: Release
) -> None:
    # The StatefulSet's Pods never start in the lab (NO_NODE): submit its Pod template as a Pod.
    template = workload(release.docs)["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **template["metadata"],
            # Not the StatefulSet's own Pod name: its controller has made that Pod (Pending).
            "name": f"{release.name}-dry-run",
            "namespace": release.namespace,
        },
        "spec": template["spec"],
    }
    result = kubectl(lab, "create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr, result.stderr


def test_the_operator_issues_a_certificate_as_the_charts_service_account(
    lab: Lab, admin: Kube, release: Release
) -> None:
    ns = release.namespace
    with release.replica(lab, 1) as op:
        admin.create(ours_path("issuers", ns), acme_issuer(lab, ns, "pebble"))
        ready(admin, "issuers", ns, "pebble")
        cert = admin.create(ours_path("certificates", ns), certificate(ns, "web", "pebble"))
        ready(admin, "certificates", ns, "web")
        secret = written_by_this_release(admin, ns, cert)
        assert secret["type"] == "kubernetes.io/tls"
        assert {"tls.crt", "tls.key"} <= set(secret["data"])
        # The Issuer's account key, which the operator created next to it.
        assert admin.get(core_path("secrets", ns, "pebble-account")) is not None
        assert op.alive()
        assert_no_permission_errors(op)


@pytest.mark.parametrize(
    ("args", "why"),
    [
        pytest.param(
            ("get", "secrets", "--all-namespaces"),
            "list Secrets cluster-wide",
            id="cannot list Secrets cluster-wide",
        ),
        pytest.param(
            ("get", "secrets", "-n", "{ns}"),
            "list Secrets in its own namespace",
            id="cannot list Secrets even where it works",
        ),
        pytest.param(
            ("get", "secret", "anything", "-n", "kube-system"),
            "read a Secret outside its namespaces",
            id="cannot read Secrets in other namespaces",
        ),
        pytest.param(
            ("get", "certificates", "-n", "kube-system"),
            "list Certificates outside its namespaces",
            id="cannot list Certificates in other namespaces",
        ),
        pytest.param(
            ("get", "configmaps", "-n", "{ns}"), "read ConfigMaps", id="cannot read ConfigMaps"
        ),
        pytest.param(
            ("delete", "issuer", "web", "-n", "{ns}"),
            "delete an Issuer",
            id="cannot delete Issuers",
        ),
    ],
)
def test_the_service_account_is_refused_what_the_operator_never_needs(
    lab: Lab, release: Release, args: tuple[str, ...], why: str
) -> None:
    result = as_service_account(lab, release, *(a.format(ns=release.namespace) for a in args))
    assert forbidden(result), f"the ServiceAccount may {why}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        pytest.param("watch", "secrets", id="no Secret watch"),
        pytest.param("deletecollection", "secrets", id="no Secret deletecollection"),
        pytest.param("patch", "certificates.acmebridge.io", id="no Certificate patches"),
        pytest.param("update", "ingresses.networking.k8s.io", id="no Ingress writes"),
        pytest.param("update", "issuers.acmebridge.io", id="no Issuer spec writes"),
        pytest.param("update", "pods", id="no Pod updates"),
    ],
)
def test_the_service_account_may_not(lab: Lab, release: Release, verb: str, resource: str) -> None:
    result = as_service_account(
        lab, release, "auth", "can-i", verb, resource, "-n", release.namespace
    )
    assert result.stdout.strip() == "no", f"{verb} {resource}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    ("verb", "resource", "namespace"),
    [
        pytest.param(
            "create",
            "secrets",
            "{crns}",
            id="ClusterIssuer Secrets in the cluster-resource namespace",
        ),
        pytest.param("update", "secrets", "{ns}", id="TLS Secrets where it works"),
        pytest.param(
            "patch",
            "certificates.acmebridge.io --subresource=status",
            "{ns}",
            id="Certificate status",
        ),
        pytest.param(
            "patch",
            "clusterissuers.acmebridge.io --subresource=status",
            "",
            id="ClusterIssuer status",
        ),
        pytest.param("create", "ingresses.networking.k8s.io", "{ns}", id="solver Ingresses"),
        pytest.param("watch", "ingresses.networking.k8s.io", "{ns}", id="annotated Ingresses"),
        pytest.param(
            "update", "certificates.acmebridge.io", "{ns}", id="Certificates of Ingresses"
        ),
        pytest.param(
            "delete", "certificates.acmebridge.io", "{ns}", id="Certificates of gone Ingresses"
        ),
        pytest.param("create", "events", "default", id="Events about ClusterIssuers"),
        pytest.param("create", "kopfpeerings.kopf.dev", "{ns}", id="its peering object"),
        pytest.param("patch", "kopfpeerings.kopf.dev", "{ns}", id="its peering's keep-alives"),
    ],
)
def test_the_service_account_may_do_what_the_operator_does(
    lab: Lab, release: Release, verb: str, resource: str, namespace: str
) -> None:
    ns = namespace.format(ns=release.namespace, crns=CLUSTER_RESOURCE_NAMESPACE)
    scope = ["-n", ns] if ns else []
    result = as_service_account(lab, release, "auth", "can-i", verb, *resource.split(), *scope)
    assert result.stdout.strip() == "yes", f"{verb} {resource} {ns}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    "role",
    [
        pytest.param("{release}-edit", id="the chart's edit role"),
        pytest.param("edit", id="the built-in edit role, aggregated"),
    ],
)
def test_an_editor_manages_certificates_but_not_their_status(
    lab: Lab, admin: Kube, release: Release, role: str
) -> None:
    ns = release.namespace
    user = f"editor-{secrets.token_hex(3)}"
    admin.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": user, "namespace": ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role.format(release=release.name),
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )
    target = f"status-target-{user}"
    admin.create(ours_path("certificates", ns), certificate(ns, target, "missing"))
    as_user = ("--as", user, "-n", ns)

    def may_create() -> bool:
        manifest = json.dumps(certificate(ns, f"new-{user}", "missing"))
        result = kubectl(lab, *as_user, "create", "--dry-run=server", "-f", "-", stdin=manifest)
        return result.returncode == 0

    # The aggregation controller copies the chart's rules into `edit` shortly after install.
    wait_for(
        may_create, timeout=30, describe=f"{user} ({role}) to be allowed to create Certificates"
    )
    patch = json.dumps(
        {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Forged",
                        "message": "by hand",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            }
        }
    )
    result = kubectl(
        lab,
        *as_user,
        "patch",
        "certificate",
        target,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    )
    assert forbidden(result), f"{role} may write Certificate status: {result.stdout}{result.stderr}"
    result = kubectl(
        lab, *as_user, "auth", "can-i", "update", "issuers.acmebridge.io", "--subresource=status"
    )
    assert result.stdout.strip() == "no", result.stdout


def test_a_standby_replica_takes_over_when_the_active_one_stops(
    lab: Lab, admin: Kube, release: Release
) -> None:
    ns = release.namespace
    peering = f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/{release.name}"
    admin.create(ours_path("issuers", ns), acme_issuer(lab, ns, "ha"))
    with release.replica(lab, 1) as active, release.replica(lab, 0) as standby:
        # The replicas create the peering object if need be (the chart does not, see `release`).
        wait_for(
            lambda: len((admin.get(peering) or {}).get("status") or {}) == 2,
            timeout=30,
            describe=lambda: f"both replicas in the peering object: {admin.get(peering)}",
        )
        ready(admin, "issuers", ns, "ha")
        first = admin.create(ours_path("certificates", ns), certificate(ns, "first", "ha"))
        ready(admin, "certificates", ns, "first")
        written_by_this_release(admin, ns, first)
        assert f"Certificate {ns}/first: order https://" in active.log_text()
        # The replicas log at DEBUG: every ACME request is in the log.
        assert "/order-plz" not in standby.log_text(), "the standby replica worked"
        assert "Resuming operations" not in standby.log_text(), "the standby replica resumed"

        active.stop()
        wait_for(
            lambda: "Resuming operations" in standby.log_text(),
            timeout=30,
            describe="the standby replica to resume once the active one left the peering",
        )
        second = admin.create(ours_path("certificates", ns), certificate(ns, "second", "ha"))
        ready(admin, "certificates", ns, "second")
        written_by_this_release(admin, ns, second)
        assert f"Certificate {ns}/second: order https://" in standby.log_text()
        assert_no_permission_errors(standby)


def test_helm_installs_upgrades_and_uninstalls_the_chart(
    lab: Lab, admin: Kube, helm: Path, release: Release, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3)
    name, ns = f"acmebridge-h{suffix}", f"chart-helm-{suffix}"
    ensure_namespace(admin, ns, {TEST_LABEL: "true"})
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "replicas": 2,
                "namespaces": [ns],
                "clusterResourceNamespace": CLUSTER_RESOURCE_NAMESPACE,
                # `release` has put kopf's peering CRDs in the lab: this release must not own them.
                "peering": {"createCRDs": False},
                "nodeSelector": NO_NODE,
            }
        )
    )
    env = {"KUBECONFIG": str(lab.kubeconfig)}
    chart = [str(CHART), "--namespace", ns, "--values", str(values)]
    peering = f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/{name}"
    try:
        notes = run_helm(helm, "install", name, *chart, env=env)
        assert f"serves the namespaces: {ns}" in notes, notes
        # A peering object with a replica's keep-alive in it, as a running replica leaves it.
        alive = {"priority": 1, "lastseen": "2026-01-01T00:00:00Z", "lifetime": 60}
        admin.create(
            f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings",
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "KopfPeering",
                "metadata": {"name": name},
                "status": {"replica-1": alive},
            },
        )
        before = admin.get(peering)
        assert before is not None
        run_helm(helm, "upgrade", name, *chart, "--set", "logLevel=DEBUG", env=env)
        # An upgrade that reset it would let every replica work until its next keep-alive.
        after = admin.get(peering)
        assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after.get("status") == before.get("status")
        sts = admin.get(f"/apis/apps/v1/namespaces/{ns}/statefulsets/{name}")
        assert sts is not None
        args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--log-level=DEBUG" in args and f"--peering={name}" in args
    finally:
        run_helm(helm, "uninstall", name, "--namespace", ns, "--ignore-not-found", env=env)
        admin.delete(core_path("namespaces", None, ns))
    # Uninstalling removes the cluster-scoped objects; the peering object, the operator's, stays
    # until its namespace goes (the chart's README says how to remove it).
    assert admin.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}") is None
