"""The admission webhook's own TLS: a private CA and a serving certificate, made and renewed here.

The API server calls the webhook over TLS and trusts only the ``caBundle`` of the webhook
configuration. The operator keeps a small CA of its own for that, in one Secret every replica
shares, so that each replica serves a certificate the same bundle verifies. The serving
certificate is renewed at two thirds of its lifetime; the CA too, and then the bundle carries the
old CA next to the new one until the old one expires, so that a replica still serving a
certificate from the old CA stays trusted while the others move on. Key generation aside, the
decisions are pure (``now`` comes in).

Why not kopf's self-signed generator: it needs ``oscrypto``, which fails on OpenSSL 3.0.10 and
later; ``cryptography`` is what the operator uses everywhere else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from acmebridge.domain.chain import encode_pem_certificates, verifies
from acmebridge.domain.names import is_ip

__all__ = [
    "Plan",
    "ServingMaterial",
    "ca_bundle",
    "decide",
    "issue",
    "serving_hosts",
]

#: the CA lives this many serving-certificate lifetimes
CA_LIFETIMES = 10
#: backdating, for API servers whose clocks run a little behind (at most a tenth of the
#: lifetime, so that short test lifetimes still renew at about two thirds)
BACKDATE = timedelta(minutes=5)
ORGANISATION = "acmebridge"


class Plan(Enum):
    """What to do with the Secret's material."""

    KEEP = "keep"
    NEW_LEAF = "new serving certificate"
    NEW_CA = "new CA and serving certificate"


@dataclass(frozen=True)
class ServingMaterial:
    """The Secret's contents: the CAs (signing CA first), its key, the serving certificate."""

    cas: tuple[x509.Certificate, ...]
    ca_key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def from_data(cls, data: Mapping[str, bytes]) -> ServingMaterial | None:
        """Pure: the material from decoded Secret data; None when anything is missing or bad."""
        try:
            cas = tuple(x509.load_pem_x509_certificates(data["ca.crt"]))
            ca_key = serialization.load_pem_private_key(data["ca.key"], password=None)
            cert = x509.load_pem_x509_certificate(data["tls.crt"])
            key = serialization.load_pem_private_key(data["tls.key"], password=None)
        except (KeyError, ValueError):
            return None
        if not cas or not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            return None
        return cls(cas=cas, ca_key=ca_key, cert=cert, key=key)

    def to_data(self) -> dict[str, bytes]:
        def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
            return key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )

        return {
            "ca.crt": encode_pem_certificates(self.cas),
            "ca.key": pem(self.ca_key),
            "tls.crt": encode_pem_certificates([self.cert]),
            "tls.key": pem(self.key),
        }


def serving_hosts(
    *, service: tuple[str, str] | None, url_host: str | None, cluster_domain: str
) -> tuple[str, ...]:
    """The names the API server may use to reach the webhook: ``<service>.<namespace>.svc``
    (what it sends as the TLS server name for a service reference) and the full cluster name,
    or the host of a URL."""
    hosts: list[str] = []
    if service is not None:
        namespace, name = service
        hosts += [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{cluster_domain}"]
    if url_host:
        hosts.append(url_host)
    return tuple(dict.fromkeys(hosts))


def _due(cert: x509.Certificate, now: datetime) -> bool:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * 2 / 3


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = set(ext.get_values_for_type(x509.DNSName))
    names |= {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return names


def decide(material: ServingMaterial | None, *, now: datetime, hosts: Sequence[str]) -> Plan:
    """Pure: keep the material, renew the serving certificate, or renew the CA (and then the
    serving certificate with it)."""
    if material is None or _due(material.cas[0], now):
        return Plan.NEW_CA
    if (
        _due(material.cert, now)
        or _sans(material.cert) != set(hosts)
        or not verifies(material.cert, material.cas[0])
    ):
        return Plan.NEW_LEAF
    return Plan.KEEP


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(now: datetime, lifetime: timedelta) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"acmebridge webhook CA {now:%Y-%m-%dT%H:%M:%SZ}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - min(BACKDATE, lifetime / 10))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    hosts: Sequence[str],
    now: datetime,
    lifetime: timedelta,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(h)) if is_ip(h) else x509.DNSName(h) for h in hosts
    ]
    # Never outlive the CA: a serving certificate the bundle no longer verifies is useless.
    end = min(now + lifetime, ca.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0] if hosts else "acmebridge webhook"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - min(BACKDATE, lifetime / 10))
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def issue(
    material: ServingMaterial | None,
    plan: Plan,
    *,
    now: datetime,
    hosts: Sequence[str],
    lifetime: timedelta,
) -> ServingMaterial:
    """New material for ``plan`` (which must not be KEEP). A new CA keeps the previous ones that
    are still valid in the bundle."""
    if plan is Plan.NEW_CA or material is None:
        ca, ca_key = _ca(now, lifetime * CA_LIFETIMES)
        older = tuple(c for c in (material.cas if material else ()) if c.not_valid_after_utc > now)
        cas = (ca, *older)
    else:
        cas, ca_key = material.cas, material.ca_key
    cert, key = _leaf(cas[0], ca_key, hosts, now, lifetime)
    return ServingMaterial(cas=cas, ca_key=ca_key, cert=cert, key=key)


def ca_bundle(material: ServingMaterial, *, now: datetime) -> bytes:
    """Pure: the webhook configuration's caBundle: every CA of the material still valid."""
    return encode_pem_certificates([c for c in material.cas if c.not_valid_after_utc > now])


def next_check(material: ServingMaterial, *, now: datetime, most: timedelta) -> timedelta:
    """Pure: how long until the material is due for renewal (at most ``most``)."""
    due = []
    for cert in (material.cas[0], material.cert):
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        due.append(start + (end - start) * 2 / 3 - now)
    return max(timedelta(seconds=1), min([most, *due]))
