"""What the workload mTLS lab tests share: operators with the webhook, workloads, Pods' volumes,
and TLS endpoints that use the certificates the Pods mount.

The operator runs outside the cluster, so the API server calls its webhook at a URL on loopback
(``--webhook-url``); each operator gets its own port and its own MutatingWebhookConfiguration,
whose namespace selector covers only the test's namespaces, so tests sharing the lab never see
each other's webhooks. Workload Pods carry a node selector no node has: they stay Pending, which
is all a test of the admitted Pod spec needs (the real node's tests run Pods for real).

``project`` writes what a Pod's injected volume holds, from the Secret and ConfigMap it names,
the way the kubelet fills a projected volume; the TLS endpoints read their files from there.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from acmebridge.adapters.kube import Conflict, Kube, KubeError, core_path, group_path
from acmebridge.domain.injection import VOLUME_NAME
from tests.lab.operator_proc import CLUSTER_RESOURCE_NAMESPACE, OperatorProcess, free_port
from tests.lab.waits import wait_for

CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
#: a node selector no node matches: Pods stay Pending (the lab may have a real node)
NOWHERE = {"acmebridge.io/test-node": "none"}
TIMEOUT = 90


@dataclass
class MtlsOperator:
    """An operator with the webhook on ``port`` and its own webhook configuration."""

    process: OperatorProcess
    port: int
    configuration: str

    def served_certificate(self) -> x509.Certificate:
        """The certificate the webhook serves right now."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


def _answers(op: MtlsOperator) -> bool:
    try:
        op.served_certificate()
    except OSError:
        return False
    return True


def mtls_flags(port: int, configuration: str) -> list[str]:
    return [
        "--mtls",
        f"--webhook-url=https://127.0.0.1:{port}",
        "--webhook-address=127.0.0.1",
        f"--webhook-port={port}",
        f"--webhook-configuration={configuration}",
    ]


@pytest.fixture(name="mtls_factory")
def mtls_factory_fixture(
    operator_factory: Callable[..., OperatorProcess], k: Kube, request: pytest.FixtureRequest
) -> Iterator[Callable[..., MtlsOperator]]:
    """Starts mTLS operators for given namespaces; removes their webhook configurations and
    serving Secrets afterwards (before the operators stop and the namespaces go)."""
    made: list[str] = []

    def start(
        *namespaces: str, configuration: str | None = None, extra: Sequence[str] = (), **kw: Any
    ) -> MtlsOperator:
        name = configuration or f"mtls-{namespaces[0]}"[:63].rstrip("-")
        port = free_port()
        op = operator_factory(*namespaces, extra=[*mtls_flags(port, name), *extra], **kw)
        if name not in made:
            made.append(name)
        wait_for(
            lambda: k.get(f"{CONFIGURATIONS}/{name}"),
            timeout=30,
            describe=f"MutatingWebhookConfiguration {name}",
        )
        started = MtlsOperator(op, port, name)
        # kopf's health endpoint answers before its webhook server listens; the workload webhook
        # fails open, so a test must not create workloads before the webhook answers.
        wait_for(lambda: _answers(started), timeout=30, describe=f"the webhook on port {port}")
        return started

    yield start
    for name in made:
        with contextlib.suppress(KubeError):
            k.delete(f"{CONFIGURATIONS}/{name}")
        with contextlib.suppress(KubeError):
            k.delete(core_path("secrets", CLUSTER_RESOURCE_NAMESPACE, f"{name}-webhook-tls"))


