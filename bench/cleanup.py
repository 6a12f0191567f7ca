"""Removing what a benchmark run made: its namespace, with the operator still running.

A Certificate deleted in the middle of a DNS-01 issuance keeps the operator's finalizer
(``acmebridge.io/dns01-cleanup``) until the operator has removed its TXT values from DNS, so the
namespace is deleted while the operator still serves it. When the operator cannot finish within
the bound (seen after the ACME server stopped answering in a scale run: the Certificates stayed
with the finalizer and the namespace stayed Terminating), the benchmark finishes the job for its
own Certificates: it deletes the TXT record sets at ``_acme-challenge.<name>`` of their names in
the lab's BIND (names only the benchmark uses), then removes the finalizer.
"""

from __future__ import annotations

import time

import dns.name
import dns.query
import dns.tsigkeyring
import dns.update

from acmebridge.adapters.kube import core_path, ours_path
from bench.labio import BenchKube
from bench.lego import Rfc2136, tsig_algorithm

FINALIZER = "acmebridge.io/dns01-cleanup"
BATCH = 100


def delete_txt(dns_settings: Rfc2136, names: list[str]) -> None:
    """Delete the TXT RRsets of ``_acme-challenge.<name>`` for names in the lab's zone."""
    zone = dns.name.from_text(dns_settings.zone)
    algorithm = tsig_algorithm(dns_settings.tsig_algorithm)[0]
    keyring = dns.tsigkeyring.from_text(
        {dns_settings.tsig_name: (algorithm, dns_settings.tsig_secret)}
    )
    host, _, port = dns_settings.nameserver.rpartition(":")
    ours = [n for n in names if dns.name.from_text(n).is_subdomain(zone)]
    for i in range(0, len(ours), BATCH):
        update = dns.update.UpdateMessage(zone, keyring=keyring, keyname=dns_settings.tsig_name)
        for name in ours[i : i + BATCH]:
            update.delete(f"_acme-challenge.{name.rstrip('.')}.", "TXT")
        dns.query.tcp(update, host, port=int(port), timeout=10)


def release(bench: BenchKube, namespace: str, dns_settings: Rfc2136 | None) -> int:
    """Finish the operator's DNS-01 clean-up for the namespace's Certificates; how many."""
    stuck = [
        c
        for c in bench.list(ours_path("certificates", namespace))
        if FINALIZER in (c["metadata"].get("finalizers") or [])
    ]
    if dns_settings is not None:
        names = [n for c in stuck for n in (c.get("spec") or {}).get("dnsNames") or []]
        delete_txt(dns_settings, names)
    for c in stuck:
        left = [f for f in c["metadata"]["finalizers"] if f != FINALIZER]
        bench.kube.merge_patch(
            ours_path("certificates", namespace, c["metadata"]["name"]),
            {"metadata": {"finalizers": left or None}},
        )
    return len(stuck)


def delete_namespace(
    bench: BenchKube, namespace: str, dns_settings: Rfc2136 | None, *, timeout: float = 300
) -> str:
    """Delete the namespace and wait until it is gone; what happened, in a sentence."""
    path = core_path("namespaces", None, namespace)
    bench.kube.delete(path)
    if _gone(bench, path, timeout):
        return f"namespace {namespace} deleted"
    released = release(bench, namespace, dns_settings)
    if _gone(bench, path, timeout):
        return (
            f"namespace {namespace} deleted after the benchmark finished the DNS-01 clean-up "
            f"of {released} Certificate(s) the operator had not finished"
        )
    return f"namespace {namespace} is still being deleted after {2 * timeout:.0f} s"


def _gone(bench: BenchKube, path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while bench.kube.get(path) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(2)
    return True
