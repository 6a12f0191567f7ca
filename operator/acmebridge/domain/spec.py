"""Certificate and Issuer specs, parsed once from Kubernetes JSON into frozen, validated values.

Field names and defaults follow cert-manager (``crds/`` lists where they differ). Parsing does
not trust that the CRD schema was applied, so every rule the schema states is checked again here,
and values are normalised so that equal intent compares equal: DNS names lower-cased without a
trailing dot, IP addresses canonical, duplicates dropped (first occurrence kept). Anything wrong
raises ``SpecError("InvalidSpec", "<path>: <what to change>")``.

This module is pure: no IO, no clock. Issuer specs are in ``issuer_spec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from acmebridge.domain.durations import parse_go_duration
from acmebridge.domain.fields import Fields, check_object_name, invalid
from acmebridge.domain.frozen import FrozenDict, canonical_sha256, freeze_fields
from acmebridge.domain.names import canonical_ip, is_ip, normalise_dns_name

__all__ = [
    "DEFAULT_KEY_SIZES",
    "GROUP",
    "KEY_USAGES",
    "MAX_NAMES",
    "MIN_DURATION",
    "MIN_RENEW_BEFORE",
    "RESERVED_PREFIX",
    "CertificateSpec",
    "Identifier",
    "IssuerRef",
    "PrivateKeySpec",
    "Subject",
]

GROUP = "acmebridge.io"
RESERVED_PREFIX = "acmebridge.io/"
MIN_DURATION = timedelta(minutes=5)
MIN_RENEW_BEFORE = timedelta(minutes=1)
# Let's Encrypt's limit per order, and the CRD's: beyond it, split the Certificate.
MAX_NAMES = 100
# Valid sizes per algorithm; the first is the default. Ed25519 has a fixed size, written as 0.
DEFAULT_KEY_SIZES: Mapping[str, tuple[int, ...]] = {
    "RSA": (2048, 3072, 4096),
    "ECDSA": (256, 384, 521),
    "Ed25519": (0,),
}
# cert-manager's KeyUsage names (api/v1 types.go).
KEY_USAGES = (
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
)


@dataclass(frozen=True)
class Identifier:
    """An ACME identifier (RFC 8555 §9.7.7 ``dns``, RFC 8738 ``ip``), value normalised."""

    type: Literal["dns", "ip"]
    value: str


@dataclass(frozen=True)
class IssuerRef:
    name: str
    kind: Literal["Issuer", "ClusterIssuer"] = "Issuer"
    group: str = GROUP

    @classmethod
    def from_body(cls, ref: Mapping[str, Any], *, path: str = "spec.issuerRef") -> Self:
        f = Fields(ref, path)
        name = check_object_name(f.required_string("name"), f.at("name"))
        kind = f.choice("kind", ("Issuer", "ClusterIssuer"), default="Issuer")
        group = f.choice("group", (GROUP,), default=GROUP)
        return cls(name=name, kind="Issuer" if kind == "Issuer" else "ClusterIssuer", group=group)


@dataclass(frozen=True)
class PrivateKeySpec:
    """The certificate key. ECDSA P-256 by default (cert-manager: RSA 2048), see crds/."""

    algorithm: Literal["RSA", "ECDSA", "Ed25519"] = "ECDSA"
    size: int = 256
    encoding: Literal["PKCS1", "PKCS8"] = "PKCS1"
    rotation_policy: Literal["Always", "Never"] = "Always"

    @classmethod
    def from_body(cls, key: Mapping[str, Any] | None, *, path: str = "spec.privateKey") -> Self:
        f = Fields(key if key is not None else {}, path)
        algorithm = f.choice("algorithm", ("RSA", "ECDSA", "Ed25519"), default="ECDSA")
        sizes = DEFAULT_KEY_SIZES[algorithm]
        size = f.integer("size") or sizes[0]  # 0 and absent both mean "the default"
        if size not in sizes:
            allowed = "leave it unset" if algorithm == "Ed25519" else f"use one of {sizes}"
            f.fail("size", f"{size} is not a valid {algorithm} key size: {allowed}")
        encoding = f.choice("encoding", ("PKCS1", "PKCS8"), default="PKCS1")
        if algorithm == "Ed25519":
            # PKCS#1 has no Ed25519 form; cert-manager writes PKCS#8 whatever is asked, and the
            # schema defaults encoding to PKCS1, so an explicit PKCS1 cannot be told apart.
            encoding = "PKCS8"
        rotation = f.choice("rotationPolicy", ("Always", "Never"), default="Always")
        return cls(
            algorithm=algorithm,  # type: ignore[arg-type]  # checked by choice()
            size=size,
            encoding=encoding,  # type: ignore[arg-type]
            rotation_policy=rotation,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Subject:
    organizations: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    localities: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()
    street_addresses: tuple[str, ...] = ()
    postal_codes: tuple[str, ...] = ()
    serial_number: str | None = None

    @classmethod
    def from_body(cls, subject: Mapping[str, Any] | None, *, path: str = "spec.subject") -> Self:
        f = Fields(subject if subject is not None else {}, path)
        # Upper bounds from RFC 5280 Appendix A (ub-organization-name and friends).
        return cls(
            organizations=f.strings("organizations", max_items=16, max_length=64),
            organizational_units=f.strings("organizationalUnits", max_items=16, max_length=64),
            countries=f.strings("countries", max_items=16, max_length=64),
            localities=f.strings("localities", max_items=16, max_length=128),
            provinces=f.strings("provinces", max_items=16, max_length=128),
            street_addresses=f.strings("streetAddresses", max_items=16, max_length=128),
            postal_codes=f.strings("postalCodes", max_items=16, max_length=40),
            serial_number=f.string("serialNumber", max_length=64),
        )


def _default_usages(algorithm: str) -> tuple[str, ...]:
    # keyEncipherment only makes sense for RSA key transport; RFC 5480 §3 (ECDSA) and RFC 8410 §5
    # (Ed25519) forbid it, and strict CAs refuse such CSRs.
    if algorithm == "RSA":
        return ("digital signature", "key encipherment")
    return ("digital signature",)


@dataclass(frozen=True)
class CertificateSpec:
    """A Certificate's spec. ``duration`` None lets the CA choose the lifetime."""

    secret_name: str
    issuer_ref: IssuerRef
    common_name: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()
    duration: timedelta | None = None
    renew_before: timedelta | None = None
    renew_before_percentage: int | None = None
    private_key: PrivateKeySpec = field(default_factory=PrivateKeySpec)
    usages: tuple[str, ...] = ("digital signature",)
    secret_template_labels: Mapping[str, str] = field(default_factory=FrozenDict)
    secret_template_annotations: Mapping[str, str] = field(default_factory=FrozenDict)
    subject: Subject = field(default_factory=Subject)

    def __post_init__(self) -> None:
        freeze_fields(self, "secret_template_labels", "secret_template_annotations")

    @classmethod
    def from_body(cls, spec: Mapping[str, Any]) -> Self:
        """Parse ``body['spec']`` of a Certificate; SpecError names the first bad field."""
        f = Fields(spec, "spec")
        secret_name = check_object_name(f.required_string("secretName"), f.at("secretName"))
        issuer = f.object("issuerRef", required=True)
        assert issuer is not None
        issuer_ref = IssuerRef.from_body(issuer.data, path=issuer.path)

        dns_names = _unique(
            _dns(path, item) for path, item in f.items("dnsNames", max_items=MAX_NAMES)
        )
        ip_addresses = _unique(
            _ip(path, item) for path, item in f.items("ipAddresses", max_items=MAX_NAMES)
        )
        common_name = f.string("commonName", max_length=64)
        if common_name is not None:
            common_name = _common_name(f.at("commonName"), common_name)
            # CAs copy the common name into the SANs (CA/Browser Forum rules), so it joins
            # the names here: the CSR, the order and the issued certificate then list the same
            # names, and comparing the certificate with the spec finds no difference forever.
            if is_ip(common_name) and common_name not in ip_addresses:
                ip_addresses = (common_name, *ip_addresses)
            elif not is_ip(common_name) and common_name not in dns_names:
                dns_names = (common_name, *dns_names)
        uris = f.strings("uris", max_items=MAX_NAMES, max_length=2048)
        for i, uri in enumerate(uris):
            _check_uri(f"{f.at('uris')}[{i}]", uri)
        emails = f.strings("emailAddresses", max_items=MAX_NAMES, max_length=254)
        for i, email in enumerate(emails):
            _check_email(f"{f.at('emailAddresses')}[{i}]", email)

        duration = _duration(f, "duration")
        if duration is not None and duration < MIN_DURATION:
            f.fail("duration", f"must be at least 5m, got {f.data['duration']!r}")
        renew_before = _duration(f, "renewBefore")
        percentage = f.integer("renewBeforePercentage")
        if renew_before is not None and percentage is not None:
            invalid(
                "spec",
                "renewBefore and renewBeforePercentage are mutually exclusive: keep one of them",
            )
        if renew_before is not None:
            if renew_before < MIN_RENEW_BEFORE:
                f.fail("renewBefore", "must be at least 1m, to leave time to retry before expiry")
            if duration is not None and renew_before >= duration:
                f.fail(
                    "renewBefore",
                    "must be shorter than duration, or the certificate would be renewed as "
                    "soon as it is issued",
                )
        if percentage is not None and not 1 <= percentage <= 99:
            f.fail("renewBeforePercentage", f"must be between 1 and 99, got {percentage}")

        key_fields = f.object("privateKey")
        private_key = PrivateKeySpec.from_body(
            key_fields.data if key_fields else None, path=f.at("privateKey")
        )
        usages = f.strings("usages", max_items=len(KEY_USAGES))
        for i, usage in enumerate(usages):
            if usage not in KEY_USAGES:
                invalid(
                    f"{f.at('usages')}[{i}]",
                    f"unknown usage {usage!r}; allowed: {', '.join(KEY_USAGES)}",
                )
        template = f.object("secretTemplate") or Fields({}, f.at("secretTemplate"))
        subject_fields = f.object("subject")

        result = cls(
            secret_name=secret_name,
            issuer_ref=issuer_ref,
            common_name=common_name,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            uris=uris,
            email_addresses=emails,
            duration=duration,
            renew_before=renew_before,
            renew_before_percentage=percentage,
            private_key=private_key,
            usages=usages or _default_usages(private_key.algorithm),
            secret_template_labels=template.string_map(
                "labels",
                max_items=64,
                max_value_length=63,
                check_keys=True,
                label_values=True,
                reserved_prefix=RESERVED_PREFIX,
            ),
            secret_template_annotations=template.string_map(
                "annotations", max_items=64, check_keys=True, reserved_prefix=RESERVED_PREFIX
            ),
            subject=Subject.from_body(
                subject_fields.data if subject_fields else None, path=f.at("subject")
            ),
        )
        identifiers = result.identifiers()
        if not identifiers:
            invalid(
                "spec",
                "set dnsNames or ipAddresses: an ACME CA can only validate DNS names and IP "
                "addresses, so commonName, uris or emailAddresses alone cannot be ordered",
            )
        total = len(identifiers) + len(uris) + len(emails)
        if total > MAX_NAMES:
            invalid(
                "spec",
                f"a certificate may carry at most {MAX_NAMES} names in total (dnsNames, "
                f"ipAddresses, uris and emailAddresses together), got {total}: split it into "
                "several Certificates",
            )
        return result

    def identifiers(self) -> tuple[Identifier, ...]:
        """The ACME order's identifiers: dnsNames, then ipAddresses; commonName first if missing.

        An ACME CA only puts validated identifiers into a certificate, so a commonName that is
        not also a SAN has to be ordered too (cert-manager adds it the same way). ``from_body``
        already adds it to the names; the check here covers specs built directly.
        """
        ids: dict[Identifier, None] = {}
        cn = self.common_name
        if cn is not None and cn not in self.dns_names and cn not in self.ip_addresses:
            ids[Identifier("ip" if is_ip(cn) else "dns", cn)] = None
        ids.update((Identifier("dns", name), None) for name in self.dns_names)
        ids.update((Identifier("ip", ip), None) for ip in self.ip_addresses)
        return tuple(ids)

    def issuance_hash(self) -> str:
        """sha256 hex of everything whose change needs a new certificate.

        Left out on purpose: renewBefore(Percentage) only moves the next renewal, secretTemplate
        is applied to the existing Secret, secretName is handled by "the Secret is missing", and
        rotationPolicy only matters at the next issuance. Name lists are sorted, so reordering
        them is not a change. Changing what goes in here re-issues every certificate on upgrade.
        """
        s, key = self.subject, self.private_key
        material = {
            "v": 1,
            "issuerRef": [self.issuer_ref.name, self.issuer_ref.kind, self.issuer_ref.group],
            "commonName": self.common_name,
            "dnsNames": sorted(self.dns_names),
            "ipAddresses": sorted(self.ip_addresses),
            "uris": sorted(self.uris),
            "emailAddresses": sorted(self.email_addresses),
            "duration": _microseconds(self.duration),
            "privateKey": [key.algorithm, key.size, key.encoding],
            "usages": sorted(self.usages),
            "subject": [
                s.organizations,
                s.organizational_units,
                s.countries,
                s.localities,
                s.provinces,
                s.street_addresses,
                s.postal_codes,
                s.serial_number,
            ],
        }
        return canonical_sha256(material)


