"""What the lab is made of: its files, ports, configuration, command lines and readiness probes.

Nothing here starts or stops anything (labctl does); this module only describes. It imports only
the standard library at load time so that `labctl down` runs without the venv; `cryptography` and
`dnspython` are imported where the lab is built or probed.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shlex
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.lab import labproc

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
INGRESS_CLASS = "lab"
INGRESS_CONTROLLER = "acmebridge.io/lab-ingress"
PEBBLE_ACME_PORT = 14000
PEBBLE_MGMT_PORT = 15000
CHALLTESTSRV_MGMT_PORT = 8055
DNS_PORT = 8053
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

# The controllers that make namespaces, ownerReferences, Services and ServiceAccounts behave as
# in a cluster (names as kube-controller-manager v1.36 `--help` lists them). The root CA
# publisher fills kube-root-ca.crt, which every projected ServiceAccount token volume references;
# clusterrole aggregation fills the admin/edit/view roles that RBAC tests bind to.
CONTROLLERS = (
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


Probe = Callable[[], str | None]


@dataclass(frozen=True)
class Component:
    """One lab process: how to start it and how to tell it is ready (None) or why not (str)."""

    name: str
    argv: tuple[str, ...]
    probe: Probe
    timeout: float
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None


# --- probes ---------------------------------------------------------------------------------


def http_get(
    url: str,
    *,
    ca: Path | None = None,
    client: tuple[Path, Path] | None = None,
    verify: bool = True,
    timeout: float = 2.0,
) -> tuple[int, bytes] | None:
    """(status, body), or None when nothing answered. Never uses a proxy."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if url.startswith("https:"):
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if client:
            ctx.load_cert_chain(str(client[0]), str(client[1]))
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ssl.SSLError):
        return None


def expect_ok(url: str, **kwargs: object) -> Probe:
    def probe() -> str | None:
        got = http_get(url, **kwargs)  # type: ignore[arg-type]
        if got is None:
            return f"{url} does not answer"
        return None if got[0] == 200 else f"{url} answered {got[0]}: {got[1][:200]!r}"

    return probe


def dns_probe() -> str | None:
    """challtestsrv answers every A query with 127.0.0.1 (its -defaultIPv4)."""
    import dns.exception
    import dns.message
    import dns.query

    query = dns.message.make_query("lab-probe.test.", "A")
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=DNS_PORT, timeout=1)
    except (dns.exception.DNSException, OSError) as exc:
        return f"DNS on 127.0.0.1:{DNS_PORT} does not answer: {exc}"
    addresses = [rr.address for rrset in reply.answer for rr in rrset]
    return None if addresses == ["127.0.0.1"] else f"DNS answered {addresses}, not [127.0.0.1]"


def challtestsrv_probe() -> str | None:
    # The management API has no health path; any HTTP answer (404 included) means it serves.
    if http_get(f"http://127.0.0.1:{CHALLTESTSRV_MGMT_PORT}/") is None:
        return f"management API on 127.0.0.1:{CHALLTESTSRV_MGMT_PORT} does not answer"
    return dns_probe()


def pebble_probe(tls_ca: Path) -> Probe:
    url = f"https://127.0.0.1:{PEBBLE_ACME_PORT}/dir"

    def probe() -> str | None:
        got = http_get(url, ca=tls_ca)
        if got is None:
            return f"{url} does not answer over TLS with {tls_ca.name}"
        if got[0] != 200 or b"newOrder" not in got[1]:
            return f"{url} answered {got[0]}: {got[1][:200]!r}"
        return None

    return probe


def listening_probe(port: int) -> Probe:
    def probe() -> str | None:
        return None if labproc.accepts_tcp(port) else f"nothing listens on 127.0.0.1:{port}"

    return probe


def no_probe() -> str | None:
    """For a process with no endpoint: ready as long as it runs (labctl checks that)."""
    return None


# --- files ----------------------------------------------------------------------------------


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
    labpki.write_service_account_keys(pki / "sa.key", pki / "sa.pub")

    layout.pebble.mkdir(parents=True, exist_ok=True)
    pebble_ca = labpki.make_ca("acmebridge lab Pebble TLS CA")
    (layout.pebble / "tls-ca.pem").write_bytes(pebble_ca.cert_pem())
    pebble_tls = labpki.issue(
        pebble_ca, "pebble", dns_names=("localhost", "pebble"), ip_addresses=("127.0.0.1",), server=True
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
    }


def write_env(layout: Layout) -> None:
    lines = [f"{key}={shlex.quote(value)}" for key, value in env_values(layout).items()]
    layout.env_file.write_text("# Written by `labctl up`; source it in a shell.\n" + "\n".join(lines) + "\n")


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
        probe=expect_ok(f"{client}/health"),
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
            # The `kubernetes` Service's endpoint would be 127.0.0.1, which Endpoints validation
            # refuses (loopback); nothing in the lab reaches the API server through that Service.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ),
        probe=expect_ok(
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
        probe=expect_ok(f"https://127.0.0.1:{ports.controller_manager}/healthz", verify=False),
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
        probe=challtestsrv_probe,
        timeout=30,
    )


def pebble(layout: Layout) -> Component:
    return Component(
        name="pebble",
        argv=(
            str(layout.bin / "pebble"),
            f"-config={layout.pebble / 'config.json'}",
            f"-dnsserver=127.0.0.1:{DNS_PORT}",
        ),
        # No random 0-15 s sleep before validating, and no random bad-nonce rejections: tests
        # that want rejections start their own Pebble.
        env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
        probe=pebble_probe(layout.pebble / "tls-ca.pem"),
        timeout=30,
    )


def standin_present(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _standin(layout: Layout, name: str, module: str, args: tuple[str, ...], probe: Probe) -> (
    Component
):
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
        argv=(str(python) if python.exists() else "python3", "-m", module, *args),
        env=env,
        cwd=layout.repo,
        probe=probe,
        timeout=30,
    )


NODE_AGENT_MODULE = "tests.lab.standins.node_agent"
INGRESS_MODULE = "tests.lab.standins.ingress"


def node_agent(layout: Layout) -> Component:
    args = ("--kubeconfig", str(layout.kubeconfig), "--state-dir", str(layout.node_agent))
    return _standin(layout, "node-agent", NODE_AGENT_MODULE, args, no_probe)


def ingress(layout: Layout) -> Component:
    args = ("--kubeconfig", str(layout.kubeconfig), "--listen", f"127.0.0.1:{HTTP01_PORT}")
    return _standin(layout, "ingress", INGRESS_MODULE, args, listening_probe(HTTP01_PORT))
