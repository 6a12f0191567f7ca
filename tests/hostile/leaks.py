"""Finding secret material in text: the needles one secret leaves, and a scan for them.

A private key can leak in many spellings: its PEM text, the base64 body of that PEM (a log line
that quotes one line of it), the base64 of the whole PEM (how a Secret's ``data`` holds it), or a
JWK's private parameter. An EAB MAC key leaks as itself or as its base64 in ``data``. ``needles``
derives every spelling worth searching for; ``scan`` reports which appear in a text. Fixed-size
chunks are searched rather than whole values, so a truncated or wrapped copy is found too.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

CHUNK = 32
"""Characters per searched piece: long enough that a match is never chance."""

# Any PEM private key header, whatever the key type or encoding.
PRIVATE_KEY_HEADER = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_HEADERS_AS_BASE64 = [
    base64.b64encode(f"-----BEGIN {kind}PRIVATE KEY-----".encode()).decode()[:CHUNK]
    for kind in ("", "EC ", "RSA ", "ENCRYPTED ")
]


@dataclass(frozen=True)
class Found:
    needle: str
    where: str
    context: str

    def __str__(self) -> str:
        return f"{self.needle} in {self.where}: ...{self.context}..."


def _chunks(text: str) -> list[str]:
    return [text[i : i + CHUNK] for i in range(0, len(text) - CHUNK + 1, CHUNK)] or (
        [text] if text else []
    )


def _b64url(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_needles(name: str, pem: bytes) -> dict[str, str]:
    """Spellings of the private part of the key in ``pem``.

    Only what depends on the private key is searched for: a PEM's first body line (a private-key
    structure's header and the start of its secret), the start of the base64 of the whole PEM
    (how a Secret's ``data`` holds it), and the secret numbers in hex, decimal and base64url (a
    JWK's ``d``). Later PEM lines are left out on purpose: they carry the public key, which CSRs
    and certificates publish and logs may show.
    """
    found: dict[str, str] = {}
    text = pem.decode("ascii", "replace")
    body = [line for line in text.splitlines() if line and not line.startswith("-----")]
    if body:
        found[f"{name}: PEM first line"] = body[0][:CHUNK]
    for i, chunk in enumerate(_chunks(base64.b64encode(pem).decode())[:3]):
        found[f"{name}: base64 of the PEM, piece {i + 1}"] = chunk
    key = serialization.load_pem_private_key(pem, password=None)
    secrets: dict[str, int] = {}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        secrets["private scalar"] = key.private_numbers().private_value
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        secrets.update({"private exponent": numbers.d, "prime p": numbers.p, "prime q": numbers.q})
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        secrets["private bytes"] = int.from_bytes(raw, "big")
    for what, number in secrets.items():
        found[f"{name}: {what} (base64url, as JWK d)"] = _b64url(number)[:CHUNK]
        found[f"{name}: {what} (hex)"] = format(number, "x")[:CHUNK]
        found[f"{name}: {what} (decimal)"] = str(number)[:CHUNK]
    return found


def value_needles(name: str, value: bytes) -> dict[str, str]:
    """Spellings of a secret string (an EAB MAC key): itself, and its base64 as in ``data``."""
    text = value.decode("ascii", "replace").strip()
    found = {f"{name}: value": text}
    for i, chunk in enumerate(_chunks(base64.b64encode(value).decode())):
        found[f"{name}: base64 of the value, piece {i + 1}"] = chunk
    return found


def generic_needles() -> dict[str, str]:
    """What no output may contain whoever's key it is: a private key header, plain or base64."""
    return {f"base64 of a private key header ({h[:12]}...)": h for h in _HEADERS_AS_BASE64}


def scan(text: str, needles: Mapping[str, str], *, where: str) -> list[Found]:
    """Every needle (and any PEM private key header) found in ``text``."""
    hits: list[Found] = []
    for label, needle in needles.items():
        at = text.find(needle)
        if needle and at != -1:
            hits.append(Found(label, where, text[max(0, at - 60) : at + len(needle) + 20]))
    for match in PRIVATE_KEY_HEADER.finditer(text):
        at = match.start()
        hits.append(Found("a PEM private key header", where, text[max(0, at - 60) : at + 60]))
    return hits


def scan_all(texts: Iterable[tuple[str, str]], needles: Mapping[str, str]) -> list[Found]:
    """``scan`` over ``(where, text)`` pairs."""
    return [hit for where, text in texts for hit in scan(text, needles, where=where)]
