"""The running lab as tests see it: its settings from ``.lab/env``, and its kubectl."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from tests.lab import labfiles
from tests.lab.nodecluster import AGENT_NODE
from tests.lab.nodelayout import NODE_LABEL


@dataclass(frozen=True)
class Lab:
    """Where the lab's servers are. ``env`` holds every ``.lab/env`` entry, for subprocesses."""

    env: Mapping[str, str]
    kubeconfig: Path
    bin: Path
    pebble_directory_url: str
    pebble_tls_ca: Path
    pebble_root: Path
    pebble_mgmt_url: str
    challtestsrv_url: str
    dns_server: str
    http01_port: int
    ingress_class: str

    @classmethod
    def from_env_file(cls, path: Path) -> Lab:
        values = labfiles.read_env(path)
        return cls(
            env=MappingProxyType(values),
            kubeconfig=Path(values["KUBECONFIG"]),
            bin=Path(values["LAB_BIN"]),
            pebble_directory_url=values["PEBBLE_DIRECTORY_URL"],
            pebble_tls_ca=Path(values["PEBBLE_TLS_CA"]),
            pebble_root=Path(values["PEBBLE_ROOT"]),
            pebble_mgmt_url=values["PEBBLE_MGMT_URL"],
            challtestsrv_url=values["CHALLTESTSRV_URL"],
            dns_server=values["LAB_DNS_SERVER"],
            http01_port=int(values["LAB_HTTP01_PORT"]),
            ingress_class=values["LAB_INGRESS_CLASS"],
        )

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Runs the lab's kubectl as the admin and returns its stdout.

        With ``check`` a non-zero exit fails with kubectl's stderr in the message.
        """
        result = subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **self.env},
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr.strip()}")
        return result.stdout

    def real_node_ready(self) -> bool:
        """True while the lab's real node (`make node-up`) is Ready: its scheduler then places
        every Pod, and the node-agent stand-in binds none (it still runs Pods bound to it)."""
        out = self.kubectl("get", "nodes", "-l", f"{NODE_LABEL}=kubelet", "-o", "json")
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for node in json.loads(out)["items"]
            for c in node.get("status", {}).get("conditions") or []
        )

    def node_agent_placement(self) -> dict[str, str]:
        """Pod spec fields for a test Pod that the node-agent stand-in must run: none while it
        binds Pods itself, its Node's name while the real node is up (whose scheduler would put
        the Pod on the real node, where a process stand-in's command has no image to run in)."""
        return {"nodeName": AGENT_NODE} if self.real_node_ready() else {}
