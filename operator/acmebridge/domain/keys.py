"""Private keys and certificate signing requests: generate, encode, load, compare, and sign.

Pure: every function here computes from its arguments; nothing reads the clock, the network or
Kubernetes. Randomness only enters through key generation, which is what it is for.

The vocabulary is cert-manager's, so that a Certificate written for cert-manager means the same
thing here: algorithms ``RSA`` / ``ECDSA`` / ``Ed25519``, encodings ``PKCS1`` / ``PKCS8``, and the
usage names of ``spec.usages``. Functions take plain strings and sequences rather than the parsed
spec types, so that they compose with whatever ``domain.spec`` hands them.

A private key never appears in an exception message, a ``repr`` we build, or a log line: to say
which key is which, compare :func:`public_key_fingerprint` values.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""The key types the operator generates and accepts from a Secret."""

ALGORITHMS = ("RSA", "ECDSA", "Ed25519")
ENCODINGS = ("PKCS1", "PKCS8")

# Size 0 means "the algorithm's default", as an unset `privateKey.size` does in cert-manager.
DEFAULT_SIZES: Mapping[str, int] = {"RSA": 2048, "ECDSA": 256, "Ed25519": 0}
RSA_SIZES = (2048, 3072, 4096)
_CURVES: Mapping[int, type[ec.EllipticCurve]] = {
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}
# RSA public exponent: 65537 is what every CA and TLS stack expects (NIST SP 800-56B).
_RSA_EXPONENT = 65537

MAX_KEY_PEM_BYTES = 16 * 1024
"""Largest private-key PEM :func:`load_private_key` parses.

An RSA-4096 key is about 3.3 KB as PEM. The bound exists because loading an RSA key checks its
primes, which costs time that grows steeply with the modulus: a Secret holding a huge key must not
stall the operator (cert-manager settled on a similar bound after GHSA-r4pg-vg54-wxx4)."""

MAX_COMMON_NAME_LENGTH = 64
"""ub-common-name, RFC 5280 appendix A.1."""

_KEY_USAGE_BITS: Mapping[str, str] = {
    # cert-manager's usage name -> the keyword of `x509.KeyUsage`.
    "signing": "digital_signature",
    "digital signature": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}
_EXTENDED_KEY_USAGES: Mapping[str, ObjectIdentifier] = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": ObjectIdentifier("2.16.840.1.113730.4.1"),
}
USAGES = tuple(_KEY_USAGE_BITS) + tuple(_EXTENDED_KEY_USAGES)
"""Every usage name `spec.usages` may hold, as cert-manager spells them."""

# `spec.subject` field -> OID, in the order Go's pkix.Name emits them, so that a CSR's subject
# reads the same as one cert-manager would build.
_SUBJECT_FIELDS: Mapping[str, ObjectIdentifier] = {
    "countries": NameOID.COUNTRY_NAME,
    "provinces": NameOID.STATE_OR_PROVINCE_NAME,
    "localities": NameOID.LOCALITY_NAME,
    "streetAddresses": NameOID.STREET_ADDRESS,
    "postalCodes": NameOID.POSTAL_CODE,
    "organizations": NameOID.ORGANIZATION_NAME,
    "organizationalUnits": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
}


def _resolve_size(algorithm: str, size: int) -> int:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown key algorithm {algorithm!r}; expected one of {list(ALGORITHMS)}")
    return size or DEFAULT_SIZES[algorithm]


def generate_private_key(algorithm: str, size: int) -> PrivateKey:
    """Generate a fresh private key for ``privateKey.algorithm`` / ``privateKey.size``.

    ``size`` 0 selects the default (RSA 2048, ECDSA P-256). For Ed25519 the size is ignored, as
    cert-manager ignores it. RSA is limited to 2048, 3072 and 4096 bits: smaller keys are refused
    by public and most internal CAs, and larger ones take seconds of CPU to generate for no
    practical gain. Raises ``ValueError`` for any other combination.
    """
    size = _resolve_size(algorithm, size)
    if algorithm == "RSA":
        if size not in RSA_SIZES:
            raise ValueError(f"RSA key size must be one of {list(RSA_SIZES)}, not {size}")
        return rsa.generate_private_key(public_exponent=_RSA_EXPONENT, key_size=size)
    if algorithm == "ECDSA":
        curve = _CURVES.get(size)
        if curve is None:
            raise ValueError(f"ECDSA key size must be one of {list(_CURVES)}, not {size}")
        return ec.generate_private_key(curve())
    return ed25519.Ed25519PrivateKey.generate()


