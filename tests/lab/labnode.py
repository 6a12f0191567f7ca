"""The lab's real node: containerd, runc, CNI, a kubelet, kube-proxy and kube-scheduler.

`make node-up` (or `make lab-up NODE=1`) adds one node, `lab-kubelet`, to a running lab without
restarting anything else; `make node-down` (and `make lab-down`) stops it and restores the host.
What it needs from the machine (containerd, runc, CNI plugins, iptables, nftables, conntrack)
comes from Debian's packages (hack/node/packages.sh). Its state lives under ``.lab/node``.

Network: the node's Pods live on the bridge ``acmelab0`` in 10.244.1.0/24 (the node-agent
stand-in reports 10.244.0.0/24, so the two never collide); the host is 10.244.1.1 there. Pods
have routes to their bridge and to the Service range only, and a FORWARD guard drops anything
the bridge would send elsewhere: traffic stays on loopback, the bridge and the Pods' network
namespaces. The lab's servers stay on 127.0.0.1; `labrelay` makes them answer Pods at
10.244.1.1, including the API server behind the `kubernetes` Service (whose EndpointSlice the
node writes, since the API server's own reconciler is off in the lab).

Invariants: `up` returns only when the Node is Ready, kube-proxy and the scheduler answer, and
the sandbox image is loaded; otherwise it stops what it started, restores the host and says
which part failed with the end of its log. `down` stops every node process, then `labhost`
restores what the node changed on the host, and fails naming whatever it could not undo.
Standard library only at import time (`labctl down` runs without the venv).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab import labhost, labparts, labprobes, labproc
from tests.lab.labparts import Component, Layout
from tests.lab.nodenet import BRIDGE, BRIDGE_ADDRESS, BRIDGE_PREFIX_LENGTH, NODE_NAME, POD_CIDR

CGROUP = "acmebridge-lab"
PAUSE_IMAGE = "localhost/acmebridge-lab/pause:1"
NODE_LABEL = "acmebridge.io/lab-node"
# The kubernetes Service's EndpointSlice, written by the node (the lab's API server runs with
# --endpoint-reconciler-type=none because its only address, 127.0.0.1, is not a valid endpoint).
API_SLICE = "kubernetes-lab-node"
SLICE_MANAGER = "acmebridge-lab-node"
FORWARD_GUARD = "ACMEBRIDGE-LAB-FWD"
KUBE_PROXY_HEALTH = 10256
KUBELET_HEALTH = 10248
PROCESSES = ("containerd", "labrelay", "kubelet", "kube-proxy", "kube-scheduler")
# Executables the node needs from the machine, and the package each comes from.
HOST_TOOLS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "nft": "nftables",
    "conntrack": "conntrack",
}
CNI_BIN = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "pause")


class NodeError(Exception):
    """The node could not be brought to the requested state; the message says why."""


@dataclass(frozen=True)
class NodeLayout:
    """Where the node keeps its files, under ``.lab/node``."""

    lab: Layout

    @property
    def root(self) -> Path:
        return self.lab.lab / "node"

    def __getattr__(self, name: str) -> Path:
        folders = {
            "run": "run",
            "logs": "logs",
            "pki": "pki",
            "containerd": "containerd",
            "cni_conf": "cni/net.d",
            "cni_ipam": "cni/ipam",
            "kubelet": "kubelet",
            "kubelet_pki": "kubelet-pki",
            "pod_logs": "pod-logs",
            "images": "images",
        }
        if name in folders:
            return self.root / folders[name]
        raise AttributeError(name)

    @property
    def socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def host_record(self) -> Path:
        return self.root / "host-before.json"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def _say(message: str) -> None:
    print(message, flush=True)


# --- checks ---------------------------------------------------------------------------------


def missing_host_tools() -> list[str]:
    """The Debian packages whose executables are missing (hack/node/packages.sh installs them)."""
    packages = {pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None}
    if not all((CNI_BIN / plugin).exists() for plugin in CNI_PLUGINS):
        packages.add("containernetworking-plugins")
    return sorted(packages)


def _check_host(node: NodeLayout) -> None:
    if os.geteuid() != 0:
        raise NodeError("the node needs root (network namespaces, iptables, mounts, cgroups)")
    packages = missing_host_tools()
    if packages:
        raise NodeError(
            f"missing Debian packages: {', '.join(packages)}; `make node-up` installs them "
            "(hack/node/packages.sh node)"
        )
    missing = [name for name in NODE_BINARIES if not (node.lab.bin / name).is_file()]
    if missing:
        raise NodeError(f"{', '.join(missing)} missing from {node.lab.bin}: run `make lab-bin`")
    if (
        not Path("/sys/fs/cgroup/memory").is_dir()
        and not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        raise NodeError("no cgroup hierarchy with a memory controller under /sys/fs/cgroup")
    taken = [
        f"127.0.0.1:{port}"
        for port in (KUBE_PROXY_HEALTH, KUBELET_HEALTH)
        if labproc.port_in_use(port)
    ]
    if taken:
        raise NodeError(f"ports taken by a process that is not this node: {', '.join(taken)}")
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        raise NodeError(
            f"the interface {BRIDGE} exists but no node runs: a node of another checkout? "
            "(`make node-down` there)"
        )


# --- status ---------------------------------------------------------------------------------


def running(node: NodeLayout) -> dict[str, labproc.Proc]:
    return {p.name: p for p in labproc.recorded(node.run) if p.alive()}


def health(node: NodeLayout) -> str | None:
    """None when a complete node runs and answers; otherwise what is wrong."""
    if not node.state_file.exists():
        return "not running"
    procs = running(node)
    for name in PROCESSES:
        if name not in procs:
            return f"{name} is not running"
    return (
        _node_ready(node) or labprobes.expect_ok(f"http://127.0.0.1:{KUBE_PROXY_HEALTH}/healthz")()
    )


def _kubectl(layout: Layout, *args: str, stdin: str | None = None, check: bool = True) -> str:
    argv = [str(layout.bin / "kubectl"), f"--kubeconfig={layout.kubeconfig}", *args]
    result = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=labparts.child_env(layout),
    )
    if check and result.returncode != 0:
        raise NodeError(f"kubectl {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result.stdout


def _node_ready(node: NodeLayout) -> str | None:
    out = _kubectl(node.lab, "get", "node", NODE_NAME, "-o", "json", check=False)
    if not out:
        return f"Node {NODE_NAME} is not registered"
    conditions = {c["type"]: c for c in json.loads(out).get("status", {}).get("conditions", [])}
    ready = conditions.get("Ready", {})
    if ready.get("status") != "True":
        return f"Node {NODE_NAME} is not Ready: {ready.get('message', 'no Ready condition')}"
    return None


# --- up -------------------------------------------------------------------------------------


def up(layout: Layout, *, apiserver_port: int) -> None:
    """Makes sure the node runs and is Ready; reuses a healthy one."""
    node = NodeLayout(layout)
    began = time.monotonic()
    problem = health(node)
    if problem is None:
        _say(f"node: {NODE_NAME} already running and Ready, reusing it")
        return
    if problem != "not running" or running(node):
        _say(f"node: partly up ({problem}): stopping it and starting afresh")
        down(layout)
    _check_host(node)
    try:
        _start(node, apiserver_port, began)
    except BaseException:
        _say(f"node: start failed, stopping what did start (logs stay in {node.logs})")
        down(layout, quiet=True)
        raise


def _start(node: NodeLayout, apiserver_port: int, began: float) -> None:
    for folder in (
        node.run,
        node.logs,
        node.pki,
        node.containerd,
        node.cni_conf,
        node.cni_ipam,
        node.kubelet,
        node.kubelet_pki,
        node.pod_logs,
        node.images,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    labhost.record(node.host_record)
    _make_bridge()
    _make_cgroups()
    _write_pki(node)
    _write_configs(node)
    _say(
        f"node: host prepared, bridge {BRIDGE} {BRIDGE_ADDRESS}/{BRIDGE_PREFIX_LENGTH} "
        f"({time.monotonic() - began:.1f}s)"
    )
    _launch(node, [_relay(node, apiserver_port), _containerd(node)])
    _load_image(node, _pause_archive(node))
    _publish_api_endpoint(node.lab, apiserver_port)
    _yield_node_agent(node.lab)
    _launch(node, [_kubelet(node), _kube_proxy(node), _kube_scheduler(node)])
    _untaint(node.lab)
    state = {"node": NODE_NAME, "bridge": BRIDGE, "pod_cidr": POD_CIDR, "started_at": time.time()}
    node.state_file.write_text(json.dumps(state, indent=2) + "\n")
    _say(f"node: {NODE_NAME} Ready in {time.monotonic() - began:.1f}s")


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


def _iptables(*args: str) -> None:
    result = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"iptables {' '.join(args)} failed: {result.stderr.strip()}")


def _make_bridge() -> None:
    """The bridge with the host's address, forwarding on it alone, and the guard that keeps
    the Pods' traffic on it (the CNI bridge plugin adds the Pods' veths to it)."""
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{BRIDGE_ADDRESS}/{BRIDGE_PREFIX_LENGTH}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    # Per interface, not net.ipv4.ip_forward: a Pod's packet to a Service address comes back
    # out of the bridge after kube-proxy's DNAT; nothing else on the host starts forwarding.
    Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding").write_text("1\n")
    _iptables("-N", FORWARD_GUARD)
    _iptables("-A", FORWARD_GUARD, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")
    _iptables("-A", FORWARD_GUARD, "!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP")
    _iptables("-I", "FORWARD", "1", "-j", FORWARD_GUARD)


def _make_cgroups() -> None:
    """The kubelet's --cgroup-root, in every hierarchy (v1 cpuset needs its cpus and mems)."""
    root = Path("/sys/fs/cgroup")
    for hierarchy in sorted(root.iterdir()):
        if not hierarchy.is_dir() or not (hierarchy / "cgroup.procs").exists():
            continue
        folder = hierarchy / CGROUP
        folder.mkdir(exist_ok=True)
        for setting in ("cpuset.cpus", "cpuset.mems"):
            if (folder / setting).exists() and not (folder / setting).read_text().strip():
                (folder / setting).write_text((hierarchy / setting).read_text())


