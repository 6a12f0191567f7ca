"""Scale without issuance: N Certificates whose Secrets already hold valid certificates.

The scale run's memory and idle figures (RSS with 5,000 Ready, growth after 20,000 unrelated
objects, idle CPU) do not depend on how the certificates were issued, and the lab's Pebble
v2.10.1 cannot always issue 5,000 at once (it wedged at 1,400 to 4,400 orders in flight in this
benchmark's runs). So ``--scale-adopt`` makes each Certificate's Secret the way the operator
writes it after an issuance (``domain.secret.build_tls_secret``: this Certificate's name label
and UID annotation, a 90-day certificate for exactly its names, signed by a CA made for the run,
as ``bench/idle_cpu.py`` does), starts the operator, and measures how long it takes to check and
adopt them all (each becomes Ready after its Secret is read and checked; the CA is asked only
for renewal info), then runs the scale run's steps 2 and 3.
"""

from __future__ import annotations

import time
from typing import Any

from cryptography.hazmat.primitives import serialization

from acmebridge.adapters.kube import core_path, ours_path
from acmebridge.domain.secret import build_tls_secret
from bench.idle_cpu import BenchCA
from bench.labio import BenchKube, proc_figures
from bench.operator_burst import ISSUER, OperatorUnderTest


def prepare(bench: BenchKube, under: OperatorUnderTest, names: dict[str, str]) -> float:
    """Create the Certificates, then their Secrets, before the operator starts; seconds."""
    started = time.monotonic()
    uids: dict[str, str] = {}

    def certificate(name: str) -> None:
        made = bench.kube.create(
            ours_path("certificates", under.namespace), under.certificate(name, names[name])
        )
        uids[name] = made["metadata"]["uid"]

    ca = BenchCA()
    ca_pem = ca.cert.public_bytes(serialization.Encoding.PEM)

    def secret(name: str) -> None:
        chain, key = ca.issue(names[name])
        body = build_tls_secret(
            name=f"{name}-tls",
            namespace=under.namespace,
            certificate_name=name,
            certificate_uid=uids[name],
            issuer_name=ISSUER,
            issuer_kind="Issuer",
            chain_pem=chain,
            key_pem=key,
            ca_pem=ca_pem,
        )
        bench.kube.create(core_path("secrets", under.namespace), body)

    bench.in_parallel(certificate, list(names))
    bench.in_parallel(secret, list(names))
    return time.monotonic() - started


def adopt(
    bench: BenchKube, under: OperatorUnderTest, names: dict[str, str], *, timeout: float
) -> dict[str, Any]:
    """Start the operator on the prepared objects and wait until every Certificate is Ready."""
    assert under.watch is not None
    under.start()
    under.wait_issuer()
    started = time.monotonic()
    cpu0 = proc_figures(under.pid).cpu_seconds
    missing = under.watch.wait_for(set(names), timeout, stall=300)
    seconds = time.monotonic() - started
    time.sleep(10)  # the last status writes and watch events pass
    settled = proc_figures(under.pid)
    n = len(names)
    return {
        "ready": n - len(missing),
        "all_ready_after_seconds": round(seconds, 1),
        "cpu_seconds": round(settled.cpu_seconds - cpu0, 1),
        "cpu_seconds_per_certificate": round((settled.cpu_seconds - cpu0) / n, 4),
        "rss_mib": round(settled.rss_mib, 1),
        "peak_rss_mib": round(settled.peak_rss_mib, 1),
        "threads": settled.threads,
    }
