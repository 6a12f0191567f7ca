"""DNS names and IP addresses in the one canonical form used everywhere names are compared.

A name from a spec, from a selector, from an issued certificate's SANs and from an ACME
authorization must compare equal when they mean the same thing, or the operator re-issues forever
(spec says ``Web.Example.``, the certificate says ``web.example``). So: DNS names are lower-cased
and lose one trailing dot; IP addresses take the form ``ipaddress`` prints (RFC 5952 for IPv6),
which is also the form RFC 8738 §3 asks for in ACME identifiers.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["MAX_DNS_NAME_LENGTH", "canonical_ip", "is_ip", "normalise_dns_name"]

MAX_DNS_NAME_LENGTH = 253
# RFC 1123 §2.1 host name label: letters, digits, hyphens, not starting or ending with a hyphen.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


def is_ip(text: str) -> bool:
    """True when ``text`` is an IPv4 or IPv6 address (no zone index)."""
    try:
        canonical_ip(text)
    except ValueError:
        return False
    return True


def canonical_ip(text: str) -> str:
    """``2001:0db8::0001`` -> ``2001:db8::1``; ValueError when not an address."""
    if "%" in text:
        raise ValueError(f"{text!r}: IPv6 zone indexes cannot appear in a certificate")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 address") from None


def normalise_dns_name(name: str, *, allow_wildcard: bool = True) -> str:
    """Lower-case, drop one trailing dot, and check RFC 1123 syntax; ValueError says what is wrong.

    A wildcard is accepted only as the whole leftmost label followed by at least one more label
    (``*.example.com``), the only form RFC 8555 §7.1.3 and the CA/Browser Forum allow. Non-ASCII
    names must be given in their ``xn--`` form: IDNA conversion has two incompatible standards,
    and guessing the wrong one would put a different name in the certificate.
    """
    if not name.isascii():
        raise ValueError(f"{name!r} is not ASCII: write internationalised names as xn-- labels")
    candidate = name.lower()
    if candidate.endswith("."):
        candidate = candidate[:-1]
    if not candidate:
        raise ValueError(f"{name!r} is empty")
    if len(candidate) > MAX_DNS_NAME_LENGTH:
        raise ValueError(f"{name!r} is longer than {MAX_DNS_NAME_LENGTH} characters")
    if is_ip(candidate):
        raise ValueError(f"{name!r} is an IP address, not a DNS name: list it under ipAddresses")
    labels = candidate.split(".")
    if labels[0] == "*":
        if not allow_wildcard:
            raise ValueError(f"{name!r}: a wildcard is not allowed here")
        if len(labels) < 2:
            raise ValueError(f"{name!r}: a wildcard needs a domain after it, like *.example.com")
        labels = labels[1:]
    for label in labels:
        if "*" in label:
            raise ValueError(
                f"{name!r}: a wildcard may only be the whole leftmost label, like *.example.com"
            )
        if not label:
            raise ValueError(f"{name!r} has an empty label (two dots in a row)")
        if len(label) > 63:
            raise ValueError(f"{name!r} has a label longer than 63 characters")
        if _LABEL.fullmatch(label) is None:
            raise ValueError(
                f"{name!r}: labels may hold only letters, digits and hyphens, "
                "and may not start or end with a hyphen"
            )
    return candidate