def _microseconds(value: timedelta | None) -> int | None:
    return None if value is None else value // timedelta(microseconds=1)


def _unique(values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _dns(path: str, value: Any) -> str:
    if not isinstance(value, str):
        invalid(path, f"must be a string, got {value!r}")
    try:
        return normalise_dns_name(value)
    except ValueError as e:
        invalid(path, str(e))


def _ip(path: str, value: Any) -> str:
    if not isinstance(value, str):
        invalid(path, f"must be a string, got {value!r}")
    try:
        return canonical_ip(value)
    except ValueError as e:
        invalid(path, str(e))


def _common_name(path: str, value: str) -> str:
    if is_ip(value):
        return canonical_ip(value)
    try:
        return normalise_dns_name(value)
    except ValueError as e:
        invalid(
            path,
            f"{e}; commonName must be one of the certificate's DNS names or IP addresses, "
            "because an ACME CA only puts validated identifiers into a certificate",
        )


def _check_uri(path: str, value: str) -> None:
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or not parts.scheme or any(c.isspace() for c in value):
        invalid(
            path,
            f"{value!r} is not an absolute URI with a scheme, such as "
            "spiffe://cluster.local/ns/shop/sa/web",
        )


def _check_email(path: str, value: str) -> None:
    local, at, domain = value.partition("@")
    bad = set("@<>")
    if not at or not local or not domain or any(c.isspace() or c in bad for c in local + domain):
        invalid(path, f"{value!r} is not a plain address such as ops@example.com")


def _duration(f: Fields, key: str) -> timedelta | None:
    text = f.string(key, max_length=32)
    if text is None:
        return None
    try:
        value = parse_go_duration(text)
    except ValueError as e:
        f.fail(key, str(e))
    if value <= timedelta(0):
        f.fail(key, f"must be positive, got {text!r}")
    return value
