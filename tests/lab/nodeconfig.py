"""The real node's configuration files: identities, containerd, CNI, kubelet and kube-proxy.

`write_all` writes them under ``.lab/node`` before anything starts; each writer says why its
settings differ from a cluster's defaults (most because of this VM: cgroup v1, no
CAP_SYS_RESOURCE, a shared host whose sysctls and ports must stay as they are). Standard library
only at import time; the client certificates need `cryptography`, imported when written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.lab import labparts
from tests.lab.nodelayout import (
    CGROUP,
    CNI_BIN,
    KUBE_PROXY_HEALTH,
    KUBELET_HEALTH,
    KUBELET_PORT,
    PAUSE_IMAGE,
    NodeLayout,
)
from tests.lab.nodenet import BRIDGE, BRIDGE_ADDRESS, NODE_NAME, POD_CIDR


def write_all(node: NodeLayout) -> None:
    write_identities(node)
    (node.containerd / "config.toml").write_text(containerd_config(node))
    write_json(node.cni_conf / "10-acmebridge-lab.conflist", cni_config(node))
    write_json(node.kubelet_pki / "config.json", kubelet_config(node))
    write_json(node.pki / "kube-proxy-config.json", kube_proxy_config(node))


def write_json(path: Path, config: dict[str, Any]) -> None:
    path.write_text(json.dumps(config, indent=2) + "\n")


def write_identities(node: NodeLayout) -> None:
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
        write_kubeconfig(node, name)


def write_kubeconfig(node: NodeLayout, name: str) -> None:
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
    write_json(path, config)
    path.chmod(0o600)


def containerd_config(node: NodeLayout) -> str:
    c = node.containerd
    return f"""\
# containerd 1.6 for the lab's node (tests/lab/nodeconfig.py writes it).
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
"""


def cni_config(node: NodeLayout) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "acmebridge-lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                # The bridge and its address exist already (nodehost.make_bridge); with
                # isGateway the plugin would turn on net.ipv4.ip_forward for the whole host.
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


def kubelet_config(node: NodeLayout) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": BRIDGE_ADDRESS,
        "port": KUBELET_PORT,
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


def kube_proxy_config(node: NodeLayout) -> dict[str, Any]:
    return {
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