def encode_private_key(key: PrivateKey, encoding: str) -> bytes:
    """PEM-encode ``key``, unencrypted, as ``privateKey.encoding`` asks.

    ``PKCS1`` means the traditional per-algorithm form (``RSA PRIVATE KEY``, and for EC keys the
    SEC 1 ``EC PRIVATE KEY`` that OpenSSL and cert-manager also file under PKCS1); ``PKCS8`` is
    ``PRIVATE KEY``. Ed25519 has no traditional form, so it is always PKCS#8, as in cert-manager.
    The key is unencrypted because a Kubernetes Secret is the protection, and every TLS server
    that mounts ``tls.key`` expects it so.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown key encoding {encoding!r}; expected one of {list(ENCODINGS)}")
    if encoding == "PKCS1" and not isinstance(key, ed25519.Ed25519PrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def load_private_key(pem: bytes) -> PrivateKey:
    """Parse an unencrypted PEM private key (PKCS#1, SEC 1 or PKCS#8) read from a Secret.

    Raises ``ValueError`` when the PEM is larger than :data:`MAX_KEY_PEM_BYTES`, malformed,
    encrypted, or of a key type the operator does not issue for (DSA, X25519, Ed448 …). The
    message never contains key material.
    """
    if len(pem) > MAX_KEY_PEM_BYTES:
        raise ValueError(
            f"private key PEM is {len(pem)} bytes; the limit is {MAX_KEY_PEM_BYTES} bytes"
        )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as e:
        # cryptography raises TypeError when the PEM is encrypted and no password was given.
        raise ValueError("private key PEM is encrypted; tls.key must be unencrypted") from e
    except (ValueError, UnsupportedAlgorithm) as e:
        # Chain the cause for debugging, but do not repeat its text: it may quote the input.
        raise ValueError("private key PEM is malformed or of an unsupported kind") from e
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise ValueError(f"private key type {type(key).__name__} is not supported; use {ALGORITHMS}")


def public_key_parameters(public_key: PublicKeyTypes) -> tuple[str, int]:
    """``(algorithm, size)`` of a public key in cert-manager's terms.

    The size of an ECDSA key is its curve's (256, 384, 521); Ed25519 has no size and reports 0.
    Key types outside :data:`ALGORITHMS` report their class name and 0, so that a summary of a
    foreign certificate can still be shown rather than failing.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ECDSA", public_key.curve.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519", 0
    return type(public_key).__name__, 0


def key_matches_spec(key: PrivateKey, algorithm: str, size: int) -> bool:
    """Whether ``key`` is what ``privateKey.algorithm`` / ``privateKey.size`` ask for.

    A mismatch is a re-issue trigger (the user changed the key spec). ``size`` 0 means the
    default; for Ed25519 the size is not compared. An unknown algorithm is a ``ValueError``,
    not ``False``: re-issuing could not fix it.
    """
    size = _resolve_size(algorithm, size)
    have_algorithm, have_size = public_key_parameters(key.public_key())
    if have_algorithm != algorithm:
        return False
    if algorithm == "ECDSA" and isinstance(key, ec.EllipticCurvePrivateKey):
        # Compare the curve itself: a secp256k1 key is also "256 bits" but no CA accepts it.
        curve = _CURVES.get(size)
        return curve is not None and isinstance(key.curve, curve)
    return algorithm == "Ed25519" or have_size == size


def public_key_fingerprint(
    subject: PrivateKey | PublicKeyTypes | x509.Certificate | x509.CertificateSigningRequest,
) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo of a key, certificate or CSR.

    Equal fingerprints mean the same key pair: this is how a certificate is matched to
    ``tls.key``, and the only way a key is ever identified in messages. The SPKI is re-encoded
    from the parsed key on both sides, so two encodings of one key compare equal.
    """
    if isinstance(subject, x509.Certificate | x509.CertificateSigningRequest):
        public_key: PublicKeyTypes = subject.public_key()
    elif isinstance(
        subject, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        public_key = subject.public_key()
    else:
        public_key = subject
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def _signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    # Hash strength follows key strength, as cert-manager's SignatureAlgorithm does; Ed25519
    # hashes internally and takes None.
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    bits = key.key_size if isinstance(key, rsa.RSAPrivateKey) else key.curve.key_size
    if (isinstance(key, rsa.RSAPrivateKey) and bits >= 4096) or bits == 521:
        return hashes.SHA512()
    if bits >= 3072 or bits == 384:
        return hashes.SHA384()
    return hashes.SHA256()


def default_usages(key: PrivateKey) -> tuple[str, ...]:
    """The usages a CSR asks for when ``spec.usages`` is empty.

    cert-manager's default is ``digital signature`` + ``key encipherment``. Key encipherment is
    only meaningful for RSA (the key transports a secret); RFC 8813 section 3 and RFC 8410
    section 5 forbid it for EC and Ed25519 keys, and strict verifiers reject it, so non-RSA keys
    default to ``digital signature`` alone.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        return ("digital signature", "key encipherment")
    return ("digital signature",)


def _key_usage_extensions(
    usages: Sequence[str],
) -> tuple[x509.KeyUsage | None, x509.ExtendedKeyUsage | None]:
    unknown = sorted(
        {u for u in usages if u not in _KEY_USAGE_BITS and u not in _EXTENDED_KEY_USAGES}
    )
    if unknown:
        raise ValueError(f"unknown usages {unknown}; expected names from {list(USAGES)}")
    bits = {name: False for name in _KEY_USAGE_BITS.values()}
    ekus: list[ObjectIdentifier] = []
    for usage in usages:
        if usage in _KEY_USAGE_BITS:
            bits[_KEY_USAGE_BITS[usage]] = True
        elif _EXTENDED_KEY_USAGES[usage] not in ekus:
            ekus.append(_EXTENDED_KEY_USAGES[usage])
    if not bits["key_agreement"] and (bits["encipher_only"] or bits["decipher_only"]):
        # RFC 5280 4.2.1.3: encipherOnly/decipherOnly are undefined without keyAgreement, and
        # cryptography refuses to build such a KeyUsage.
        raise ValueError('"encipher only" and "decipher only" require "key agreement"')
    key_usage = x509.KeyUsage(**bits) if any(bits.values()) else None
    return key_usage, (x509.ExtendedKeyUsage(ekus) if ekus else None)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _subject_name(
    common_name: str | None, subject: Mapping[str, Sequence[str]] | None
) -> x509.Name:
    fields = dict(subject or {})
    unknown = sorted(set(fields) - set(_SUBJECT_FIELDS))
    if unknown:
        raise ValueError(f"unknown subject fields {unknown}; expected {list(_SUBJECT_FIELDS)}")
    if common_name and len(common_name) > MAX_COMMON_NAME_LENGTH:
        raise ValueError(
            f"commonName is {len(common_name)} characters; "
            f"X.509 allows at most {MAX_COMMON_NAME_LENGTH}"
        )
    attributes: list[x509.NameAttribute[str]] = []
    for field, oid in _SUBJECT_FIELDS.items():
        if field == "serialNumber" and common_name:
            # Go's pkix.Name puts the common name just before the serial number.
            attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        values = fields.get(field, ())
        # `serialNumber` is a single string in the CRD; do not iterate it character by character.
        for value in [values] if isinstance(values, str) else values:
            if value:
                attributes.append(x509.NameAttribute(oid, value))
    return x509.Name(attributes)


def build_csr(
    key: PrivateKey,
    *,
    common_name: str | None,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    uris: Sequence[str],
    email_addresses: Sequence[str],
    usages: Sequence[str],
    subject: Mapping[str, Sequence[str]] | None = None,
) -> bytes:
    """A PEM certificate signing request for a Certificate's names, signed by ``key``.

    - The subject carries the common name only when one is given (ACME CAs take identities from
      the SAN extension; RFC 8555 section 7.4), limited to 64 characters, plus ``spec.subject``
      fields keyed by their CRD names (``organizations``, ``countries``, ``organizationalUnits``,
      ``localities``, ``provinces``, ``streetAddresses``, ``postalCodes``, ``serialNumber``).
    - The SAN extension lists DNS names, IP addresses, URIs and email addresses, duplicates
      dropped; it is critical exactly when the subject is empty (RFC 5280 4.2.1.6).
    - ``usages`` use cert-manager's names (:data:`USAGES`); empty means :func:`default_usages`.
      KeyUsage is critical (RFC 5280 4.2.1.3 says SHOULD), ExtendedKeyUsage is not.

    Raises ``ValueError`` on an unknown usage or subject field, an invalid IP address or a
    non-ASCII DNS name (pass IDNA A-labels), a too-long common name, or no name at all.
    """
    sans: list[x509.GeneralName] = []
    sans += [x509.DNSName(name) for name in _unique(dns_names)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _unique(ip_addresses)]
    sans += [x509.UniformResourceIdentifier(uri) for uri in _unique(uris)]
    sans += [x509.RFC822Name(email) for email in _unique(email_addresses)]
    name = _subject_name(common_name, subject)
    if not sans and not common_name:
        raise ValueError(
            "a CSR needs at least one of commonName, dnsNames, ipAddresses, uris, emailAddresses"
        )
    key_usage, extended_key_usage = _key_usage_extensions(usages or default_usages(key))

    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=len(name) == 0)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if extended_key_usage is not None:
        builder = builder.add_extension(extended_key_usage, critical=False)
    csr = builder.sign(key, _signature_hash(key))
    return csr.public_bytes(serialization.Encoding.PEM)