def workload(
    namespace: str,
    name: str,
    annotations: Mapping[str, str],
    *,
    kind: str = "Deployment",
    replicas: int = 1,
    containers: Sequence[str] = ("app",),
) -> dict[str, Any]:
    """A Deployment, StatefulSet or DaemonSet whose Pods carry ``annotations``."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": dict(annotations)},
            "spec": {
                "nodeSelector": dict(NOWHERE),
                "containers": [{"name": c, "image": "example.invalid/app:1"} for c in containers],
            },
        },
    }
    if kind != "DaemonSet":
        spec["replicas"] = replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def plural(kind: str) -> str:
    return {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}[
        kind
    ]


def create(k: Kube, body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return k.create(group_path("apps", "v1", plural(body["kind"]), meta["namespace"]), body)


def get_workload(k: Kube, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return k.get(group_path("apps", "v1", plural(kind), namespace, name))


def pods_of(k: Kube, namespace: str, app: str) -> list[dict[str, Any]]:
    return k.list(core_path("pods", namespace), label_selector=f"app={app}")


def wait_pods(k: Kube, namespace: str, app: str, count: int = 1) -> list[dict[str, Any]]:
    return wait_for(
        lambda: (lambda pods: pods if len(pods) >= count else None)(pods_of(k, namespace, app)),
        timeout=TIMEOUT,
        describe=lambda: (
            f"{count} Pod(s) of {namespace}/{app}; Events:\n{events_text(k, namespace)}"
        ),
    )


def events_text(k: Kube, namespace: str) -> str:
    lines = []
    for e in k.list(core_path("events", namespace)):
        about = e.get("involvedObject") or {}
        lines.append(
            f"{about.get('kind')}/{about.get('name')} {e.get('reason')}: {e.get('message')}"
        )
    return "\n".join(lines)


def events_of(k: Kube, obj: Mapping[str, Any], reason: str) -> list[dict[str, Any]]:
    uid = obj["metadata"]["uid"]
    return [
        e
        for e in k.list(core_path("events", obj["metadata"]["namespace"]))
        if (e.get("involvedObject") or {}).get("uid") == uid and e.get("reason") == reason
    ]


def wait_event(k: Kube, obj: Mapping[str, Any], reason: str, *, timeout: float = TIMEOUT) -> str:
    """Waits for an Event of ``reason`` about ``obj``; returns its message."""
    found = wait_for(
        lambda: events_of(k, obj, reason),
        timeout=timeout,
        describe=lambda: (
            f"an Event {reason} on {obj['metadata']['name']}; Events:\n"
            + events_text(k, obj["metadata"]["namespace"])
        ),
    )
    return str(found[0]["message"])


def injected_volume(pod: Mapping[str, Any]) -> dict[str, Any]:
    volumes = [v for v in pod["spec"].get("volumes") or [] if v["name"] == VOLUME_NAME]
    assert len(volumes) == 1, (
        f"Pod {pod['metadata']['name']} has volumes {pod['spec'].get('volumes')}"
    )
    return dict(volumes[0])


def mounts(pod: Mapping[str, Any]) -> dict[str, str]:
    """Container name -> where the injected volume is mounted."""
    found: dict[str, str] = {}
    for c in [*pod["spec"]["containers"], *(pod["spec"].get("initContainers") or [])]:
        for m in c.get("volumeMounts") or []:
            if m["name"] == VOLUME_NAME:
                assert m.get("readOnly") is True, m
                found[c["name"]] = m["mountPath"]
    return found


def project(k: Kube, pod: Mapping[str, Any], dest: Path) -> Path:
    """Writes the files of the Pod's injected volume into ``dest``, as the kubelet would."""
    namespace = pod["metadata"]["namespace"]
    dest.mkdir(parents=True, exist_ok=True)
    for source in injected_volume(pod)["projected"]["sources"]:
        if "secret" in source:
            obj = k.get(core_path("secrets", namespace, source["secret"]["name"]))
        else:
            obj = k.get(core_path("configmaps", namespace, source["configMap"]["name"]))
        assert obj is not None, f"the volume's source {source} does not exist"
        inner = source.get("secret") or source.get("configMap") or {}
        data = obj.get("data") or {}
        items = inner.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            raw = data[item["key"]]
            content = base64.b64decode(raw) if "secret" in source else raw.encode()
            tmp = dest / f".{item['path']}.tmp"
            tmp.write_bytes(content)
            tmp.replace(dest / item["path"])
    return dest


@dataclass
class TlsServer:
    """A TLS endpoint that reads its files for every connection (software that reloads)."""

    directory: Path
    require_client: bool
    port: int = 0
    peers: list[x509.Certificate] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.directory / "tls.crt", self.directory / "tls.key")
        if self.require_client:
            ctx.load_verify_locations(self.directory / "ca.crt")
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def serve(self, sock: socket.socket, stop: threading.Event) -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with self.context().wrap_socket(conn, server_side=True) as tls:
                    der = tls.getpeercert(binary_form=True)
                    if der:
                        self.peers.append(x509.load_der_x509_certificate(der))
                    tls.sendall(b"hello\n")
            except (ssl.SSLError, OSError) as e:
                self.errors.append(str(e))
                conn.close()


@contextlib.contextmanager
def tls_server(directory: Path, *, require_client: bool) -> Iterator[TlsServer]:
    server = TlsServer(directory, require_client)
    stop = threading.Event()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server.port = int(sock.getsockname()[1])
        thread = threading.Thread(target=server.serve, args=(sock, stop), daemon=True)
        thread.start()
        try:
            yield server
        finally:
            stop.set()
            thread.join(5)


def connect(
    port: int, *, ca: Path, server_name: str, cert: Path | None = None, key: Path | None = None
) -> tuple[x509.Certificate, bytes]:
    """A TLS client that verifies the server against ``ca`` for ``server_name`` and presents
    ``cert``; returns the server's certificate and what it said."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        said = tls.recv(64)
    assert der is not None
    return x509.load_der_x509_certificate(der), said


def foreign_client(directory: Path, name: str) -> tuple[Path, Path]:
    """A client certificate (with clientAuth) for ``name`` from a CA no workload trusts."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Somebody Else's CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "impostor")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def make_namespace(k: Kube, name: str, labels: Mapping[str, str] | None = None) -> None:
    body = {"metadata": {"name": name, "labels": {"acmebridge.io/test": "true", **(labels or {})}}}
    with contextlib.suppress(Conflict):
        k.create(core_path("namespaces", None), body)
    # Pods are refused until the namespace's `default` ServiceAccount exists.
    wait_for(
        lambda: k.get(core_path("serviceaccounts", name, "default")),
        timeout=30,
        describe=f"the default ServiceAccount in {name}",
    )


def label_namespace(k: Kube, name: str, labels: Mapping[str, str | None]) -> None:
    k.merge_patch(core_path("namespaces", None, name), {"metadata": {"labels": dict(labels)}})
