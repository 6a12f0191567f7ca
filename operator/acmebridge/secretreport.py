"""What ``acmebridge inspect secret`` shows and checks, computed without IO.

Pure: :func:`inspect_tls_secret` takes a Secret and its Certificate as the API server returns them
and ``now``, and returns the fields to show and the checks with their verdicts; ``cli`` reads and
prints. Key material never reaches the output: a private key is described only by its type and
the SHA-256 of its public key.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from acmebridge.domain import chain as chains
from acmebridge.domain import secret as secrets
from acmebridge.domain.errors import SpecError
from acmebridge.domain.keys import load_private_key, public_key_fingerprint, public_key_parameters
from acmebridge.domain.match import CertSummary, cert_summary, spec_mismatch
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.timefmt import format_time, parse_time


@dataclass(frozen=True)
class Check:
    """One verdict of ``inspect secret``; any failed check makes the command exit 1."""

    what: str
    ok: bool
    detail: str


@dataclass
class InspectReport:
    fields: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, label: str, value: str) -> None:
        self.fields.append((label, value))

    def check(self, what: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(what, ok, detail))

    def text(self) -> str:
        width = max((len(label) for label, _ in self.fields), default=0) + 1
        out = [f"{(label + ':').ljust(width)} {value}" for label, value in self.fields]
        if self.checks:
            out.append("Checks:")
            out += [f"  [{'ok' if c.ok else 'FAIL'}] {c.what}: {c.detail}" for c in self.checks]
        return "\n".join(out)


def relative(delta: timedelta) -> str:
    """``3d 4h`` style: the two largest units of a non-negative duration."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def _validity(cert: x509.Certificate, now: datetime) -> tuple[str, bool]:
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < not_before:
        return f"not valid yet: valid from {format_time(not_before)}", False
    if now >= not_after:
        return f"expired {relative(now - not_after)} ago", False
    return f"valid, expires in {relative(not_after - now)}", True


