"""Workload mTLS with real Pods on the lab's real node: two Deployments get their certificates
mounted by the kubelet, and their containers talk mutual TLS over the Pod network.

The operator runs as a local process (as in tests/lab/test_mtls.py), so that it reaches step-ca,
whose certificates carry clientAuth (Pebble's do not), and the API server calls its webhook on
loopback. Everything else is the cluster's: the scheduler places the Pods on the node, the kubelet
waits for the Secret before it starts them (the volume is not optional), mounts the projected
volume, and runs the operator's image with a small TLS server and client in Python. A third Pod,
which did not opt in, presents a certificate from another CA with the same name and is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acmebridge.adapters.kube import Kube, core_path, group_path
from tests.lab import conftest as lab_fixtures
from tests.lab.conftest import make_issuer
from tests.lab.mtls_support import (
    MtlsOperator,
    foreign_client,
    mounts,
    mtls_factory_fixture,  # noqa: F401
)
from tests.lab.test_existing_pki import stepca_spec
from tests.lab.test_issuance import ready
from tests.lab.waits import wait_for
from tests.node.conftest import IMAGE

# The admin client and per-test operators of tests/lab/ (tests/node has its own conftest).
k = lab_fixtures.k
operator_factory = lab_fixtures.operator_factory
PORT = 8443
# The server answers each client with the names its verified certificate carries.
SERVER = """
import socket, ssl
d = "/var/run/acmebridge"
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", PORT))
s.listen()
while True:
    c, _ = s.accept()
    c.settimeout(5)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d + "/tls.crt", d + "/tls.key")
    ctx.load_verify_locations(d + "/ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        with ctx.wrap_socket(c, server_side=True) as t:
            names = [v for k, v in t.getpeercert().get("subjectAltName", ()) if k == "DNS"]
            t.sendall(("hello " + ",".join(names)).encode())
    except Exception:
        c.close()
""".replace("PORT", str(PORT))
# The client tries for a minute, then reports through its termination message (the API shows
# it in the Pod's status; no log access needed) and exits.
CLIENT = """
import os, socket, ssl, time
d = os.environ["CERT_DIR"]
result = "never tried"
for attempt in range(30):
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(d + "/ca.crt")
        ctx.load_cert_chain(d + "/tls.crt", d + "/tls.key")
        raw = socket.create_connection((os.environ["SERVER_ADDR"], PORT), timeout=5)
        with ctx.wrap_socket(raw, server_hostname=os.environ["SERVER_NAME"]) as t:
            names = [v for k, v in t.getpeercert().get("subjectAltName", ()) if k == "DNS"]
            said = t.recv(256).decode()
        if said:
            result = "CONNECTED to " + ",".join(names) + ", which said: " + said
            break
        result = "FAILED: the server closed the connection"
    except Exception as e:
        result = "FAILED: " + type(e).__name__ + ": " + str(e)
    time.sleep(2)
open("/dev/termination-log", "w").write(result)
raise SystemExit(0 if result.startswith("CONNECTED") else 1)
""".replace("PORT", str(PORT))
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}


def deployment(
    namespace: str,
    name: str,
    script: str,
    *,
    annotations: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    volume_mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "app",
        "image": IMAGE,
        "imagePullPolicy": "Never",
        "command": ["python3", "-c", script],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "securityContext": RESTRICTED,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
    }
    if volume_mounts:
        container["volumeMounts"] = volume_mounts
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes or [],
                },
            },
        },
    }


def running_pod(k: Kube, namespace: str, app: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        pods = k.list(core_path("pods", namespace), label_selector=f"app={app}")
        up = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        return up[0] if up and up[0]["status"].get("podIP") else None

    return wait_for(
        running,
        timeout=180,
        describe=lambda: (
            f"a running Pod of {app}: "
            + str([p.get("status") for p in k.list(core_path("pods", namespace))])
        ),
    )


def reported(k: Kube, namespace: str, app: str) -> str | None:
    """The termination message of the app's container, once it has finished a run."""
    for pod in k.list(core_path("pods", namespace), label_selector=f"app={app}"):
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            for state in (status.get("state") or {}, status.get("lastState") or {}):
                message = (state.get("terminated") or {}).get("message")
                if message:
                    return str(message)
    return None


def test_two_real_pods_complete_mutual_tls_and_a_foreign_client_is_refused(
    lab: Any,
    node: str,
    k: Kube,
    namespace: str,
    mtls_factory: Callable[..., MtlsOperator],
    tmp_path: Path,
) -> None:
    mtls_factory(namespace)
    make_issuer(k, namespace, "mesh", stepca_spec(lab.env))
    inject = {
        "acmebridge.io/inject": "true",
        "acmebridge.io/issuer": "mesh",
        "acmebridge.io/dns-names": "{name}.{namespace}.mesh.lab.test",
    }
    apps = group_path("apps", "v1", "deployments", namespace)
    k.create(apps, deployment(namespace, "server", SERVER, annotations=inject))
    ready(k, namespace, "server-deployment-mtls", timeout=120)
    server = running_pod(k, namespace, "server")
    assert mounts(server) == {"app": "/var/run/acmebridge"}
    assert server["spec"]["nodeName"] == node
    server_name = f"server.{namespace}.mesh.lab.test"
    env = {
        "SERVER_ADDR": server["status"]["podIP"],
        "SERVER_NAME": server_name,
        "CERT_DIR": "/var/run/acmebridge",
    }
    k.create(apps, deployment(namespace, "client", CLIENT, annotations=inject, env=env))
    client_name = f"client.{namespace}.mesh.lab.test"
    message = wait_for(
        lambda: reported(k, namespace, "client"),
        timeout=180,
        describe="the client's report",
    )
    # The client verified the server's name against ca.crt; the server verified the client's
    # certificate (CERT_REQUIRED) and answered with the name in it.
    assert message == f"CONNECTED to {server_name}, which said: hello {client_name}", message

    # A Pod that did not opt in, with a certificate for the client's name from another CA.
    cert, key = foreign_client(tmp_path, client_name)
    secret = k.get(core_path("secrets", namespace, "client-deployment-mtls"))
    assert secret is not None
    k.create(
        core_path("secrets", namespace),
        {
            "metadata": {"name": "impostor", "namespace": namespace},
            "data": {
                "tls.crt": base64.b64encode(cert.read_bytes()).decode(),
                "tls.key": base64.b64encode(key.read_bytes()).decode(),
                "ca.crt": secret["data"]["ca.crt"],
            },
        },
    )
    k.create(
        apps,
        deployment(
            namespace,
            "impostor",
            CLIENT,
            env={**env, "CERT_DIR": "/etc/impostor"},
            volumes=[{"name": "tls", "secret": {"secretName": "impostor"}}],
            volume_mounts=[{"name": "tls", "mountPath": "/etc/impostor", "readOnly": True}],
        ),
    )
    refused = wait_for(
        lambda: reported(k, namespace, "impostor"),
        timeout=180,
        describe="the impostor's report",
    )
    # The server's alert: it could not verify the impostor's certificate against its ca.crt.
    assert refused.startswith("FAILED: SSLError") and "alert unknown ca" in refused, refused