def _write_pki(node: NodeLayout) -> None:
    """The kubelet's and kube-proxy's client certificates, from the lab's client CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from tests.lab import labpki

    pki = node.lab.pki
    ca = labpki.KeyPair(
        cert=x509.load_pem_x509_certificate((pki / "client-ca.pem").read_bytes()),
        key=load_pem_private_key((pki / "client-ca-key.pem").read_bytes(), None),  # type: ignore[arg-type]
    )
    identities = {
        "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
        "kube-proxy": ("system:kube-proxy", None),
    }
    for name, (cn, org) in identities.items():
        pair = labpki.issue(ca, cn, organization=org, client=True)
        pair.write(node.pki / f"{name}.pem", node.pki / f"{name}-key.pem")
        _write_kubeconfig(node, name)


def _write_kubeconfig(node: NodeLayout, name: str) -> None:
    admin = json.loads(node.lab.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate": str(node.pki / f"{name}.pem"),
                    "client-key": str(node.pki / f"{name}-key.pem"),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": "lab", "user": name}}],
        "current-context": name,
    }
    path = node.pki / f"{name}.kubeconfig"
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


def _write_configs(node: NodeLayout) -> None:
    c = node.containerd
    (c / "config.toml").write_text(f"""\
# containerd 1.6 for the lab's node (tests/lab/labnode.py writes it).
version = 2
root = "{c / "root"}"
state = "{c / "state"}"
# Plugins that would keep state outside .lab/node or that the node does not use.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{node.socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # The VM gives root no CAP_SYS_RESOURCE: an OOM score below containerd's own is refused.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{node.cni_conf}"
""")
    conflist = {
        "cniVersion": "1.0.0",
        "name": "acmebridge-lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                # The bridge and its address exist already (_make_bridge); with isGateway the
                # plugin would turn on net.ipv4.ip_forward for the whole host.
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": BRIDGE_ADDRESS}]],
                    # No default route: a Pod reaches its bridge and the Service range only.
                    "routes": [{"dst": labparts.SERVICE_CIDR, "gw": BRIDGE_ADDRESS}],
                    "dataDir": str(node.cni_ipam),
                },
            }
        ],
    }
    (node.cni_conf / "10-acmebridge-lab.conflist").write_text(json.dumps(conflist, indent=2))
    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": BRIDGE_ADDRESS,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTH,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(node.lab.pki / "client-ca.pem")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        # A cgroup v1 host: kubelet 1.35+ refuses v1 unless told, and uses cgroupfs there.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP}",
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "clusterDNS": [BRIDGE_ADDRESS],
        "clusterDomain": "cluster.local",
        "resolvConf": "",
        "podLogsDir": str(node.pod_logs),
        "podCIDR": POD_CIDR,
        "maxPods": 64,
        # The images come from `make image`, not a registry: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "protectKernelDefaults": False,
    }
    (node.kubelet_pki / "config.json").write_text(json.dumps(kubelet, indent=2))
    proxy = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(node.pki / "kube-proxy.kubeconfig")},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": BRIDGE_ADDRESS,
        "healthzBindAddress": f"127.0.0.1:{KUBE_PROXY_HEALTH}",
        "metricsBindAddress": "127.0.0.1:10249",
        # Zero: leave the host's conntrack sysctls as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # No NodePorts on 127.0.0.1 (that needs route_localnet) or on the host's other addresses.
        "iptables": {"localhostNodePorts": False},
        "nodePortAddresses": [f"{BRIDGE_ADDRESS}/32"],
    }
    (node.pki / "kube-proxy-config.json").write_text(json.dumps(proxy, indent=2))


# --- components -----------------------------------------------------------------------------


def _component(name: str, argv: Sequence[str], probe: labprobes.Probe, timeout: float) -> Component:
    return Component(name=name, argv=tuple(argv), probe=probe, timeout=timeout)


def _relay(node: NodeLayout, apiserver_port: int) -> Component:
    ports = [
        f"443:{apiserver_port}",
        str(apiserver_port),
        *(
            str(p)
            for p in (labparts.PEBBLE_ACME_PORT, labparts.PEBBLE_MGMT_PORT, labparts.HTTP01_PORT)
        ),
        *(str(p) for p in _stepca_ports()),
    ]
    python = node.lab.venv_bin / "python"
    argv = [
        str(python) if python.exists() else "python3",
        "-m",
        "tests.lab.labrelay",
        "--listen",
        BRIDGE_ADDRESS,
        "--dns",
        str(labparts.DNS_PORT),
    ]
    for port in ports:
        argv += ["--tcp", port]

    def probe() -> str | None:
        import socket

        try:
            with socket.create_connection((BRIDGE_ADDRESS, apiserver_port), timeout=0.5):
                return None
        except OSError as error:
            return f"nothing answers on {BRIDGE_ADDRESS}:{apiserver_port}: {error}"

    return _component("labrelay", argv, probe, 20)


def _stepca_ports() -> list[int]:
    from tests.lab import labstepca

    return [labstepca.STEPCA_PORT, labstepca.AIA_PORT]


def _containerd(node: NodeLayout) -> Component:
    def probe() -> str | None:
        result = subprocess.run(
            ["ctr", "--address", str(node.socket), "version"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return None if result.returncode == 0 else f"ctr version: {result.stderr.strip()}"

    argv = ["containerd", "--config", str(node.containerd / "config.toml")]
    return _component("containerd", argv, probe, 30)


def _kubelet(node: NodeLayout) -> Component:
    argv = [
        str(node.lab.bin / "kubelet"),
        f"--config={node.kubelet_pki / 'config.json'}",
        f"--kubeconfig={node.pki / 'kubelet.kubeconfig'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={BRIDGE_ADDRESS}",
        f"--node-labels={NODE_LABEL}=kubelet",
        f"--root-dir={node.kubelet}",
        f"--cert-dir={node.kubelet_pki}",
        "--v=1",
    ]
    return _component("kubelet", argv, lambda: _node_ready(node), 90)


def _kube_proxy(node: NodeLayout) -> Component:
    argv = [str(node.lab.bin / "kube-proxy"), f"--config={node.pki / 'kube-proxy-config.json'}"]
    probe = labprobes.expect_ok(f"http://127.0.0.1:{KUBE_PROXY_HEALTH}/healthz")
    return _component("kube-proxy", argv, probe, 60)


def _kube_scheduler(node: NodeLayout) -> Component:
    port = labproc.free_port()
    argv = [
        str(node.lab.bin / "kube-scheduler"),
        f"--kubeconfig={node.lab.kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
    ]
    probe = labprobes.expect_ok(f"https://127.0.0.1:{port}/healthz", verify=False)
    return _component("kube-scheduler", argv, probe, 60)


def _launch(node: NodeLayout, stage: Sequence[Component]) -> None:
    pending: dict[str, tuple[Component, labproc.Proc, float]] = {}
    for component in stage:
        proc = labproc.start(
            component.name,
            component.argv,
            run_dir=node.run,
            log_dir=node.logs,
            env=labparts.child_env(node.lab, {"PYTHONPATH": f"{node.lab.repo}"}),
            cwd=node.lab.repo,
        )
        pending[component.name] = (component, proc, time.monotonic())
    while pending:
        for name, (component, proc, started) in list(pending.items()):
            elapsed = time.monotonic() - started
            if not proc.alive():
                raise NodeError(_failure(node, name, "exited during start-up"))
            why = component.probe()
            if why is None:
                _say(f"   {name:<24} ready in {elapsed:5.1f}s (pid {proc.pid})")
                del pending[name]
            elif elapsed > component.timeout:
                raise NodeError(
                    _failure(node, name, f"not ready after {component.timeout:.0f}s: {why}")
                )
        time.sleep(0.2)


def _failure(node: NodeLayout, name: str, what: str) -> str:
    log = node.log(name)
    return f"{name} {what}\n  last lines of {log}:\n{labproc.log_tail(log)}"


# --- images ---------------------------------------------------------------------------------


def _pause_archive(node: NodeLayout) -> Path:
    """The sandbox image, from the lab's pause binary (kept next to it, rebuilt when it changes)."""
    archive = node.lab.bin / "pause-image.tar"
    binary = node.lab.bin / "pause"
    if archive.exists() and archive.stat().st_mtime >= binary.stat().st_mtime:
        return archive
    rootfs = node.images / "pause-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.mkdir(parents=True)
    shutil.copy2(binary, rootfs / "pause")
    for folder in ("proc", "sys", "dev", "etc"):
        (rootfs / folder).mkdir()
    _run_checked(
        [
            "python3",
            str(node.lab.repo / "hack" / "image" / "oci.py"),
            "--rootfs",
            str(rootfs),
            "--name",
            PAUSE_IMAGE,
            "--out",
            str(archive),
            "--entrypoint",
            '["/pause"]',
            "--user",
            "65535:65535",
        ],
        "writing the pause image",
    )
    shutil.rmtree(rootfs, ignore_errors=True)
    return archive


