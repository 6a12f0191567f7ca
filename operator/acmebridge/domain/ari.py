"""The ACME Renewal Information identifier of a certificate (RFC 9773 §4.1). Pure."""

from __future__ import annotations

import base64
import math

from cryptography import x509


def cert_id(cert: x509.Certificate) -> str:
    """base64url(AKI keyIdentifier) "." base64url(serial number's DER content octets), unpadded.

    Raises ValueError when the certificate has no Authority Key Identifier with a keyIdentifier
    (some internal CAs omit it): such a certificate has no renewal information.
    """
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise ValueError("the certificate has no Authority Key Identifier: no ARI") from None
    except (ValueError, x509.DuplicateExtension) as e:
        raise ValueError("the certificate's extensions are malformed: no ARI") from e
    if aki.key_identifier is None:
        raise ValueError("the certificate's Authority Key Identifier has no keyIdentifier")
    serial = cert.serial_number
    # DER INTEGER content: two's complement, big-endian, minimal length, so a serial whose top
    # bit is set gets a leading zero byte (RFC 9773's example: 0x87654321 -> 00 87 65 43 21).
    length = max(1, math.ceil((serial.bit_length() + 1) / 8))
    serial_der = serial.to_bytes(length, byteorder="big", signed=True)
    return f"{_b64url(aki.key_identifier)}.{_b64url(serial_der)}"


def cert_id_or_none(cert: x509.Certificate) -> str | None:
    try:
        return cert_id(cert)
    except ValueError:
        return None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
