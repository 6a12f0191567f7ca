"""Workload mTLS in the lab: real Deployments make real Pods through the real API server, which
calls the operator's webhook; Certificates are issued by Pebble and by step-ca.

Proves: the Pods get the volume and mounts; the workload's Certificate is issued (Pebble, and
step-ca from the enterprise root); two workloads' certificates complete mutual TLS, each side
verifying the other against the injected ``ca.crt``, and a client from another CA is refused;
a renewal reaches the same Pods without a restart, and with ``restart-on-renewal`` the
Deployment rolls; the trust ConfigMap is in opted-in namespaces only; deleting or opting out a
workload removes its Certificate and Secret (also while the operator is down); bad annotations
are refused at admission, naming the annotation; an impossible name is explained; the webhook
answers while the leader replica is stopped, and after its serving certificate is renewed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from acmebridge.adapters.kube import Conflict, Kube, KubeError, core_path, ours_path
from tests.conftest import namespace_name
from tests.lab.conftest import acme_spec, b64_file, make_issuer
from tests.lab.mtls_support import (
    CONFIGURATIONS,
    MtlsOperator,
    connect,
    create,
    foreign_client,
    get_workload,
    injected_volume,
    label_namespace,
    make_namespace,
    mounts,
    mtls_factory_fixture,  # noqa: F401
    pods_of,
    project,
    tls_server,
    wait_event,
    wait_pods,
    workload,
)
from tests.lab.operator_proc import ROOT
from tests.lab.test_dns01 import dns01_issuer
from tests.lab.test_existing_pki import stepca_spec
from tests.lab.test_issuance import assert_chain_verifies_to, load_chain, ready, sans, secret_data
from tests.lab.waits import wait_for


def template_annotations(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"].get("annotations") or {})


pytestmark = pytest.mark.lab

INJECT = {"acmebridge.io/inject": "true", "acmebridge.io/issuer": "mesh"}
NAMES = {"acmebridge.io/dns-names": "{name}.{namespace}.mesh.lab.test"}
MtlsFactory = Callable[..., MtlsOperator]


def pebble_issuer(lab: Any, k: Kube, namespace: str, name: str = "mesh") -> None:
    """Pebble, with its root as issuingCABundle so that ca.crt is proven."""
    make_issuer(
        k, namespace, name, acme_spec(lab, issuingCABundle=b64_file(lab.env["PEBBLE_ROOT"]))
    )


def certificate_of(k: Kube, namespace: str, name: str, kind: str = "deployment") -> str:
    """Waits until the workload's Certificate is Ready; returns its (and its Secret's) name."""
    cert = f"{name}-{kind}-mtls"
    ready(k, namespace, cert, timeout=120)
    return cert


def leaf(k: Kube, namespace: str, secret: str) -> x509.Certificate:
    return load_chain(secret_data(k, namespace, secret)["tls.crt"])[0]


# --- injection and issuance ---------------------------------------------------------------------


def test_pods_get_the_volume_and_mounts_and_pebble_issues_the_certificate(
    lab: Any, k: Kube, namespace: str, mtls_factory: MtlsFactory
) -> None:
    mtls_factory(namespace)
    pebble_issuer(lab, k, namespace)
    annotations = {**INJECT, **NAMES, "acmebridge.io/containers": "app,proxy"}
    body = workload(namespace, "web", annotations, containers=("app", "proxy", "other"))
    create(k, body)

    (pod,) = wait_pods(k, namespace, "web")
    assert mounts(pod) == {"app": "/var/run/acmebridge", "proxy": "/var/run/acmebridge"}
    volume = injected_volume(pod)
    assert volume["projected"]["sources"] == [{"secret": {"name": "web-deployment-mtls"}}]

    name = certificate_of(k, namespace, "web")
    cert = k.get(ours_path("certificates", namespace, name))
    assert cert is not None
    owner = cert["metadata"]["ownerReferences"][0]
    deployment = get_workload(k, "Deployment", namespace, "web")
    assert deployment is not None
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Deployment",
        "web",
        deployment["metadata"]["uid"],
    )
    data = secret_data(k, namespace, name)
    chain = load_chain(data["tls.crt"])
    root = x509.load_pem_x509_certificate(Path(lab.env["PEBBLE_ROOT"]).read_bytes())
    assert_chain_verifies_to(chain, root)
    assert sans(chain[0])[0] == {f"web.{namespace}.mesh.lab.test"}
    assert x509.load_pem_x509_certificate(data["ca.crt"]) == root
    # Pebble issues serverAuth only: the workload is told it cannot be a TLS client.
    assert "clientAuth" in wait_event(k, deployment, "NoClientAuth")
    # The Secret belongs to the workload too, for the garbage collector.
    secret = k.get(core_path("secrets", namespace, name))
    assert secret is not None
    wait_for(
        lambda: any(
            r["uid"] == deployment["metadata"]["uid"]
            for r in (k.get(core_path("secrets", namespace, name)) or {})["metadata"].get(
                "ownerReferences", []
            )
        ),
        timeout=30,
        describe="the Secret's ownerReference to the Deployment",
    )


def test_step_ca_issues_a_statefulsets_certificate_from_the_enterprise_root(
    lab: Any, k: Kube, namespace: str, mtls_factory: MtlsFactory
) -> None:
    mtls_factory(namespace)
    make_issuer(k, namespace, "mesh", stepca_spec(lab.env))
    create(k, workload(namespace, "db", {**INJECT, **NAMES}, kind="StatefulSet"))

    (pod,) = wait_pods(k, namespace, "db")
    assert injected_volume(pod)["projected"]["sources"] == [
        {"secret": {"name": "db-statefulset-mtls"}}
    ]
    name = certificate_of(k, namespace, "db", "statefulset")
    data = secret_data(k, namespace, name)
    chain = load_chain(data["tls.crt"])
    root = x509.load_pem_x509_certificate(Path(lab.env["STEPCA_ROOT"]).read_bytes())
    assert_chain_verifies_to(chain, root)
    assert x509.load_pem_x509_certificate(data["ca.crt"]) == root
    ekus = set(chain[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= ekus


def test_two_workloads_complete_mutual_tls_and_a_foreign_client_is_refused(
    lab: Any,
    k: Kube,
    namespace: str,
    mtls_factory: MtlsFactory,
    tmp_path: Path,
) -> None:
    label_namespace(k, namespace, {"acmebridge.io/trust": "true"})
    mtls_factory(namespace)
    make_issuer(k, namespace, "mesh", stepca_spec(lab.env))
    for app in ("server", "client"):
        create(k, workload(namespace, app, {**INJECT, **NAMES}))
    for app in ("server", "client"):
        certificate_of(k, namespace, app)
    wait_for(
        lambda: k.get(core_path("configmaps", namespace, "acmebridge-trust")),
        timeout=60,
        describe="the trust bundle",
    )
    server_pod, client_pod = (wait_pods(k, namespace, app)[0] for app in ("server", "client"))
    # ca.crt comes from the namespace's trust bundle.
    assert injected_volume(server_pod)["projected"]["sources"][1]["configMap"]["name"] == (
        "acmebridge-trust"
    )
    server_dir = project(k, server_pod, tmp_path / "server")
    client_dir = project(k, client_pod, tmp_path / "client")
    server_name = f"server.{namespace}.mesh.lab.test"

    with tls_server(server_dir, require_client=True) as server:
        served, said = connect(
            server.port,
            ca=client_dir / "ca.crt",
            server_name=server_name,
            cert=client_dir / "tls.crt",
            key=client_dir / "tls.key",
        )
        assert said == b"hello\n"
        assert sans(served)[0] == {server_name}
        assert [sans(p)[0] for p in server.peers] == [{f"client.{namespace}.mesh.lab.test"}]

        cert, key = foreign_client(tmp_path / "foreign", f"client.{namespace}.mesh.lab.test")
        with pytest.raises((OSError, AssertionError)):
            _, said = connect(
                server.port,
                ca=client_dir / "ca.crt",
                server_name=server_name,
                cert=cert,
                key=key,
            )
            assert said == b"hello\n"
        wait_for(lambda: server.errors, timeout=10, describe="the server to refuse the client")
        assert "certificate verify failed" in server.errors[0]
        assert len(server.peers) == 1


# --- rotation -----------------------------------------------------------------------------------


def renew(lab: Any, namespace: str, name: str) -> None:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "acmebridge"), "renew", "-n", namespace, name],
        env={**os.environ, "KUBECONFIG": lab.env["KUBECONFIG"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def replica_sets(k: Kube, namespace: str, app: str) -> set[str]:
    return {
        rs["metadata"]["name"]
        for rs in k.list(
            f"/apis/apps/v1/namespaces/{namespace}/replicasets", label_selector=f"app={app}"
        )
    }


def test_a_renewal_reaches_the_same_pods_and_restart_on_renewal_rolls_the_deployment(
    lab: Any, k: Kube, namespace: str, mtls_factory: MtlsFactory, tmp_path: Path
) -> None:
    mtls_factory(namespace)
    pebble_issuer(lab, k, namespace)
    create(k, workload(namespace, "quiet", {**INJECT, **NAMES}))
    restart = {"acmebridge.io/restart-on-renewal": "true"}
    create(k, workload(namespace, "rolling", {**INJECT, **NAMES, **restart}))
    for app in ("quiet", "rolling"):
        certificate_of(k, namespace, app)
    (quiet_pod,) = wait_pods(k, namespace, "quiet")
    for app in ("quiet", "rolling"):
        # The first certificate is recorded, without a restart: the Pods waited for it.
        wait_for(
            lambda app=app: (
                (get_workload(k, "Deployment", namespace, app) or {})["metadata"]
                .get("annotations", {})
                .get("acmebridge.io/certificate-sha256")
            ),
            timeout=30,
            describe=f"{app}'s first certificate recorded",
        )
    before = {app: get_workload(k, "Deployment", namespace, app) for app in ("quiet", "rolling")}
    sets_before = {app: replica_sets(k, namespace, app) for app in ("quiet", "rolling")}
    assert all(len(s) == 1 for s in sets_before.values()), sets_before

    files = project(k, quiet_pod, tmp_path / "quiet")
    old = leaf(k, namespace, "quiet-deployment-mtls")
    with tls_server(files, require_client=False) as server:
        served, _ = connect(
            server.port, ca=files / "ca.crt", server_name=f"quiet.{namespace}.mesh.lab.test"
        )
        assert served == old

        for app in ("quiet", "rolling"):
            renew(lab, namespace, f"{app}-deployment-mtls")
        new = wait_for(
            lambda: (lambda c: c if c != old else None)(
                leaf(k, namespace, "quiet-deployment-mtls")
            ),
            timeout=120,
            describe="the renewed certificate in quiet's Secret",
        )
        project(k, quiet_pod, files)  # what the kubelet does for a running Pod's volume
        served, _ = connect(
            server.port, ca=files / "ca.crt", server_name=f"quiet.{namespace}.mesh.lab.test"
        )
        assert served == new, "the running endpoint serves the renewed certificate"

    rolling = wait_for(
        lambda: (lambda d: d if "acmebridge.io/restarted-for" in template_annotations(d) else None)(
            get_workload(k, "Deployment", namespace, "rolling")
        ),
        timeout=60,
        describe="the rolling Deployment's template to change",
    )
    template = rolling["spec"]["template"]["metadata"]["annotations"]
    assert (
        template["acmebridge.io/restarted-for"]
        == rolling["metadata"]["annotations"]["acmebridge.io/certificate-sha256"]
    )
    wait_for(
        lambda: len(replica_sets(k, namespace, "rolling")) == 2,
        timeout=60,
        describe="a second ReplicaSet: the Deployment rolls",
    )
    assert "restart-on-renewal" in wait_event(k, rolling, "RollingRestart")

    quiet = get_workload(k, "Deployment", namespace, "quiet")
    assert quiet is not None
    # (Not the generation: a Deployment's rises with its annotations too, such as the record of
    # the certificate it was seen with.)
    assert quiet["spec"]["template"] == before["quiet"]["spec"]["template"]
    assert replica_sets(k, namespace, "quiet") == sets_before["quiet"]
    assert [p["metadata"]["name"] for p in pods_of(k, namespace, "quiet")] == [
        quiet_pod["metadata"]["name"]
    ], "the same Pod, never restarted"


# --- trust bundle -------------------------------------------------------------------------------


def trust_roots(k: Kube, namespace: str) -> list[x509.Certificate] | None:
    cm = k.get(core_path("configmaps", namespace, "acmebridge-trust"))
    if cm is None:
        return None
    return x509.load_pem_x509_certificates(cm["data"]["ca.crt"].encode())


def test_the_trust_bundle_is_in_opted_in_namespaces_only(
    lab: Any, k: Kube, namespace: str, mtls_factory: MtlsFactory, request: pytest.FixtureRequest
) -> None:
    other = namespace_name(request.node.name + "-other")
    make_namespace(k, other)
    try:
        label_namespace(k, namespace, {"acmebridge.io/trust": "true"})
        mtls_factory(namespace, other)
        pebble_issuer(lab, k, namespace)
        create(k, workload(namespace, "web", {**INJECT, **NAMES}))
        certificate_of(k, namespace, "web")
        root = x509.load_pem_x509_certificate(Path(lab.env["PEBBLE_ROOT"]).read_bytes())
        roots = wait_for(
            lambda: trust_roots(k, namespace),
            timeout=60,
            describe="the trust bundle in the opted-in namespace",
        )
        assert roots == [root]
        assert trust_roots(k, other) is None

        label_namespace(k, other, {"acmebridge.io/trust": "true"})
        assert wait_for(lambda: trust_roots(k, other), timeout=30, describe="it in the other") == [
            root
        ]
        label_namespace(k, namespace, {"acmebridge.io/trust": None})
        wait_for(
            lambda: trust_roots(k, namespace) is None,
            timeout=30,
            describe="the bundle removed from the namespace that stopped asking",
        )
    finally:
        k.delete(core_path("namespaces", None, other))


# --- removal ------------------------------------------------------------------------------------


def gone(k: Kube, namespace: str, name: str) -> bool:
    return (
        k.get(ours_path("certificates", namespace, name)) is None
        and k.get(core_path("secrets", namespace, name)) is None
    )


def test_deleting_the_workload_removes_its_certificate_and_secret_even_with_the_operator_down(
    lab: Any, k: Kube, namespace: str, mtls_factory: MtlsFactory
) -> None:
    op = mtls_factory(namespace)
    pebble_issuer(lab, k, namespace)
    deployment = create(k, workload(namespace, "web", {**INJECT, **NAMES}))
    name = certificate_of(k, namespace, "web")
    wait_for(
        lambda: any(
            r["uid"] == deployment["metadata"]["uid"]
            for r in (k.get(core_path("secrets", namespace, name)) or {"metadata": {}})[
                "metadata"
            ].get("ownerReferences", [])
        ),
        timeout=30,
        describe="the Secret owned by the Deployment",
    )
    op.process.stop()
    k.delete(f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
    wait_for(
        lambda: gone(k, namespace, name),
        timeout=60,
        describe="the garbage collector to delete the Certificate and the Secret",
    )


def test_opting_out_removes_the_certificate_and_secret(
    lab: Any, k: Kube, namespace: str, mtls_factory: MtlsFactory
) -> None:
    mtls_factory(namespace)
    pebble_issuer(lab, k, namespace)
    create(k, workload(namespace, "web", {**INJECT, **NAMES}))
    name = certificate_of(k, namespace, "web")
    k.merge_patch(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
        {"spec": {"template": {"metadata": {"annotations": {"acmebridge.io/inject": None}}}}},
    )
    wait_for(
        lambda: gone(k, namespace, name), timeout=60, describe="the Certificate and Secret gone"
    )
    assert get_workload(k, "Deployment", namespace, "web") is not None


# --- refusals and explanations ------------------------------------------------------------------


BAD = [
    ({"acmebridge.io/inject": "yes"}, "acmebridge.io/inject"),
    ({"acmebridge.io/duration": "1m"}, "acmebridge.io/duration"),
    ({"acmebridge.io/dns-names": "{pod}.mesh.lab.test"}, "acmebridge.io/dns-names"),
    ({"acmebridge.io/containers": "sidecar"}, "acmebridge.io/containers"),
    ({"acmebridge.io/mount-path": "relative/dir"}, "acmebridge.io/mount-path"),
    ({"acmebridge.io/issuer-kind": "Vault"}, "acmebridge.io/issuer-kind"),
]


def refusal(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except KubeError as e:
        assert e.status in (400, 403, 422), e
        return e.message
    raise AssertionError("admitted")


def test_bad_annotations_are_refused_at_admission_naming_the_annotation(
    k: Kube, namespace: str, mtls_factory: MtlsFactory
) -> None:
    mtls_factory(namespace)
    for i, (bad, annotation) in enumerate(BAD):
        annotations = {**INJECT, **NAMES, **bad}
        for kind in ("Deployment", "DaemonSet"):
            body = workload(namespace, f"bad-{i}-{kind.lower()}", annotations, kind=kind)
            message = refusal(lambda body=body: create(k, body))
            assert f"{annotation}: " in message, (kind, bad, message)
    # A Pod on its own is refused too, with the same words; and a Pod of no workload is told
    # where the annotations belong.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lonely", "namespace": namespace, "annotations": {**INJECT, **NAMES}},
        "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
    }
    message = refusal(lambda: k.create(core_path("pods", namespace), pod))
    assert "acmebridge.io/inject: only Pods of a Deployment, StatefulSet or DaemonSet" in message
    pod["metadata"]["annotations"]["acmebridge.io/duration"] = "soon"
    message = refusal(lambda: k.create(core_path("pods", namespace), pod))
    assert "acmebridge.io/duration: " in message
    # Objects without the annotation never reach the webhook.
    plain = workload(namespace, "plain", {})
    create(k, plain)
    (p,) = wait_pods(k, namespace, "plain")
    assert not mounts(p)


def test_a_cluster_internal_name_is_explained_on_the_workload(
    lab: Any, k: Kube, namespace: str, mtls_factory: MtlsFactory
) -> None:
    mtls_factory(namespace)
    pebble_issuer(lab, k, namespace)
    names = {"acmebridge.io/dns-names": "{name}.{namespace}.svc.cluster.local"}
    deployment = create(k, workload(namespace, "web", {**INJECT, **names}))
    message = wait_event(k, deployment, "NameNotValidatable")
    assert f"'web.{namespace}.svc.cluster.local' is a cluster-internal name" in message
    assert f"'web.{namespace}.mesh.example.com'" in message and "DNS-01" in message
    # The workload's Certificate says the same and orders nothing: the lab's Pebble would even
    # issue for such a name (it resolves every name to this host), a real CA never would.
    path = ours_path("certificates", namespace, "web-deployment-mtls")

    def refused() -> dict[str, Any] | None:
        status = (k.get(path) or {}).get("status") or {}
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return status if ready and ready[0]["reason"] == "NameNotValidatable" else None

    status = wait_for(refused, timeout=30, describe="the workload's Certificate to refuse")
    assert status["lastFailure"]["reason"] == "nameNotValidatable", status
    assert "order" not in status and "cluster-internal" in status["lastFailure"]["message"]


# --- availability -------------------------------------------------------------------------------

PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev",
        "scope": "Namespaced",
        "names": {"kind": "KopfPeering", "plural": "kopfpeerings", "singular": "kopfpeering"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_the_webhook_answers_while_the_leader_replica_is_stopped(
    lab: Any, k: Kube, namespace: str, mtls_factory: MtlsFactory
) -> None:
    # kopf's peering CRD: other tests (the chart's) may have made it; it stays for them.
    with contextlib.suppress(Conflict):
        k.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", PEERING_CRD)
    wait_for(lambda: _peering_served(k, namespace), timeout=30, describe="the KopfPeering resource")
    pebble_issuer(lab, k, namespace)
    peering = ["--peering=mesh"]
    # The standby starts first and registers the webhook at its own address; the leader
    # (higher priority) then takes over reconciling, not the webhook.
    standby = mtls_factory(namespace, extra=[*peering, "--priority=1"], name="standby")
    leader = mtls_factory(namespace, extra=[*peering, "--priority=10"], name="leader")
    wait_for(
        lambda: "Pausing operations" in standby.process.log_text(),
        timeout=60,
        describe="the standby replica to pause in favour of the leader",
    )
    config = k.get(f"{CONFIGURATIONS}/{standby.configuration}")
    assert config is not None
    assert config["webhooks"][0]["clientConfig"]["url"].startswith(
        f"https://127.0.0.1:{standby.port}/"
    )
    assert leader.served_certificate() == standby.served_certificate(), "one shared certificate"

    leader.process.proc.send_signal(signal.SIGSTOP)
    try:
        create(k, workload(namespace, "web", {**INJECT, **NAMES}))
        (pod,) = wait_pods(k, namespace, "web")
        assert mounts(pod) == {"app": "/var/run/acmebridge"}, "admitted by the standby"
        since_pause = standby.process.log_text().rsplit("Pausing operations", 1)[1]
        assert "Resuming operations" not in since_pause, "the standby is still standing by"
        assert k.get(ours_path("certificates", namespace, "web-deployment-mtls")) is None, (
            "nobody reconciles while the leader is stopped"
        )
    finally:
        leader.process.proc.send_signal(signal.SIGCONT)
    certificate_of(k, namespace, "web")


def _peering_served(k: Kube, namespace: str) -> bool:
    try:
        k.create(
            f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings",
            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "mesh"}},
        )
    except Conflict:
        return True
    except KubeError:
        return False
    return True


def test_the_webhook_renews_its_serving_certificate_and_keeps_answering(
    lab: Any, k: Kube, namespace: str, mtls_factory: MtlsFactory
) -> None:
    op = mtls_factory(namespace, extra=["--webhook-cert-duration=45"])
    first = op.served_certificate()
    config = k.get(f"{CONFIGURATIONS}/{op.configuration}")
    assert config is not None
    bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
    (ca,) = x509.load_pem_x509_certificates(bundle)
    first.verify_directly_issued_by(ca)
    # Renewed at two thirds of 45 s; kopf's server picks the new file up within seconds.
    second = wait_for(
        lambda: (lambda c: c if c != first else None)(op.served_certificate()),
        timeout=90,
        describe="a renewed serving certificate",
    )
    second.verify_directly_issued_by(ca)
    assert second.not_valid_before_utc > first.not_valid_before_utc
    create(k, workload(namespace, "web", {**INJECT, **NAMES}))
    (pod,) = wait_pods(k, namespace, "web")
    assert mounts(pod), "the API server still trusts the webhook"


# --- the DNS-01 name layout ---------------------------------------------------------------------


def test_the_dns01_layout_issues_a_workload_certificate_through_bind(
    lab: Any,
    k: Kube,
    namespace: str,
    mtls_factory: MtlsFactory,
) -> None:
    mtls_factory(namespace, extra=[f"--dns01-nameservers={lab.env['BIND_ADDR']}"])
    issuer = dns01_issuer(lab, k, namespace)
    zone = lab.env["BIND_ZONE"]
    annotations = {
        "acmebridge.io/inject": "true",
        "acmebridge.io/issuer": issuer,
        "acmebridge.io/dns-names": f"{{name}}.mesh.{zone}",
    }
    create(k, workload(namespace, "api", annotations))
    (pod,) = wait_pods(k, namespace, "api")
    assert mounts(pod) == {"app": "/var/run/acmebridge"}
    name = certificate_of(k, namespace, "api")
    assert sans(leaf(k, namespace, name))[0] == {f"api.mesh.{zone}"}