def _run_checked(argv: Sequence[str], what: str) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise NodeError(f"{what} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _load_image(node: NodeLayout, archive: Path) -> None:
    load_image(node.socket, archive)


def load_image(socket: Path, archive: Path) -> str:
    """Imports an OCI archive into the node's containerd, where the kubelet finds it."""
    result = subprocess.run(
        ["ctr", "--address", str(socket), "-n", "k8s.io", "images", "import", str(archive)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise NodeError(f"containerd could not load {archive}: {result.stderr.strip()}")
    return result.stdout


# --- cluster objects ------------------------------------------------------------------------


def _publish_api_endpoint(layout: Layout, apiserver_port: int) -> None:
    """The `kubernetes` Service's endpoint: the relay at the bridge address (in-cluster config)."""
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": API_SLICE,
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [BRIDGE_ADDRESS], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": apiserver_port, "protocol": "TCP"}],
    }
    _kubectl(
        layout,
        "apply",
        "--server-side",
        "--field-manager=acmebridge-lab-node",
        "-f",
        "-",
        stdin=json.dumps(endpoint_slice),
    )


def _untaint(layout: Layout) -> None:
    """What the node-lifecycle controller does once a new Node is Ready (the lab runs none):
    the kubelet registers its Node with this taint, and the scheduler honours it."""
    _kubectl(
        layout, "taint", "node", NODE_NAME, "node.kubernetes.io/not-ready:NoSchedule-", check=False
    )


def _yield_node_agent(layout: Layout) -> None:
    """The node-agent stand-in's Node becomes unschedulable: the scheduler places Pods here."""
    agent = "lab-node"
    if _kubectl(layout, "get", "node", agent, "-o", "name", check=False):
        _kubectl(
            layout,
            "patch",
            "node",
            agent,
            "--type=merge",
            "-p",
            '{"spec": {"unschedulable": true}}',
        )


# --- down -----------------------------------------------------------------------------------


def down(layout: Layout, *, quiet: bool = False) -> int:
    """Stops the node's processes and restores the host; the number of processes stopped."""
    node = NodeLayout(layout)
    if not node.root.exists():
        if not quiet:
            _say("node: not running")
        return 0
    began = time.monotonic()
    procs = running(node)
    stopped = len(procs)
    # The scheduler first (no new Pods land here), the kubelet and kube-proxy next, then the
    # runtime; what is left in the node's cgroups (containers) is killed by labhost.restore.
    for name in ("kube-scheduler", "kubelet", "kube-proxy", "labrelay"):
        if name in procs:
            labproc.terminate([procs[name].pid], grace=5)
    if "containerd" in procs:
        labproc.terminate([procs["containerd"].pid], grace=5)
    shims = [pid for pid in labproc.marked_pids(layout.lab) if _is_node_process(pid)]
    labproc.terminate(shims, grace=2)
    _cleanup_kube_proxy(node)
    _remove_cluster_objects(layout)
    problems = labhost.restore(node.host_record, node_dir=node.root, cgroup=CGROUP)
    if problems:
        raise NodeError("the host is not fully restored:\n  " + "\n  ".join(problems))
    logs = node.logs
    keep = layout.logs / "node"
    if logs.exists():
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(logs, keep)
    shutil.rmtree(node.root, ignore_errors=True)
    if not quiet:
        _say(
            f"node: stopped ({stopped} processes) and the host restored in "
            f"{time.monotonic() - began:.1f}s (logs in {keep})"
        )
    return stopped


def _is_node_process(pid: int) -> bool:
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return name.startswith(("containerd", "runc", "kubelet", "kube-proxy", "pause"))


def _cleanup_kube_proxy(node: NodeLayout) -> None:
    binary = node.lab.bin / "kube-proxy"
    if binary.exists():
        subprocess.run([str(binary), "--cleanup"], capture_output=True, timeout=60, check=False)


def _remove_cluster_objects(layout: Layout) -> None:
    """The Node and the API endpoint; skipped when the API server is already gone."""
    if not layout.kubeconfig.exists():
        return
    for args in (
        ("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false"),
        ("-n", "default", "delete", "endpointslice", API_SLICE, "--ignore-not-found"),
    ):
        try:
            _kubectl(layout, *args, check=False)
        except (subprocess.TimeoutExpired, OSError):
            return


def status(layout: Layout, say: Callable[[str], None] = _say) -> int:
    node = NodeLayout(layout)
    procs = running(node)
    if not node.root.exists():
        say("node: not running")
        return 3
    for name in PROCESSES:
        proc = procs.get(name)
        pid, state = (proc.pid, "running") if proc else ("-", "not running")
        say(f"   {name:<24} pid {pid!s:<8} {state}")
    problem = health(node)
    say(f"node: {NODE_NAME} running and Ready" if problem is None else f"node: {problem}")
    return 0 if problem is None else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.lab.labnode load-image ARCHIVE``, which `make image` runs."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="labnode")
    parser.add_argument("command", choices=("load-image",))
    parser.add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    node = NodeLayout(Layout(Path(__file__).resolve().parents[2]))
    if health(node) is not None:
        print("node: not running, nothing to load the image into", file=sys.stderr)
        return 1
    began = time.monotonic()
    try:
        out = load_image(node.socket, args.archive)
    except NodeError as error:
        print(f"node: error: {error}", file=sys.stderr)
        return 1
    _say(
        f"node: loaded {args.archive.name} into {NODE_NAME}'s containerd in "
        f"{time.monotonic() - began:.1f}s: {out.strip()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
