"""The lab's generated files: certificates, the admin kubeconfig, Pebble's config, `.lab/env`.

`cryptography` is imported only where certificates are made, so that reading `.lab/env` needs
the standard library alone.
"""

from __future__ import annotations

import base64
import json
import shlex
from pathlib import Path

from tests.lab import labbind, labstepca
from tests.lab.labparts import (
    CHALLTESTSRV_MGMT_PORT,
    DNS_PORT,
    HTTP01_PORT,
    INGRESS_CLASS,
    INGRESS_CONTROLLER,
    PEBBLE_ACME_PORT,
    PEBBLE_MGMT_PORT,
    PEBBLE_VALIDITY_SECONDS,
    TLSALPN01_PORT,
    Layout,
    Ports,
)
from tests.lab.nodenet import BRIDGE_ADDRESS, NODE_NAME


def write_pki(layout: Layout) -> None:
    """The cluster's CAs, serving and client certificates, service-account keys, Pebble's TLS."""
    from tests.lab import labpki

    pki = layout.pki
    pki.mkdir(parents=True, exist_ok=True)
    cluster_ca = labpki.make_ca("acmebridge lab cluster CA")
    cluster_ca.write(pki / "cluster-ca.pem", pki / "cluster-ca-key.pem")
    serving = labpki.issue(
        cluster_ca,
        "kube-apiserver",
        dns_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ip_addresses=("127.0.0.1", "10.0.0.1"),
        server=True,
    )
    serving.write(pki / "apiserver.pem", pki / "apiserver-key.pem")
    client_ca = labpki.make_ca("acmebridge lab client CA")
    client_ca.write(pki / "client-ca.pem", pki / "client-ca-key.pem")
    admin = labpki.issue(client_ca, "lab-admin", organization="system:masters", client=True)
    admin.write(pki / "admin.pem", pki / "admin-key.pem")
    # What the API server shows the real node's kubelet (logs, exec); system:masters, as kubeadm.
    kubelet_client = labpki.issue(
        client_ca, "kube-apiserver-kubelet-client", organization="system:masters", client=True
    )
    kubelet_client.write(
        pki / "apiserver-kubelet-client.pem", pki / "apiserver-kubelet-client-key.pem"
    )
    labpki.write_service_account_keys(pki / "sa.key", pki / "sa.pub")

    layout.pebble.mkdir(parents=True, exist_ok=True)
    pebble_ca = labpki.make_ca("acmebridge lab Pebble TLS CA")
    (layout.pebble / "tls-ca.pem").write_bytes(pebble_ca.cert_pem())
    pebble_tls = labpki.issue(
        pebble_ca,
        "pebble",
        dns_names=("localhost", "pebble"),
        # Pods on the real node reach Pebble at the host's bridge address (make node-up).
        ip_addresses=("127.0.0.1", BRIDGE_ADDRESS),
        server=True,
    )
    pebble_tls.write(layout.pebble / "tls.pem", layout.pebble / "tls-key.pem")


def write_kubeconfig(layout: Layout, ports: Ports) -> None:
    """An admin kubeconfig with the credentials inline, so it can be copied or mounted alone."""

    def b64(name: str) -> str:
        return base64.b64encode((layout.pki / name).read_bytes()).decode()

    # JSON is YAML: kubectl and the Python client read it, and no YAML library is needed here.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lab",
                "cluster": {
                    "server": f"https://127.0.0.1:{ports.apiserver}",
                    "certificate-authority-data": b64("cluster-ca.pem"),
                },
            }
        ],
        "users": [
            {
                "name": "lab-admin",
                "user": {
                    "client-certificate-data": b64("admin.pem"),
                    "client-key-data": b64("admin-key.pem"),
                },
            }
        ],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab-admin"}}],
        "current-context": "lab",
    }
    layout.kubeconfig.write_text(json.dumps(config, indent=2) + "\n")
    layout.kubeconfig.chmod(0o600)


def write_pebble_config(layout: Layout) -> Path:
    """Pebble v2.10.1's config (cmd/pebble/main.go): one profile, so no order gets a random one."""
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{PEBBLE_ACME_PORT}",
            "managementListenAddress": f"127.0.0.1:{PEBBLE_MGMT_PORT}",
            "certificate": str(layout.pebble / "tls.pem"),
            "privateKey": str(layout.pebble / "tls-key.pem"),
            "httpPort": HTTP01_PORT,
            "tlsPort": TLSALPN01_PORT,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            "profiles": {
                "default": {
                    "description": "The lab's only profile (90 days)",
                    "validityPeriod": PEBBLE_VALIDITY_SECONDS,
                }
            },
        }
    }
    path = layout.pebble / "config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def env_values(layout: Layout) -> dict[str, str]:
    """What tests and tools need to reach the lab (written to .lab/env)."""
    return {
        "LAB_DIR": str(layout.lab),
        "KUBECONFIG": str(layout.kubeconfig),
        "LAB_BIN": str(layout.bin),
        "PEBBLE_DIRECTORY_URL": f"https://127.0.0.1:{PEBBLE_ACME_PORT}/dir",
        "PEBBLE_TLS_CA": str(layout.pebble / "tls-ca.pem"),
        "PEBBLE_ROOT": str(layout.pebble / "root.pem"),
        "PEBBLE_MGMT_URL": f"https://127.0.0.1:{PEBBLE_MGMT_PORT}",
        "CHALLTESTSRV_URL": f"http://127.0.0.1:{CHALLTESTSRV_MGMT_PORT}",
        "LAB_DNS_SERVER": f"127.0.0.1:{DNS_PORT}",
        "LAB_HTTP01_PORT": str(HTTP01_PORT),
        "LAB_INGRESS_CLASS": INGRESS_CLASS,
        **labbind.env_values(layout),
        **labstepca.env_values(layout),
        # The real node's name while it runs (make node-up), absent otherwise.
        **({"LAB_NODE": NODE_NAME} if (layout.lab / "node" / "state.json").exists() else {}),
    }


def write_env(layout: Layout) -> None:
    lines = [f"{key}={shlex.quote(value)}" for key, value in env_values(layout).items()]
    # Through a rename, so that a test reading it while `up` rewrites it never sees half a file.
    partial = layout.env_file.with_name(f".{layout.env_file.name}.partial")
    partial.write_text(
        "# Written by `labctl up`; source it in a shell.\n" + "\n".join(lines) + "\n"
    )
    partial.replace(layout.env_file)


def read_env(path: Path) -> dict[str, str]:
    """Parses what write_env wrote (KEY=value, shell-quoted)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, raw = line.partition("=")
            values[key] = shlex.split(raw)[0] if raw else ""
    return values


def ingress_class_manifest() -> str:
    return json.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS},
            "spec": {"controller": INGRESS_CONTROLLER},
        }
    )
