"""lego, the in-run yardstick: the same N single-name certificates from the same Pebble, with a
fixed number of lego processes at once (10 by default), over HTTP-01 or DNS-01 (RFC 2136).

lego is built with the lab's binaries (``.lab/bin/lego``, pinned in ``hack/lego``). Each of the
slots is one lego process at a time, with its own account (registered by its first run and
reused after, as one host's lego would), taking the next name from a shared queue.

- **HTTP-01**: Pebble validates on port 5002 at the address pebble-challtestsrv gives for the
  name; 127.0.0.1:5002 is the lab's ingress stand-in, so slot ``i`` listens on 127.0.3.<i+1>:5002
  and, just before its run, points the name there with challtestsrv's ``/add-a``. lego logs
  "Served key authentication" for each validation request it answers: their count is the proof
  that Pebble connected to lego and not to the ingress stand-in.
- **DNS-01**: lego's ``rfc2136`` provider updates the lab's BIND, TSIG-signed, and checks
  propagation at BIND itself (``--dns.propagation-disable-ans``: the lab's zone names an NS host
  nothing resolves), polling every 2 s, its default.

lego waits 5 s before it first polls an authorization when the server sends no Retry-After
(``challenge/resolver/solver_manager.go``), as Pebble does not; that is lego as users run it.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.labenv import Lab

from bench.labio import WORK, Challtestsrv
from bench.stats import Burst

SERVED = "Served key authentication"
LOOPBACK_PREFIX = "127.0.3."


@dataclass(frozen=True)
class Rfc2136:
    """Where and how to send RFC 2136 updates: the lab's BIND settings."""

    nameserver: str
    zone: str
    tsig_name: str
    tsig_secret: str
    tsig_algorithm: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Rfc2136 | None:
        """From ``.lab/env``'s BIND_* entries; None while the lab has no BIND."""
        keys = ("BIND_ADDR", "BIND_ZONE", "BIND_TSIG_NAME", "BIND_TSIG_SECRET")
        if not all(env.get(k) for k in keys):
            return None
        return cls(
            nameserver=env["BIND_ADDR"],
            zone=env["BIND_ZONE"].rstrip("."),
            tsig_name=env["BIND_TSIG_NAME"],
            tsig_secret=env["BIND_TSIG_SECRET"],
            tsig_algorithm=env.get("BIND_TSIG_ALGORITHM") or "hmac-sha256",
        )


def tsig_algorithm(name: str) -> tuple[str, str]:
    """A TSIG algorithm as lego (miekg/dns: ``hmac-sha256.``) and as an Issuer
    (cert-manager's ``HMACSHA256``) name it, from either spelling or BIND's (``hmac-sha256``)."""
    bare = name.lower().rstrip(".").replace("-", "")
    if not bare.startswith("hmac") or bare[4:] not in ("md5", "sha1", "sha256", "sha512"):
        raise ValueError(f"unknown TSIG algorithm {name!r}")
    return f"hmac-{bare[4:]}.", bare.upper()


@dataclass
class LegoRun:
    burst: Burst
    #: utime + stime of every lego process, and the largest resident set of one
    cpu_seconds: float = 0.0
    max_rss_mib: float = 0.0
    #: HTTP-01 validation requests lego's own listeners answered
    served: int = 0
    errors: list[str] = field(default_factory=list)


def lego_args(
    lab: Lab,
    *,
    server: str,
    name: str,
    path: Path,
    email: str,
    challenge: str,
    listen: str | None = None,
    dns: Rfc2136 | None = None,
) -> list[str]:
    args = [
        str(lab.bin / "lego"),
        "--server",
        server,
        "--accept-tos",
        "--email",
        email,
        "--path",
        str(path),
        "--domains",
        name,
        "--key-type",
        "ec256",
    ]
    if challenge == "http-01":
        args += ["--http", "--http.port", f"{listen}:{lab.http01_port}"]
    else:
        assert dns is not None
        # The lab's zone has no resolvable NS host: check propagation at BIND, the zone's
        # only server, instead of at "all authoritative servers".
        args += [
            "--dns",
            "rfc2136",
            "--dns.resolvers",
            dns.nameserver,
            "--dns.propagation-disable-ans",
        ]
    return [*args, "run"]


def lego_env(lab: Lab, dns: Rfc2136 | None) -> dict[str, str]:
    env = {**os.environ, "LEGO_CA_CERTIFICATES": str(lab.pebble_tls_ca)}
    if dns is not None:
        env.update(
            DNSUPDATE_NAMESERVER=dns.nameserver,
            DNSUPDATE_TSIG_KEY=dns.tsig_name,
            DNSUPDATE_TSIG_SECRET=dns.tsig_secret,
            DNSUPDATE_TSIG_ALGORITHM=tsig_algorithm(dns.tsig_algorithm)[0],
            DNSUPDATE_ZONES=dns.zone,
        )
    return env


def run_lego_burst(
    lab: Lab,
    names: list[str],
    challenge: str,
    *,
    server: str,
    slots: int = 10,
    dns: Rfc2136 | None = None,
    timeout: float = 1800,
    keep: bool = False,
) -> LegoRun:
    """All ``names`` through ``slots`` lego processes at once; times since the burst's start."""
    work = WORK / "lego" / f"{challenge}-{int(time.time())}"
    work.mkdir(parents=True, exist_ok=True)
    dnsctl = Challtestsrv(lab)
    env = lego_env(lab, dns)
    todo: queue.Queue[str] = queue.Queue()
    for n in names:
        todo.put(n)
    run = LegoRun(Burst("lego", challenge, asked=dict.fromkeys(names, 0.0), ready={}))
    lock = threading.Lock()
    deadline = time.monotonic() + timeout
    started = time.monotonic()

    def worker(slot: int) -> None:
        listen = f"{LOOPBACK_PREFIX}{slot + 1}"
        path = work / f"slot-{slot}"
        while time.monotonic() < deadline:
            try:
                name = todo.get_nowait()
            except queue.Empty:
                return
            if challenge == "http-01":
                dnsctl.add_a(name, listen)
            log = work / f"{name}.log"
            args = lego_args(
                lab,
                server=server,
                name=name,
                path=path,
                email=f"bench-slot-{slot}@lab.test",
                challenge=challenge,
                listen=listen,
                dns=dns,
            )
            with open(log, "wb") as out:
                proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            done = time.monotonic() - started
            text = log.read_text(errors="replace")
            cert = path / "certificates" / f"{name}.crt"
            with lock:
                run.cpu_seconds += usage.ru_utime + usage.ru_stime
                run.max_rss_mib = max(run.max_rss_mib, usage.ru_maxrss / 1024)
                run.served += text.count(SERVED)
                if proc.returncode == 0 and cert.exists():
                    run.burst.ready[name] = done
                else:
                    tail = text.strip().splitlines()[-1:] or ["(no output)"]
                    run.errors.append(f"{name}: exit {proc.returncode}: {tail[0]}")
            if challenge == "http-01":
                dnsctl.clear_a(name)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(slots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return run
