"""What the lab is made of: where its files live, its ports, and each process's command line.

Nothing here starts or stops anything (labctl does); this module only describes. Standard library
only, so that `labctl down` runs without the venv.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.lab import labprobes, labproc
from tests.lab.labprobes import Probe

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
INGRESS_CLASS = "lab"
INGRESS_CONTROLLER = "acmebridge.io/lab-ingress"
PEBBLE_ACME_PORT = 14000
PEBBLE_MGMT_PORT = 15000
CHALLTESTSRV_MGMT_PORT = 8055
DNS_PORT = 8053
# BIND (tests/lab/labbind.py): the DNS-01 zones, and the resolver Pebble and step-ca ask.
BIND_PORT = 8054
HTTP01_PORT = 5002
TLSALPN01_PORT = 5001
# Pebble's validity for its one profile: 90 days, like Let's Encrypt's classic profile.
PEBBLE_VALIDITY_SECONDS = 90 * 24 * 3600

# Ports the ACME side expects at fixed places; what fails when each is taken by someone else.
FIXED_PORTS: Mapping[int, str] = {
    PEBBLE_ACME_PORT: "Pebble's ACME API",
    PEBBLE_MGMT_PORT: "Pebble's management API",
    CHALLTESTSRV_MGMT_PORT: "pebble-challtestsrv's management API",
    DNS_PORT: "pebble-challtestsrv's DNS server",
    HTTP01_PORT: "the ingress stand-in (where Pebble validates HTTP-01)",
}

# The binaries the lab runs from .lab/bin (hack/build-lab-bin.sh builds them, and kubectl).
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "pebble", "pebble-challtestsrv")

# The controllers that make namespaces, ownerReferences, Services and ServiceAccounts behave as
# in a cluster (names as kube-controller-manager v1.36 `--help` lists them). The root CA
# publisher fills kube-root-ca.crt, which every projected ServiceAccount token volume references;
# clusterrole aggregation fills the admin/edit/view roles that RBAC tests bind to. The workload
# controllers make Deployments, StatefulSets and DaemonSets create real Pod objects, which the
# API server sends through admission webhooks (workload mTLS injection).
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)

# Proxies make no sense on loopback, and some Go clients would send validation traffic to them.
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True)
class Layout:
    """Where everything lives: binaries, state, certificates and logs under ``<repo>/.lab``."""

    repo: Path

    @property
    def lab(self) -> Path:
        return self.repo / ".lab"

    @property
    def bin(self) -> Path:
        return self.lab / "bin"

    @property
    def run(self) -> Path:
        """Pidfiles."""
        return self.lab / "run"

    @property
    def logs(self) -> Path:
        return self.lab / "logs"

    @property
    def pki(self) -> Path:
        return self.lab / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.lab / "etcd"

    @property
    def apiserver_dir(self) -> Path:
        return self.lab / "kube-apiserver"

    @property
    def kcm_dir(self) -> Path:
        return self.lab / "kube-controller-manager"

    @property
    def pebble(self) -> Path:
        return self.lab / "pebble"

    @property
    def node_agent(self) -> Path:
        return self.lab / "node-agent"

    @property
    def kubeconfig(self) -> Path:
        return self.lab / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.lab / "env"

    @property
    def state_file(self) -> Path:
        return self.lab / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.lab / ".lock"

    @property
    def venv_bin(self) -> Path:
        return self.repo / ".venv" / "bin"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def runtime_entries(self) -> list[Path]:
        """What `down` removes: all but the binaries, the lock and the last run's logs."""
        kept = {self.bin, self.logs, self.lock_file}
        return [p for p in self.lab.iterdir() if p not in kept] if self.lab.exists() else []


@dataclass(frozen=True)
class Ports:
    """The ports picked at start for the cluster side (the ACME side uses FIXED_PORTS)."""

    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int

    @classmethod
    def pick(cls) -> Ports:
        picked: set[int] = set()
        while len(picked) < 4:
            picked.add(labproc.free_port())
        return cls(*picked)

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Component:
    """One lab process: how to start it and how to tell it is ready (None) or why not (str)."""

    name: str
    argv: tuple[str, ...]
    probe: Probe
    timeout: float
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None


# --- components -----------------------------------------------------------------------------


