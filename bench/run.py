"""``make bench``: what an issuance costs through acmebridge, against the raw ACME floor.

Run against the lab (it must be up). Figures printed:

- **raw ACME floor**: the same ACME server, the same library, DNS-01 answered directly at
  pebble-challtestsrv, no Kubernetes at all: seconds per certificate, issued one after another.
- **acmebridge, one certificate**: apply -> Ready, HTTP-01 through a solver Pod, Service and
  Ingress, the self check, the Secret written.
- **acmebridge, a burst**: N Certificates applied at once: wall time until all are Ready,
  certificates per second, and the p50/p95 apply -> Ready latency.
- **API writes per issuance**: kube-apiserver's own write counters (POST, PUT, PATCH, DELETE)
  over the burst, minus the benchmark's own creates, divided by N.
- **operator CPU and memory**: CPU seconds the operator used for the burst, and its RSS after.
- **ratios**: one certificate through acmebridge / the raw floor; burst throughput / the floor's.

Then the idle benchmark (``bench/idle_cpu.py``) when present: thousands of certificates waiting,
CPU per minute of idleness. Timings vary from run to run on a shared machine; the counts do not.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config
from tests.lab import manifests
from tests.lab.labenv import Lab
from tests.lab.operator_proc import (
    CLUSTER_RESOURCE_NAMESPACE,
    OperatorProcess,
    start_operator,
)

from acmebridge.adapters.acme_client import AcmeSession, generate_account_key, key_authorization
from acmebridge.adapters.acme_messages import AccountRef
from acmebridge.adapters.kube import Conflict, Kube, core_path, ours_path

ROOT = Path(__file__).resolve().parents[1]
NS = "acmebridge-bench"


def load_lab() -> Lab:
    env_file = ROOT / ".lab" / "env"
    if not env_file.exists():
        sys.exit("the lab is not up: run `make lab-up` first")
    return Lab.from_env_file(env_file)


def raw_floor(lab: Lab, count: int) -> float:
    """Seconds per certificate for the ACME exchange alone (DNS-01 at challtestsrv)."""
    ca = Path(lab.env["PEBBLE_TLS_CA"]).read_bytes()
    session = AcmeSession(lab.env["PEBBLE_DIRECTORY_URL"], ca_bundle=ca)
    key_pem = generate_account_key()
    info = session.register_account(key_pem, email=None)
    account = AccountRef(uri=info.uri, key_pem=key_pem)
    profile = next(iter(session.directory().profiles), None)
    mgmt = lab.env["CHALLTESTSRV_URL"]
    started = time.perf_counter()
    for i in range(count):
        name = f"raw{i}.bench.lab.test"
        order = session.new_order(account, identifiers=[("dns", name)], profile=profile)
        for url in order.authorizations:
            authz = session.get_authorization(account, url)
            if authz.status == "valid":
                continue
            ch = next(c for c in authz.challenges if c.type == "dns-01")
            host = f"_acme-challenge.{name}."
            value = key_authorization(account, ch)
            requests.post(f"{mgmt}/set-txt", json={"host": host, "value": value}, timeout=5)
            session.answer_challenge(account, ch.url)
            while session.get_authorization(account, url).status == "pending":
                time.sleep(0.05)
            requests.post(f"{mgmt}/clear-txt", json={"host": host}, timeout=5)
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        order = session.get_order(account, order.url)
        order = session.finalize(account, order, csr)
        while order.status != "valid":
            time.sleep(0.05)
            order = session.get_order(account, order.url)
        assert order.certificate
        session.download_chains(account, order.certificate)
    session.close()
    return (time.perf_counter() - started) / count


def apiserver_writes(k: Kube) -> int:
    method, url, headers, _, _ = k.api.param_serialize(
        "GET", "/metrics", auth_settings=["BearerToken"]
    )
    text = k.api.call_api(method, url, header_params=headers).read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and re.search(
            r'verb="(POST|PUT|PATCH|DELETE)"', line
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def operator_writes(op: OperatorProcess) -> int:
    """The operator's own write requests to the API server, from its metrics."""
    total = 0
    for line in op.metrics().splitlines():
        if line.startswith("acmebridge_kube_api_requests_total{") and re.search(
            r'method="(POST|PUT|PATCH|DELETE)"', line
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def proc_cpu_rss(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    rss_pages = int(fields[21])
    return ticks / os.sysconf("SC_CLK_TCK"), rss_pages * os.sysconf("SC_PAGE_SIZE")


def ready_at(cert: dict[str, Any]) -> bool:
    for c in (cert.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def issuer_body(lab: Lab) -> dict[str, Any]:
    acme = manifests.pebble_acme(lab.env, privateKeySecretRef={"name": "bench-account"})
    return manifests.issuer(NS, "bench", acme)


def cert_body(name: str) -> dict[str, Any]:
    return manifests.certificate(
        NS, name, issuerRef={"name": "bench"}, dnsNames=[f"{name}.bench.lab.test"]
    )


def wait_all(
    k: Kube, names: list[str], started: dict[str, float], timeout: float
) -> dict[str, float]:
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(names):
        if time.monotonic() > deadline:
            sys.exit(f"only {len(done)}/{len(names)} certificates became Ready in {timeout:.0f}s")
        for cert in k.list(ours_path("certificates", NS)):
            n = cert["metadata"]["name"]
            if n in started and n not in done and ready_at(cert):
                done[n] = time.monotonic() - started[n]
        time.sleep(0.1)
    return done


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--burst", type=int, default=30, help="certificates applied at once")
    p.add_argument("--floor", type=int, default=10, help="certificates for the raw ACME floor")
    p.add_argument("--skip-idle", action="store_true", help="skip the idle-CPU benchmark")
    args = p.parse_args()
    lab = load_lab()
    k = Kube(client.ApiClient(config.new_client_from_config(lab.env["KUBECONFIG"]).configuration))

    print(f"raw ACME floor: {args.floor} certificates through Pebble, DNS-01, no Kubernetes")
    floor = raw_floor(lab, args.floor)
    print(f"  {floor:.3f} s per certificate\n")

    for ns in (NS, CLUSTER_RESOURCE_NAMESPACE):
        with contextlib.suppress(Conflict):
            k.create(core_path("namespaces", None), {"metadata": {"name": ns}})
    op = start_operator(lab.env, name="bench-operator", extra=[f"--namespace={NS}"])
    try:
        k.create(ours_path("issuers", NS), issuer_body(lab))
        while not ready_at(k.get(ours_path("issuers", NS, "bench")) or {}):
            time.sleep(0.1)

        run = int(time.time())
        one = f"one-{run}"
        t0 = {one: time.monotonic()}
        k.create(ours_path("certificates", NS), cert_body(one))
        single = wait_all(k, [one], t0, 120)[one]
        print(f"acmebridge, one certificate: apply -> Ready {single:.2f} s")

        names = [f"burst-{run}-{i}" for i in range(args.burst)]
        writes_before = apiserver_writes(k)
        own_before = operator_writes(op)
        cpu_before, _ = proc_cpu_rss(op.proc.pid)
        wall0 = time.monotonic()
        started: dict[str, float] = {}
        for n in names:
            started[n] = time.monotonic()
            k.create(ours_path("certificates", NS), cert_body(n))
        latencies = wait_all(k, names, started, 600)
        wall = time.monotonic() - wall0
        time.sleep(2)  # let cleanup of the last solver objects land in the counters
        writes = apiserver_writes(k) - writes_before - len(names)
        own = operator_writes(op) - own_before
        cpu_after, rss = proc_cpu_rss(op.proc.pid)
        lat = sorted(latencies.values())
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        print(
            f"acmebridge, a burst of {args.burst}: all Ready in {wall:.1f} s "
            f"({args.burst / wall:.2f} certificates/s)"
        )
        print(f"  apply -> Ready p50 {statistics.median(lat):.2f} s, p95 {p95:.2f} s")
        print(
            f"  API writes per issuance: {own / args.burst:.1f} by the operator "
            f"(status, Events, Secrets, solver objects); {writes / args.burst:.1f} in all, "
            "with the controller manager's and the stand-ins'"
        )
        print(
            f"  operator CPU for the burst: {cpu_after - cpu_before:.2f} s "
            f"({(cpu_after - cpu_before) / args.burst * 1000:.0f} ms per certificate); "
            f"RSS {rss / 2**20:.0f} MiB"
        )
        print("\nratios")
        print(f"  one certificate via acmebridge / raw ACME floor: {single / floor:.1f}x")
        print(f"  burst throughput / raw floor throughput: {(args.burst / wall) * floor:.2f}x")
    finally:
        op.stop()
        k.delete(core_path("namespaces", None, NS))

    idle = ROOT / "bench" / "idle_cpu.py"
    if idle.exists() and not args.skip_idle:
        import runpy

        print()
        sys.argv = [str(idle)]
        runpy.run_path(str(idle), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
