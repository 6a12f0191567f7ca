"""What ``acmebridge status`` and ``acmebridge inspect secret`` show, computed without IO.

Pure: every function takes plain objects as the API server returns them (Certificate bodies,
Events, a Secret) and ``now``, and returns values or text; ``cli`` does the reading and printing.
Key material never reaches the output: a private key is described only by its type and the
SHA-256 of its public key.
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
from acmebridge.domain.conditions import get_condition
from acmebridge.domain.errors import SpecError
from acmebridge.domain.keys import load_private_key, public_key_fingerprint, public_key_parameters
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.timefmt import format_time, parse_time

#: Warning Events shown per certificate that is not ready, newest last
EVENTS_SHOWN = 3


# -- status -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateRow:
    """One Certificate as ``status`` shows it; ``problems`` is empty exactly when it is ready."""

    namespace: str
    name: str
    ready: str
    reason: str
    secret: str
    issuer: str
    not_after: str
    renewal: str
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "ready": self.ready,
            "reason": self.reason,
            "secretName": self.secret,
            "issuer": self.issuer,
            "notAfter": self.not_after or None,
            "renewalTime": self.renewal or None,
            "problems": list(self.problems),
        }


def events_about(
    obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The Events whose involvedObject is ``obj`` (by UID), oldest first."""
    uid = (obj.get("metadata") or {}).get("uid")
    mine = [dict(e) for e in events if uid and (e.get("involvedObject") or {}).get("uid") == uid]
    mine.sort(key=_event_time)
    return mine


def _event_time(event: Mapping[str, Any]) -> str:
    meta = event.get("metadata") or {}
    return str(
        event.get("lastTimestamp") or event.get("eventTime") or meta.get("creationTimestamp") or ""
    )


def is_ready(cert: Mapping[str, Any]) -> bool:
    """Ready=True, for the Certificate's current generation (an edited spec is not ready yet)."""
    meta = cert.get("metadata") or {}
    ready = get_condition(((cert.get("status") or {}).get("conditions")) or [], "Ready")
    if ready is None or ready.status != "True":
        return False
    generation = meta.get("generation")
    return ready.observed_generation in (None, 0) or generation in (None, ready.observed_generation)


def why_not_ready(cert: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences explaining a Certificate that is not ready, most telling first.

    The Ready and Issuing conditions say what the operator decided; the failure count and the
    ACME order say where an issuance stands; the latest Warning Events say what went wrong,
    with how often it happened.
    """
    status = cert.get("status") or {}
    conds = status.get("conditions") or []
    lines: list[str] = []
    ready = get_condition(conds, "Ready")
    issuing = get_condition(conds, "Issuing")
    if ready is None:
        # During a first issuance only Issuing is set, and says where it stands (below).
        if issuing is None:
            lines.append(
                "no Ready condition yet: is the operator running and watching this namespace?"
            )
    elif ready.status != "True":
        lines.append(f"Ready={ready.status} {ready.reason}: {ready.message}")
    elif not is_ready(cert):
        lines.append(
            f"the spec changed (generation {(cert.get('metadata') or {}).get('generation')}) "
            f"and the operator has not acted on it yet (Ready is for generation "
            f"{ready.observed_generation})"
        )
    if issuing is not None:
        lines.append(f"Issuing={issuing.status} {issuing.reason}: {issuing.message}")
    failures = int(status.get("failedIssuanceAttempts") or 0)
    if failures:
        last = status.get("lastFailureTime") or "unknown"
        lines.append(f"{failures} failed issuance attempt(s), the last at {last}")
    lines += _order_lines(status.get("order"))
    warnings = [e for e in events_about(cert, events) if e.get("type") == "Warning"]
    for e in warnings[-EVENTS_SHOWN:]:
        count = int(e.get("count") or 1)
        times = f" (x{count})" if count > 1 else ""
        lines.append(f"event {e.get('reason')}{times}: {e.get('message')}")
    return lines


def _order_lines(order: Any) -> list[str]:
    if not isinstance(order, Mapping) or not order.get("url"):
        return []
    lines = [f"ACME order {order['url']} is {order.get('state') or 'unknown'}"]
    for authz in order.get("authorizations") or []:
        if not isinstance(authz, Mapping):
            continue
        challenge = authz.get("challenge") or {}
        state = challenge.get("state") or authz.get("state") or "unknown"
        error = challenge.get("error")
        detail = f": {error}" if error else ""
        lines.append(
            f"  {authz.get('identifier')}: {challenge.get('type', 'authorization')} {state}{detail}"
        )
    return lines


def certificate_row(cert: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> CertificateRow:
    meta = cert.get("metadata") or {}
    spec = cert.get("spec") or {}
    status = cert.get("status") or {}
    ready = get_condition(status.get("conditions") or [], "Ready")
    ref = spec.get("issuerRef") or {}
    ok = is_ready(cert)
    return CertificateRow(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        ready=ready.status if ready else "Unknown",
        reason=ready.reason if ready else "",
        secret=str(spec.get("secretName") or ""),
        issuer=f"{ref.get('kind') or 'Issuer'}/{ref.get('name', '')}",
        not_after=str(status.get("notAfter") or ""),
        renewal=str(status.get("renewalTime") or ""),
        problems=() if ok else tuple(why_not_ready(cert, events)),
    )


def status_table(rows: Sequence[CertificateRow], *, show_namespace: bool) -> str:
    """Aligned columns like kubectl's, then one paragraph per Certificate that is not ready."""
    head = ["NAME", "READY", "REASON", "SECRET", "ISSUER", "NOT AFTER", "RENEWAL"]
    table = [head]
    for r in rows:
        table.append(
            [
                r.name,
                r.ready,
                r.reason or "-",
                r.secret,
                r.issuer,
                r.not_after or "-",
                r.renewal or "-",
            ]
        )
    if show_namespace:
        table = [
            ["NAMESPACE", *table[0]],
            *[[r.namespace, *t] for r, t in zip(rows, table[1:], strict=True)],
        ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    for r in rows:
        if r.problems:
            out.append("")
            out.append(f"Certificate {r.namespace}/{r.name} is not ready:")
            out += [f"  {line}" for line in r.problems]
    return "\n".join(out)


# -- inspect secret -----------------------------------------------------------------------------


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
        summary = chains.cert_summary(leaf)
    except (ValueError, IndexError) as e:
        report.check("tls.crt", False, f"cannot be parsed: {e}")
        return report
    _describe_leaf(report, leaf, summary, now)
    _describe_chain(report, chain, contents.ca_pem)
    _check_key(report, leaf, contents.key_pem)
    _check_certificate(report, secret, certificate, summary)
    return report


def _describe_leaf(
    report: InspectReport, leaf: x509.Certificate, summary: chains.CertSummary, now: datetime
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
    summary: chains.CertSummary,
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
    mismatch = chains.cert_mismatch(
        summary,
        dns_names=spec.dns_names,
        ip_addresses=spec.ip_addresses,
        uris=spec.uris,
        email_addresses=spec.email_addresses,
        common_name=spec.common_name,
    )
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