def child_env(layout: Layout, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every lab process: no proxies, and the marker `down` looks for."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env[labproc.MARKER_ENV] = str(layout.lab)
    env.update(extra or {})
    return env


def etcd(layout: Layout, ports: Ports) -> Component:
    client = f"http://127.0.0.1:{ports.etcd}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return Component(
        name="etcd",
        argv=(
            str(layout.bin / "etcd"),
            "--name=lab",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lab={peer}",
            # Test data: losing it in a power cut is fine, waiting for the disk is not.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ),
        probe=labprobes.expect_ok(f"{client}/health"),
        timeout=30,
    )


def kube_apiserver(layout: Layout, ports: Ports) -> Component:
    pki = layout.pki
    return Component(
        name="kube-apiserver",
        argv=(
            str(layout.bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{ports.etcd}",
            "--bind-address=127.0.0.1",
            # Without it the API server advertises the host's first non-loopback address.
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={layout.apiserver_dir}",
            f"--tls-cert-file={pki / 'apiserver.pem'}",
            f"--tls-private-key-file={pki / 'apiserver-key.pem'}",
            f"--client-ca-file={pki / 'client-ca.pem'}",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--allow-privileged=true",
            # For `kubectl logs` and `exec` on the real node (make node-up): the kubelet
            # authenticates the API server by this client certificate.
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.pem'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client-key.pem'}",
            # The kubelet's address (10.244.1.1, --node-ip), not its name: `lab-kubelet`
            # resolves nowhere, and the default order tries the Hostname first.
            "--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP",
            # The `kubernetes` Service's endpoint would be 127.0.0.1, which Endpoints validation
            # refuses (loopback); nothing in the lab reaches the API server through that Service.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ),
        probe=labprobes.expect_ok(
            f"https://127.0.0.1:{ports.apiserver}/readyz",
            ca=pki / "cluster-ca.pem",
            client=(pki / "admin.pem", pki / "admin-key.pem"),
        ),
        timeout=120,
    )


def kube_controller_manager(layout: Layout, ports: Ports) -> Component:
    return Component(
        name="kube-controller-manager",
        argv=(
            str(layout.bin / "kube-controller-manager"),
            # No --authentication/--authorization-kubeconfig: with them it looks up the
            # front-proxy CA this API server does not have, and logs that every second. Its
            # /healthz stays reachable (always-allowed).
            f"--kubeconfig={layout.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.controller_manager}",
            f"--cert-dir={layout.kcm_dir}",
            "--leader-elect=false",
            f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={layout.pki / 'sa.key'}",
            f"--root-ca-file={layout.pki / 'cluster-ca.pem'}",
            "--profiling=false",
        ),
        # A self-signed serving certificate: nothing to verify against, and it is loopback.
        probe=labprobes.expect_ok(
            f"https://127.0.0.1:{ports.controller_manager}/healthz", verify=False
        ),
        timeout=60,
    )


def challtestsrv(layout: Layout) -> Component:
    return Component(
        name="pebble-challtestsrv",
        argv=(
            str(layout.bin / "pebble-challtestsrv"),
            f"-management=127.0.0.1:{CHALLTESTSRV_MGMT_PORT}",
            f"-dnsserver=127.0.0.1:{DNS_PORT}",
            # Only DNS and its management API: HTTP-01 goes to the ingress stand-in instead.
            "-doh=",
            "-https01=",
            "-tlsalpn01=",
            "-http01=",
            # Pebble asks AAAA first; an empty default makes it fall back to the A answer.
            "-defaultIPv6=",
            "-defaultIPv4=127.0.0.1",
        ),
        probe=labprobes.challtestsrv(management_port=CHALLTESTSRV_MGMT_PORT, dns_port=DNS_PORT),
        timeout=30,
    )


def pebble(layout: Layout) -> Component:
    return Component(
        name="pebble",
        argv=(
            str(layout.bin / "pebble"),
            f"-config={layout.pebble / 'config.json'}",
            # BIND answers the DNS-01 zones and forwards every other name to challtestsrv, so
            # DNS-01 validation asks the lab's real DNS server (tests/lab/labbind.py).
            f"-dnsserver=127.0.0.1:{BIND_PORT}",
        ),
        # No random 0-15 s sleep before validating, and no random bad-nonce rejections: tests
        # that want rejections start their own Pebble.
        env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
        probe=labprobes.acme_directory(
            f"https://127.0.0.1:{PEBBLE_ACME_PORT}/dir", tls_ca=layout.pebble / "tls-ca.pem"
        ),
        timeout=30,
    )


NODE_AGENT = "node-agent"
INGRESS = "ingress"
# The stand-ins' modules, by process name.
STANDIN_MODULES = {
    NODE_AGENT: "tests.lab.standins.node_agent",
    INGRESS: "tests.lab.standins.ingress",
}


def standin_present(name: str) -> bool:
    return importlib.util.find_spec(STANDIN_MODULES[name]) is not None


def standins(layout: Layout) -> list[Component]:
    """The stand-ins whose code exists (a checkout without them still gets a cluster and CA)."""
    return [c for c in (node_agent(layout), ingress(layout)) if standin_present(c.name)]


def _standin(layout: Layout, name: str, args: tuple[str, ...], probe: Probe) -> Component:
    venv_bin = layout.venv_bin
    python = venv_bin / "python"
    # Solver Pods run the `acmebridge` console script, so the venv's bin comes first on PATH.
    env = {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{layout.repo / 'operator'}{os.pathsep}{layout.repo}",
        "PYTHONUNBUFFERED": "1",
        "KUBECONFIG": str(layout.kubeconfig),
    }
    return Component(
        name=name,
        argv=(str(python) if python.exists() else "python3", "-m", STANDIN_MODULES[name], *args),
        env=env,
        cwd=layout.repo,
        probe=probe,
        timeout=30,
    )


def node_agent(layout: Layout) -> Component:
    args = ("--kubeconfig", str(layout.kubeconfig), "--state-dir", str(layout.node_agent))
    return _standin(layout, NODE_AGENT, args, labprobes.none)


def ingress(layout: Layout) -> Component:
    args = ("--kubeconfig", str(layout.kubeconfig), "--listen", f"127.0.0.1:{HTTP01_PORT}")
    return _standin(layout, INGRESS, args, labprobes.listening(HTTP01_PORT))