def _fingerprint(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    return cert.fingerprint(algorithm).hex(":").upper()


def _key_text(algorithm: str, size: int) -> str:
    return f"{algorithm} {size}" if size else algorithm


def inspect_tls_secret(
    secret: Mapping[str, Any], certificate: Mapping[str, Any] | None, *, now: datetime
) -> InspectReport:
    """Decode a TLS Secret and check it: chain order and signatures, key, validity, ``ca.crt``,
    and, when it names one, its Certificate (names, key type, issuer, status)."""
    meta = secret.get("metadata") or {}
    report = InspectReport()
    report.add("Secret", f"{meta.get('namespace')}/{meta.get('name')} ({secret.get('type')})")
    try:
        contents = secrets.tls_secret_contents(secret.get("data"))
    except ValueError as e:
        report.check("data", False, str(e))
        return report
    if not contents.chain_pem:
        report.check("tls.crt", False, "the Secret has no tls.crt")
        return report
    try:
        chain = chains.parse_pem_certificates(contents.chain_pem)
        leaf = chain[0]
        summary = cert_summary(leaf)
    except (ValueError, IndexError) as e:
        report.check("tls.crt", False, f"cannot be parsed: {e}")
        return report
    _describe_leaf(report, leaf, summary, now)
    _describe_chain(report, chain, contents.ca_pem)
    _check_key(report, leaf, contents.key_pem)
    _check_certificate(report, secret, certificate, summary)
    return report


def _describe_leaf(
    report: InspectReport, leaf: x509.Certificate, summary: CertSummary, now: datetime
) -> None:
    report.add("Subject", chains.describe(leaf.subject))
    report.add("DNS names", ", ".join(summary.dns_names) or "-")
    report.add("IP addresses", ", ".join(summary.ip_addresses) or "-")
    report.add("URIs", ", ".join(summary.uris) or "-")
    report.add("Emails", ", ".join(summary.email_addresses) or "-")
    report.add("Issuer", chains.describe(leaf.issuer))
    report.add("Serial", summary.serial)
    report.add("Not before", format_time(summary.not_before))
    report.add("Not after", format_time(summary.not_after))
    report.add("Key", _key_text(summary.key_algorithm, summary.key_size))
    report.add("SHA-256", _fingerprint(leaf, hashes.SHA256()))
    report.add("SHA-1", _fingerprint(leaf, hashes.SHA1()))  # what browsers show next to SHA-256
    report.add("Public key SHA-256", summary.public_key_fingerprint)
    text, ok = _validity(leaf, now)
    report.check("validity", ok, text)


def _describe_chain(
    report: InspectReport, chain: Sequence[x509.Certificate], ca_pem: bytes | None
) -> None:
    report.add("Chain", f"{len(chain)} certificate(s) in tls.crt")
    for i, cert in enumerate(chain[1:], start=1):
        report.add(
            f"  [{i}]",
            f"{chains.describe(cert.subject)}, issued by {chains.describe(cert.issuer)}, "
            f"until {format_time(cert.not_valid_after_utc)}",
        )
    broken = [
        i
        for i, (child, parent) in enumerate(itertools.pairwise(chain))
        if not chains.verifies(child, parent)
    ]
    if broken:
        report.check(
            "chain",
            False,
            f"certificate {broken[0] + 1} in tls.crt is not signed by the next one: the chain is "
            "out of order or incomplete",
        )
    else:
        report.check("chain", True, "each certificate in tls.crt is signed by the next one")
    if not ca_pem:
        report.add("ca.crt", "absent")
        return
    try:
        root = chains.parse_pem_certificates(ca_pem)[0]
    except (ValueError, IndexError) as e:
        report.check("ca.crt", False, f"cannot be parsed: {e}")
        return
    report.add("ca.crt", chains.describe(root.subject))
    top = chain[-1]
    signed = top == root or chains.verifies(top, root)
    report.check(
        "ca.crt",
        signed,
        "signed the top of the chain"
        if signed
        else f"did not sign the top of the chain ({chains.describe(top.issuer)})",
    )


def _check_key(report: InspectReport, leaf: x509.Certificate, key_pem: bytes | None) -> None:
    if not key_pem:
        report.check("tls.key", False, "the Secret has no tls.key")
        return
    try:
        key = load_private_key(key_pem)
    except ValueError as e:
        report.check("tls.key", False, str(e))
        return
    algorithm, size = public_key_parameters(key.public_key())
    report.add("tls.key", _key_text(algorithm, size))
    matches = public_key_fingerprint(key) == public_key_fingerprint(leaf)
    report.check(
        "tls.key",
        matches,
        "matches the certificate" if matches else "does NOT match the certificate's public key",
    )


def certificate_name_of(secret: Mapping[str, Any]) -> str | None:
    """The Certificate a Secret was written for: the annotation (full name), else the label."""
    meta = secret.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    name = annotations.get(secrets.CERTIFICATE_NAME_ANNOTATION) or labels.get(
        secrets.CERTIFICATE_NAME_LABEL
    )
    return str(name) if name else None


def _check_certificate(
    report: InspectReport,
    secret: Mapping[str, Any],
    certificate: Mapping[str, Any] | None,
    summary: CertSummary,
) -> None:
    owner = certificate_name_of(secret)
    if owner is None:
        report.add("Certificate", "none (the Secret is not managed by acmebridge)")
        return
    report.add("Certificate", owner)
    if certificate is None:
        report.check("Certificate", False, f"Certificate '{owner}' does not exist")
        return
    try:
        spec = CertificateSpec.from_body(certificate.get("spec") or {})
    except SpecError as e:
        report.check("Certificate", False, f"its spec is invalid: {e.message}")
        return
    mismatch = spec_mismatch(summary, spec)
    report.check("names", mismatch is None, mismatch or "as the Certificate asks")
    want = (spec.private_key.algorithm, spec.private_key.size)
    have = (summary.key_algorithm, summary.key_size)
    key_ok = have[0] == want[0] and (want[0] == "Ed25519" or have[1] == want[1])
    report.check(
        "key type",
        key_ok,
        f"{_key_text(*have)}"
        + ("" if key_ok else f", the Certificate asks for {_key_text(*want)}"),
    )
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    issuer = (
        annotations.get(secrets.ISSUER_KIND_ANNOTATION),
        annotations.get(secrets.ISSUER_NAME_ANNOTATION),
    )
    wanted_issuer = (spec.issuer_ref.kind, spec.issuer_ref.name)
    report.check(
        "issuer",
        issuer == wanted_issuer,
        f"{wanted_issuer[0]}/{wanted_issuer[1]}"
        if issuer == wanted_issuer
        else f"issued by {issuer[0]}/{issuer[1]}, the Certificate names "
        f"{wanted_issuer[0]}/{wanted_issuer[1]}",
    )
    recorded = (certificate.get("status") or {}).get("notAfter")
    if recorded:
        same = _same_time(str(recorded), summary.not_after)
        report.check(
            "status",
            same,
            "the Certificate's status.notAfter is this certificate's"
            if same
            else f"the Certificate's status.notAfter is {recorded}: the operator has not yet "
            "recorded this certificate",
        )


def _same_time(text: str, when: datetime) -> bool:
    try:
        return parse_time(text) == when.replace(microsecond=0)
    except ValueError:
        return False
