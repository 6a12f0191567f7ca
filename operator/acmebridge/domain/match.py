"""What an issued certificate says, and whether it still says what the Certificate asks for.

Pure. :func:`cert_summary` reads a certificate once into a frozen value that the trigger, the
Secret's annotations and ``status`` use; :func:`cert_mismatch` compares it with the spec's names
and explains a difference in a sentence, which becomes the re-issue reason.

Comparisons are by set and normalised the way CAs normalise: DNS names and the common name
case-insensitively (Boulder lowercases what it issues, so an exact comparison would re-issue
forever), IP addresses in canonical form, the domain of an email address case-insensitively.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.oid import NameOID

from acmebridge.domain.keys import public_key_fingerprint, public_key_parameters

if TYPE_CHECKING:  # spec imports chain, which imports this module
    from acmebridge.domain.spec import CertificateSpec


@dataclass(frozen=True)
class CertSummary:
    """The facts of one certificate that decisions and annotations need.

    Times are timezone-aware UTC. ``serial`` is lowercase hex. ``public_key_fingerprint`` is
    :func:`~acmebridge.domain.keys.public_key_fingerprint` of the certificate's key;
    ``key_algorithm``/``key_size`` use cert-manager's terms (``ECDSA``/256, ``Ed25519``/0).
    """

    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uris: tuple[str, ...]
    email_addresses: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    serial: str
    issuer_common_name: str | None
    public_key_fingerprint: str
    key_algorithm: str
    key_size: int


def _common_name(name: x509.Name) -> str | None:
    for attribute in name.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def cert_summary(cert: x509.Certificate) -> CertSummary:
    """Summarise ``cert``. Raises ``ValueError`` if its SAN extension is malformed."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        # Extensions are parsed lazily, so a malformed one surfaces here, not when loading.
        raise ValueError("certificate has a malformed or duplicated extension") from e
    algorithm, size = public_key_parameters(cert.public_key())
    return CertSummary(
        common_name=_common_name(cert.subject),
        dns_names=tuple(sans.get_values_for_type(x509.DNSName)),
        ip_addresses=tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress)),
        uris=tuple(sans.get_values_for_type(x509.UniformResourceIdentifier)),
        email_addresses=tuple(sans.get_values_for_type(x509.RFC822Name)),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=format(cert.serial_number, "x"),
        issuer_common_name=_common_name(cert.issuer),
        public_key_fingerprint=public_key_fingerprint(cert),
        key_algorithm=algorithm,
        key_size=size,
    )


def _ip(value: str) -> str:
    # An unparsable requested address is kept as written: it will not match and gets reported.
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def _email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    return f"{local}{at}{domain.lower()}" if at else value.lower()


def _difference(field: str, have: Iterable[str], want: Iterable[str]) -> list[str]:
    have_set, want_set = set(have), set(want)
    parts = []
    if lacking := sorted(want_set - have_set):
        parts.append(f"lacks {field} [{', '.join(lacking)}]")
    if extra := sorted(have_set - want_set):
        parts.append(f"has extra {field} [{', '.join(extra)}]")
    return parts


def cert_mismatch(
    summary: CertSummary,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    uris: Sequence[str],
    email_addresses: Sequence[str],
    common_name: str | None,
) -> str | None:
    """``None`` when the certificate carries exactly the requested names; else why not.

    SANs must equal the requested names as sets (order and duplicates do not matter). The
    common name is compared only when one is requested: CAs may promote a SAN into an empty
    subject, which is not a reason to re-issue. The message names fields as the CRD does, e.g.
    ``certificate lacks dnsNames [b.example]; has extra dnsNames [c.example]``.
    """
    parts = [
        *_difference(
            "dnsNames",
            (n.lower() for n in summary.dns_names),
            (n.lower() for n in dns_names),
        ),
        *_difference(
            "ipAddresses", (_ip(a) for a in summary.ip_addresses), (_ip(a) for a in ip_addresses)
        ),
        *_difference("uris", summary.uris, uris),
        *_difference(
            "emailAddresses",
            (_email(e) for e in summary.email_addresses),
            (_email(e) for e in email_addresses),
        ),
    ]
    if common_name and (summary.common_name or "").lower() != common_name.lower():
        have = f"commonName '{summary.common_name}'" if summary.common_name else "no commonName"
        parts.append(f"has {have}, the spec asks for '{common_name}'")
    return f"certificate {'; '.join(parts)}" if parts else None


def spec_mismatch(summary: CertSummary, spec: CertificateSpec) -> str | None:
    """:func:`cert_mismatch` against the names a Certificate's spec asks for."""
    return cert_mismatch(
        summary,
        dns_names=spec.dns_names,
        ip_addresses=spec.ip_addresses,
        uris=spec.uris,
        email_addresses=spec.email_addresses,
        common_name=spec.common_name,
    )
