"""Idle cost: thousands of ready Certificates waiting for renewal, and what the operator spends.

The product promise is one wake-up per certificate at its renewal time, no per-object polling,
and near-zero CPU while thousands wait. This measures it: N Certificates (2000 by default) whose
Secrets already hold valid certificates, an operator serving their namespace, all Ready; then the
operator process's CPU time (utime + stime from ``/proc/<pid>/stat``) over a minute of idleness,
its resident memory and thread count, and how many reconciles and API requests it made meanwhile
(from its own metrics).

Why the Secrets are made here instead of issued through Pebble: issuing 2000 certificates over
HTTP-01 would start 2000 solver processes on a 2-core machine, and measure issuance, not waiting.
Each Secret is what the operator itself writes after an issuance: the same ``build_tls_secret``
body, with this Certificate's name label and UID annotation (how the operator knows a Secret is
its own), the issuer annotations, and a 90-day certificate for exactly the Certificate's names,
signed by a CA made for the run (with an Authority Key Identifier, as public CAs issue them). The
operator checks each one as it would any Secret it finds (ownership, key pair, names, key
parameters, issuer), records status and schedules its renewal; from then on the state is the same
as after an issuance. Pebble does not know these certificates, so their renewal info (ARI) is
not found and the plain schedule applies; that costs one request per certificate at start.

The operator runs with its defaults (one Secret check per certificate per hour, spread by UID),
except ``--secret-check-interval`` when given. Run from the repository root with the lab up:
``PYTHONPATH=operator:. .venv/bin/python bench/idle_cpu.py [--count N] [--idle SECONDS]``.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config
from tests.lab import manifests
from tests.lab.labenv import Lab
from tests.lab.operator_proc import OperatorProcess, start_operator

from acmebridge.adapters.kube import Kube, core_path, ours_path
from acmebridge.domain.secret import build_tls_secret

ROOT = Path(__file__).resolve().parents[1]
ISSUER = "idle"
WORKERS = 8


def load_lab() -> Lab:
    env_file = ROOT / ".lab" / "env"
    if not env_file.exists():
        sys.exit("the lab is not up: run `make lab-up` first")
    return Lab.from_env_file(env_file)


def kube(lab: Lab) -> Kube:
    api = client.ApiClient(config.new_client_from_config(lab.env["KUBECONFIG"]).configuration)
    # One connection per worker thread; urllib3's default pool of 4 would serialise them.
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = WORKERS
    return Kube(api)


class BenchCA:
    """A CA for this run: signs 90-day leaves with an Authority Key Identifier."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acmebridge idle bench CA")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, dns_name: str) -> tuple[bytes, bytes]:
        """(chain PEM, PKCS#8 key PEM) for ``dns_name``, valid for 90 days from now."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC).replace(microsecond=0)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        chain = leaf.public_bytes(pem) + self.cert.public_bytes(pem)
        key_pem = key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return chain, key_pem


def issuer_body(lab: Lab, namespace: str) -> dict[str, Any]:
    acme = manifests.pebble_acme(lab.env, privateKeySecretRef={"name": "idle-account"})
    return manifests.issuer(namespace, ISSUER, acme)


def cert_body(namespace: str, name: str) -> dict[str, Any]:
    return manifests.certificate(
        namespace, name, issuerRef={"name": ISSUER}, dnsNames=[f"{name}.idle.lab.test"]
    )


def is_ready(obj: dict[str, Any] | None) -> bool:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def in_parallel(fn: Callable[[int], None], count: int) -> None:
    with ThreadPoolExecutor(WORKERS) as pool:
        for _ in pool.map(fn, range(count)):
            pass


def wait(what: str, done: Callable[[], int], total: int, timeout: float) -> float:
    started = time.monotonic()
    while (have := done()) < total:
        if time.monotonic() - started > timeout:
            sys.exit(f"only {have}/{total} {what} within {timeout:.0f}s")
        time.sleep(2)
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    return "?"


def metric_sum(op: OperatorProcess, name: str, label: str = "") -> float:
    total = 0.0
    for line in op.metrics().splitlines():
        if line.startswith(f"{name}{{") and re.search(label, line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=2000, help="ready certificates waiting")
    p.add_argument("--idle", type=float, default=60, help="seconds of idleness measured")
    p.add_argument(
        "--secret-check-interval",
        type=float,
        default=None,
        help="the operator's Secret re-read interval in seconds (default: its own, 3600)",
    )
    p.add_argument("--keep", action="store_true", help="leave the namespace for inspection")
    args = p.parse_args()
    lab = load_lab()
    k = kube(lab)
    namespace = f"acmebridge-idle-{secrets.token_hex(3)}"
    k.create(core_path("namespaces", None), {"metadata": {"name": namespace}})
    names = [f"c{i:05d}" for i in range(args.count)]
    op: OperatorProcess | None = None
    print(f"idle benchmark: {args.count} ready Certificates in namespace {namespace}")
    try:
        k.create(ours_path("issuers", namespace), issuer_body(lab, namespace))
        uids: dict[str, str] = {}

        def create_certificate(i: int) -> None:
            made = k.create(ours_path("certificates", namespace), cert_body(namespace, names[i]))
            uids[names[i]] = made["metadata"]["uid"]

        ca = BenchCA()

        def create_secret(i: int) -> None:
            name = names[i]
            chain, key = ca.issue(f"{name}.idle.lab.test")
            body = build_tls_secret(
                name=f"{name}-tls",
                namespace=namespace,
                certificate_name=name,
                certificate_uid=uids[name],
                issuer_name=ISSUER,
                issuer_kind="Issuer",
                chain_pem=chain,
                key_pem=key,
                ca_pem=ca.cert.public_bytes(serialization.Encoding.PEM),
            )
            k.create(core_path("secrets", namespace), body)

        t0 = time.monotonic()
        in_parallel(create_certificate, args.count)
        in_parallel(create_secret, args.count)
        print(
            f"  created {args.count} Certificates and their Secrets "
            f"in {time.monotonic() - t0:.0f} s"
        )

        extra = [f"--namespace={namespace}"]
        if args.secret_check_interval is not None:
            extra.append(f"--secret-check-interval={args.secret_check_interval}")
        op = start_operator(lab.env, name="idle-operator", extra=extra)
        pid = op.proc.pid

        def ready_count() -> int:
            items = k.list(ours_path("certificates", namespace))
            return sum(1 for c in items if is_ready(c))

        cpu0 = cpu_seconds(pid)
        took = wait("Certificates Ready", ready_count, args.count, timeout=1800)
        cpu_settle = cpu_seconds(pid) - cpu0
        print(
            f"  operator started; all Ready after {took:.0f} s, "
            f"{cpu_settle:.1f} CPU s ({cpu_settle / args.count * 1000:.1f} ms per certificate)"
        )
        # Let the last status writes and their watch events pass before measuring.
        time.sleep(10)

        reconciles0 = metric_sum(op, "acmebridge_controller_reconcile_total")
        requests0 = metric_sum(op, "acmebridge_kube_api_requests_total")
        acme0 = metric_sum(op, "acmebridge_acme_requests_total")
        cpu_a, wall_a = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        cpu_b, wall_b = cpu_seconds(pid), time.monotonic()
        cpu = cpu_b - cpu_a
        minutes = (wall_b - wall_a) / 60
        reconciles = metric_sum(op, "acmebridge_controller_reconcile_total") - reconciles0
        kube_requests = metric_sum(op, "acmebridge_kube_api_requests_total") - requests0
        acme_requests = metric_sum(op, "acmebridge_acme_requests_total") - acme0
        print(f"  idle for {wall_b - wall_a:.0f} s with {args.count} certificates waiting:")
        print(
            f"    CPU {cpu / minutes:.2f} s per minute "
            f"({cpu / (wall_b - wall_a) * 100:.2f} % of one core)"
        )
        print(
            f"    RSS {proc_status(pid, 'VmRSS')}, threads {proc_status(pid, 'Threads')}; "
            f"reconciles {reconciles:.0f}, Kubernetes requests {kube_requests:.0f}, "
            f"ACME requests {acme_requests:.0f}"
        )
        if reconciles:
            print(f"    {cpu / reconciles * 1000:.1f} ms CPU per reconcile (a Secret check)")
    finally:
        if op is not None:
            op.stop()
            print(f"  operator log: {op.log_path}")
        if not args.keep:
            k.delete(core_path("namespaces", None, namespace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
