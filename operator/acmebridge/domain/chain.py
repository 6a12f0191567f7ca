"""Certificate chains: parse PEM with limits, order a chain, and prove which root issued it.

Pure: the adapter fetches (the ACME chain, AIA ``caIssuers`` URLs) and this module decides.

Why limits: a chain arrives from a CA over the network, and bundles come from user-written
Issuer specs. cert-manager was made to spend minutes on crafted PEM (GHSA-r4pg-vg54-wxx4), so
here the input size and certificate count are bounded before any parsing, and PEM blocks are
found with ``bytes.find`` in one forward pass: no regular expression runs over attacker data.

Why proof for ``ca.crt``: cert-manager never fills ``ca.crt`` for ACME (issue #1571). A root is
written only when it is self-signed *and* its key verifiably signed the top of the served chain.
Matching by name alone would let an unrelated CA that happens to share a name (a test root, a
re-keyed CA, an attacker's bundle entry) be presented to clients as the trust anchor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID

MAX_PEM_BYTES = 1024 * 1024
"""Largest PEM input parsed (1 MiB): far above any real chain, far below a slow parse."""
MAX_CHAIN_CERTS = 10
"""Most certificates accepted in a served chain; real ones have two to four."""
MAX_BUNDLE_CERTS = 150
"""Most certificates accepted in a CA bundle (cert-manager's trust-bundle limit)."""
MAX_AIA_URLS = 4
"""Most ``caIssuers`` URLs returned for the adapter to fetch, so a certificate can't fan out."""

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"
_NAME_DISPLAY_LIMIT = 120

SOURCES = ("served-chain", "aia", "issuingCABundle", "caBundle")
"""Where a root candidate came from, most preferred first."""


def describe(name: x509.Name) -> str:
    """A distinguished name for messages: RFC 4514, quoted, shortened if very long."""
    text = name.rfc4514_string() or "<empty name>"
    if len(text) > _NAME_DISPLAY_LIMIT:
        text = text[: _NAME_DISPLAY_LIMIT - 1] + "…"
    return f"'{text}'"


def parse_pem_certificates(
    data: bytes, *, max_bytes: int = MAX_PEM_BYTES, max_certs: int = MAX_CHAIN_CERTS
) -> list[x509.Certificate]:
    """Every ``CERTIFICATE`` block in ``data``, in the order they appear.

    Text outside the blocks (OpenSSL's ``subject=`` lines, comments) and other block types are
    ignored. Raises ``ValueError`` when ``data`` exceeds ``max_bytes``, holds more than
    ``max_certs`` certificates, holds none, has a block without its END line, or a block that
    does not decode as an X.509 certificate. Runs in time linear in ``len(data)``: each marker
    search starts where the previous one ended, and the count is checked before parsing.
    """
    if len(data) > max_bytes:
        raise ValueError(f"PEM input is {len(data)} bytes; the limit is {max_bytes} bytes")
    certs: list[x509.Certificate] = []
    position = 0
    while (begin := data.find(_BEGIN, position)) != -1:
        body = begin + len(_BEGIN)
        end = data.find(_END, body)
        if end == -1:
            raise ValueError(f"malformed PEM: certificate {len(certs) + 1} has no END line")
        if data.find(_BEGIN, body, end) != -1:
            # Searched only between this BEGIN and its END, so the scan stays one pass.
            raise ValueError(
                f"malformed PEM: certificate {len(certs) + 1} has a BEGIN line inside it"
            )
        if len(certs) == max_certs:
            raise ValueError(f"PEM input holds more than {max_certs} certificates")
        position = end + len(_END)
        try:
            certs.append(x509.load_pem_x509_certificate(data[begin:position]))
        except ValueError as e:
            # The library's message can quote the input; ours says where the problem is.
            raise ValueError(
                f"malformed PEM: certificate {len(certs) + 1} is not a valid X.509 certificate"
            ) from e
    if not certs:
        raise ValueError("no PEM certificate found (expected '-----BEGIN CERTIFICATE-----')")
    return certs


def parse_aia_response(
    data: bytes, *, max_bytes: int = MAX_PEM_BYTES, max_certs: int = MAX_CHAIN_CERTS
) -> list[x509.Certificate]:
    """Certificates from a fetched ``caIssuers`` URL: DER, PEM, or PKCS#7 (DER or PEM).

    RFC 5280 4.2.2.1 allows a single DER certificate or a certs-only PKCS#7; servers also hand
    out PEM. Same limits and ``ValueError`` contract as :func:`parse_pem_certificates`.
    """
    if len(data) > max_bytes:
        raise ValueError(f"AIA response is {len(data)} bytes; the limit is {max_bytes} bytes")
    if _BEGIN in data:
        return parse_pem_certificates(data, max_bytes=max_bytes, max_certs=max_certs)
    certs: list[x509.Certificate]
    try:
        if b"-----BEGIN PKCS7-----" in data:
            certs = pkcs7.load_pem_pkcs7_certificates(data)
        else:
            try:
                certs = [x509.load_der_x509_certificate(data)]
            except ValueError:
                certs = pkcs7.load_der_pkcs7_certificates(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ValueError("AIA response is neither a certificate nor a PKCS#7 bundle") from e
    if not certs:
        raise ValueError("AIA response holds no certificate")
    if len(certs) > max_certs:
        raise ValueError(f"AIA response holds more than {max_certs} certificates")
    return certs


def encode_pem_certificates(certs: Sequence[x509.Certificate]) -> bytes:
    """The certificates as concatenated PEM, in the given order (``tls.crt``, ``ca.crt``)."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def verifies(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """Whether ``parent`` issued ``child``: issuer name matches and the signature verifies.

    Covers RSA PKCS#1 v1.5 and PSS, ECDSA and Ed25519. Any failure (other name, bad signature,
    unsupported or mismatched algorithm) is ``False``; nothing is raised.
    """
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    """Whether ``cert`` names itself as issuer and its own key verifies its signature."""
    return verifies(cert, cert)


def order_chain(
    certs: Sequence[x509.Certificate], *, max_certs: int = MAX_CHAIN_CERTS
) -> list[x509.Certificate]:
    """The certificates as one chain: leaf first, each next one the issuer of the previous.

    "Issuer" means name *and* signature (:func:`verifies`). Exact duplicates are dropped (some
    servers repeat an intermediate). Raises ``ValueError`` when the certificates do not form
    exactly one chain: a missing intermediate, an unrelated certificate, two candidate issuers
    for one certificate, or more than ``max_certs`` certificates (the check is quadratic, so
    it is bounded here too). Like cert-manager's ``ParseSingleCertificateChain``, and unlike a
    TLS client, it refuses extras rather than guess which certificates the CA meant.
    """
    unique: list[x509.Certificate] = []
    for cert in certs:
        if cert not in unique:
            unique.append(cert)
    if not unique:
        raise ValueError("no certificates to order")
    if len(unique) > max_certs:
        raise ValueError(f"chain holds {len(unique)} certificates; the limit is {max_certs}")
    count = len(unique)
    parents = [
        [j for j in range(count) if j != i and verifies(unique[i], unique[j])] for i in range(count)
    ]
    issuers = {j for found in parents for j in found}
    leaves = [i for i in range(count) if i not in issuers]
    if len(leaves) != 1:
        names = ", ".join(describe(unique[i].subject) for i in leaves) or "none"
        raise ValueError(
            "certificates do not form a single chain: expected one leaf (a certificate that "
            f"issued none of the others), found {names}; is an intermediate missing?"
        )
    ordered = [leaves[0]]
    while True:
        onward = [j for j in parents[ordered[-1]] if j not in ordered]
        if not onward:
            break
        if len(onward) > 1:
            names = " and ".join(describe(unique[j].subject) for j in onward)
            raise ValueError(
                f"ambiguous chain: both {names} issued {describe(unique[ordered[-1]].subject)}"
            )
        ordered.append(onward[0])
    if len(ordered) != count:
        left = ", ".join(describe(unique[i].subject) for i in range(count) if i not in ordered)
        raise ValueError(f"broken chain: {left} not on the path from the leaf to its issuers")
    return [unique[i] for i in ordered]


def without_self_signed_root(ordered: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """What ``tls.crt`` holds: the ordered chain minus a self-signed root at its top.

    A client must already trust the root to use it, so sending it in the handshake only costs
    bytes (RFC 8446 4.4.2 allows omitting it); the root goes to ``ca.crt`` instead, where a
    client can pick it up deliberately. cert-manager's CA issuer splits the same way. A
    self-signed leaf stays: it is the only certificate there is.
    """
    if len(ordered) > 1 and is_self_signed(ordered[-1]):
        return list(ordered[:-1])
    return list(ordered)


def aia_ca_issuers_urls(cert: x509.Certificate) -> list[str]:
    """``http``/``https`` URLs of the Authority Information Access ``caIssuers`` entries.

    These point at the issuer's certificate; the adapter fetches them (parse the answer with
    :func:`parse_aia_response`). LDAP and other schemes are left out: the operator does not
    speak them, and a certificate must not steer it at arbitrary protocols. At most
    :data:`MAX_AIA_URLS`, duplicates dropped; a missing or malformed extension gives ``[]``.
    """
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (
        x509.ExtensionNotFound,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
        ValueError,
    ):
        return []
    urls: list[str] = []
    for description in aia:
        location = description.access_location
        if (
            description.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(location, x509.UniformResourceIdentifier)
            and location.value.lower().startswith(("http://", "https://"))
            and location.value not in urls
        ):
            urls.append(location.value)
    return urls[:MAX_AIA_URLS]


@dataclass(frozen=True)
class RootCandidate:
    """A certificate that might be the root of a served chain, and where it came from.

    ``source`` is one of :data:`SOURCES`: ``served-chain`` (a self-signed certificate the CA
    served), ``aia`` (fetched from a ``caIssuers`` URL), ``issuingCABundle`` and ``caBundle``
    (the Issuer's bundles).
    """

    cert: x509.Certificate
    source: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown root source {self.source!r}; expected one of {SOURCES}")


@dataclass(frozen=True)
class RootResolution:
    """The outcome of :func:`resolve_root`: the proven root, or ``None`` and why not.

    ``reason`` is a sentence for a condition message or an Event.
    """

    root: x509.Certificate | None
    source: str | None
    reason: str


# Why a candidate was refused, in the words a user reads.
_NOT_ISSUER = "is a different CA"
_BAD_SIGNATURE = "has the issuer's name but its key did not sign the chain"
_NOT_SELF_SIGNED = "signed the chain but is not self-signed"


def _refusal(candidate: x509.Certificate, top: x509.Certificate) -> str | None:
    if candidate.subject != top.issuer:
        return _NOT_ISSUER
    if not verifies(top, candidate):
        return _BAD_SIGNATURE
    if not is_self_signed(candidate):
        return _NOT_SELF_SIGNED
    return None


def resolve_root(
    chain: Sequence[x509.Certificate], candidates: Sequence[RootCandidate]
) -> RootResolution:
    """The root for ``ca.crt``: a self-signed certificate whose key signed the chain's top.

    ``chain`` is ordered leaf first (:func:`order_chain`). When its top is itself self-signed,
    that is the root (source ``served-chain``). Otherwise candidates are tried by source
    preference (:data:`SOURCES`), then, within one source, the latest ``notAfter`` first (a
    re-issued root outlives the one it replaces), then in the given order. A candidate that
    only *names* the issuer is refused; so is one that signed the top but is itself signed by
    another CA (a cross-certificate: the real root is further up).

    Only a direct signer of the served chain's top qualifies, on purpose: a root further up
    would need intermediates that ``tls.crt`` does not carry, so clients given it as their
    trust anchor still could not verify the chain.
    """
    if not chain:
        raise ValueError("cannot resolve the root of an empty chain")
    top = chain[-1]
    if is_self_signed(top):
        return RootResolution(
            top,
            "served-chain",
            f"the served chain ends in the self-signed root {describe(top.subject)}",
        )
    order = sorted(
        range(len(candidates)),
        key=lambda i: (
            SOURCES.index(candidates[i].source),
            -candidates[i].cert.not_valid_after_utc.timestamp(),
            i,
        ),
    )
    refusals: dict[str, dict[str, int]] = {}
    for i in order:
        candidate = candidates[i]
        refusal = _refusal(candidate.cert, top)
        if refusal is None:
            return RootResolution(
                candidate.cert,
                candidate.source,
                f"root {describe(candidate.cert.subject)} from {candidate.source} "
                f"signed {describe(top.subject)}",
            )
        by_reason = refusals.setdefault(candidate.source, {})
        by_reason[refusal] = by_reason.get(refusal, 0) + 1
    missing = (
        f"no self-signed candidate signed {describe(top.subject)} "
        f"(issued by {describe(top.issuer)})"
    )
    if not candidates:
        return RootResolution(None, None, f"{missing}; there were no candidates to try")
    tried = "; ".join(
        f"{sum(by_reason.values())} from {source} ("
        + ", ".join(f"{n} {reason}" for reason, n in by_reason.items())
        + ")"
        for source, by_reason in refusals.items()
    )
    return RootResolution(None, None, f"{missing}; candidates tried: {tried}")
