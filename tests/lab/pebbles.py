"""Extra Pebbles for one test each: their own ports, profiles and environment, stoppable.

The lab's Pebble is shared by every test and engineer, so a test that needs certificates valid
for two minutes, random bad-nonce rejections, or a CA that goes away and comes back starts its own
Pebble here. It shares what must be shared: challtestsrv's DNS (every name is 127.0.0.1) and
HTTP-01 port 5002, where the ingress stand-in answers validation requests by the real Ingresses;
and it serves the lab's Pebble TLS certificate, so Issuers trust it with the same caBundle.

Each Pebble leads its own process group, has the lab's marker in its environment (``labctl down``
finds and stops strays), logs to ``.lab/logs/pebble-<name>-<port>.log``, and keeps its pidfile and
config under ``.lab/pebbles/``, never in ``.lab/run`` (which lists the lab's own processes).
``restart()`` stops it and starts it again on the same ports: like every Pebble start, that makes
a new root and intermediate, and forgets every account, order and certificate.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.lab import labparts, labprobes, labproc

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
# What the lab's Pebble runs with (labparts.pebble): no 0-15 s sleep before validating, and no
# random bad-nonce rejections unless a test asks for them.
BASE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}


@dataclass
class ExtraPebble:
    """One Pebble process on free loopback ports, with its own config."""

    name: str
    layout: labparts.Layout
    acme_port: int
    mgmt_port: int
    profiles: Mapping[str, Mapping[str, Any]]
    env: Mapping[str, str] = field(default_factory=dict)
    # Where it resolves names (Pebble's -dnsserver): challtestsrv by default; the lab's BIND
    # (labparts.BIND_PORT) for DNS-01 through the lab's zones, as the lab's own Pebble does.
    dns_server: str = f"127.0.0.1:{labparts.DNS_PORT}"
    #: more of Pebble's config (externalAccountBindingRequired, retryAfter...), merged in
    extra_config: Mapping[str, Any] = field(default_factory=dict)
    proc: labproc.Proc | None = None
    starts: int = 0

    @property
    def home(self) -> Path:
        return self.layout.lab / "pebbles" / f"{self.name}-{self.acme_port}"

    @property
    def log_path(self) -> Path:
        return self.layout.logs / f"pebble-{self.name}-{self.acme_port}.log"

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @property
    def mgmt_url(self) -> str:
        return f"https://127.0.0.1:{self.mgmt_port}"

    @property
    def tls_ca(self) -> Path:
        """The CA of the HTTPS certificate (the lab's Pebble TLS CA, for every Pebble)."""
        return self.layout.pebble / "tls-ca.pem"

    @property
    def root_path(self) -> Path:
        """The root of the current run, fetched at each start."""
        return self.home / "root.pem"

    def config(self) -> dict[str, Any]:
        """Pebble v2.10.1's config (cmd/pebble/main.go), as labfiles writes the lab's."""
        return {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.acme_port}",
                "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
                "certificate": str(self.layout.pebble / "tls.pem"),
                "privateKey": str(self.layout.pebble / "tls-key.pem"),
                # Where Pebble's VA connects for HTTP-01: the lab's ingress stand-in.
                "httpPort": labparts.HTTP01_PORT,
                "tlsPort": labparts.TLSALPN01_PORT,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "profiles": {k: dict(v) for k, v in self.profiles.items()},
                **self.extra_config,
            }
        }

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"Pebble {self.name} is already running")
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "config.json"
        config.write_text(json.dumps(self.config(), indent=2) + "\n")
        argv = (
            str(self.layout.bin / "pebble"),
            f"-config={config}",
            f"-dnsserver={self.dns_server}",
        )
        env = labparts.child_env(self.layout, {**BASE_ENV, **self.env})
        # labproc.start logs to <log_dir>/<name>.log and writes <run_dir>/<name>.pid.
        self.proc = labproc.start(
            self.log_path.stem,
            argv,
            run_dir=self.home,
            log_dir=self.layout.logs,
            env=env,
            cwd=self.home,
        )
        self.starts += 1
        probe = labprobes.acme_directory(self.directory_url, tls_ca=self.tls_ca)
        deadline = time.monotonic() + START_TIMEOUT
        while (problem := probe()) is not None:
            if not self.running():
                raise RuntimeError(f"Pebble {self.name} exited:\n{labproc.log_tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Pebble {self.name} not ready: {problem}\n{labproc.log_tail(self.log_path)}"
                )
            time.sleep(0.1)
        got = labprobes.http_get(f"{self.mgmt_url}/roots/0", ca=self.tls_ca)
        if got is None or got[0] != 200:
            raise RuntimeError(f"Pebble {self.name} did not serve its root: {got}")
        self.root_path.write_bytes(got[1])

    def running(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def stop(self) -> None:
        """Stops this Pebble (only the process this object started)."""
        if self.proc is None:
            return
        left = labproc.terminate([self.proc.pid], grace=5)
        if left:
            raise RuntimeError(f"Pebble {self.name} (pid {self.proc.pid}) did not stop")
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def root_pem(self) -> bytes:
        return self.root_path.read_bytes()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def orders_added(self) -> list[str]:
        """IDs of the orders created since this Pebble's log began, oldest first."""
        return re.findall(r'Added order "([^"]+)" to the db', self.log_text())

    def replacements(self) -> list[tuple[str, str]]:
        """(new order, replaced order) for each newOrder Pebble accepted with ``replaces``."""
        return re.findall(r'ARI: order "([^"]+)" is a replacement of "([^"]+)"', self.log_text())

    def set_renewal_info(
        self, certificate_pem: bytes, *, start: datetime, end: datetime, explanation: str = ""
    ) -> None:
        """Overrides the ARI answer for one certificate (management API ``/set-renewal-info/``:
        a JSON body with ``Certificate``, the PEM, and ``ARIResponse``, the literal answer)."""
        set_renewal_info(self.mgmt_url, self.tls_ca, certificate_pem, start, end, explanation)


def free_ports() -> tuple[int, int]:
    """Two free loopback ports for an extra Pebble (ACME, management), none of the lab's own."""
    ports: set[int] = set()
    while len(ports) < 2:
        port = labproc.free_port()
        if port not in labparts.FIXED_PORTS:
            ports.add(port)
    low, high = sorted(ports)
    return low, high


def set_renewal_info(
    mgmt_url: str,
    tls_ca: Path,
    certificate_pem: bytes,
    start: datetime,
    end: datetime,
    explanation: str = "",
) -> None:
    """``POST /set-renewal-info/`` on any Pebble (v2.10.1, wfe.SetRenewalInfo)."""
    window: dict[str, Any] = {
        "suggestedWindow": {
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }
    if explanation:
        window["explanationURL"] = explanation
    body = {"Certificate": certificate_pem.decode(), "ARIResponse": json.dumps(window)}
    response = requests.post(
        f"{mgmt_url}/set-renewal-info/", json=body, verify=str(tls_ca), timeout=10
    )
    if response.status_code != 200:
        raise AssertionError(
            f"set-renewal-info answered {response.status_code}: {response.text[:500]}"
        )


PebbleFactory = Callable[..., ExtraPebble]


@pytest.fixture
def pebble_factory(lab: Any, request: pytest.FixtureRequest) -> Iterator[PebbleFactory]:
    """Starts extra Pebbles for this test; each is stopped when the test ends.

    ``pebble_factory(validity=120, env={"PEBBLE_WFE_NONCEREJECT": "50"})`` gives one profile
    ``default`` with that validity in seconds; ``profiles=`` replaces the profiles entirely;
    ``dns_server=`` is where it resolves names (challtestsrv unless given); ``config=`` adds to
    Pebble's own config (``externalAccountBindingRequired``, ``retryAfter``...).
    """
    layout = labparts.Layout(Path(lab.env.get("LAB_DIR", str(ROOT / ".lab"))).parent)
    started: list[ExtraPebble] = []

    def start(
        *,
        validity: int = 90 * 24 * 3600,
        profiles: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        dns_server: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> ExtraPebble:
        acme_port, mgmt_port = free_ports()
        pebble = ExtraPebble(
            name=name or re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-"),
            layout=layout,
            acme_port=acme_port,
            mgmt_port=mgmt_port,
            profiles=profiles
            or {"default": {"description": f"{validity} seconds", "validityPeriod": validity}},
            env=dict(env or {}),
            dns_server=dns_server or f"127.0.0.1:{labparts.DNS_PORT}",
            extra_config=dict(config or {}),
        )
        started.append(pebble)
        pebble.start()
        return pebble

    yield start
    for pebble in started:
        pebble.stop()
        # The config, root and pidfile; the log stays in .lab/logs.
        shutil.rmtree(pebble.home, ignore_errors=True)
        print(f"pebble log: {pebble.log_path}")
