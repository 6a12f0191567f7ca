"""The running lab as tests see it: its settings from ``.lab/env``, and its kubectl."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from tests.lab import labfiles


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
