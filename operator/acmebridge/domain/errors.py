"""The one error tree, and classify(): is a failure worth retrying as it is, or is the order dead.

Every layer raises these and nothing else crosses a layer boundary: the ACME adapter maps
acme/josepy/requests errors into ``AcmeProblem`` / ``AcmeUnavailable`` (chaining the original with
``raise ... from``), spec parsing raises ``SpecError``, the Secret writer ``SecretConflict``.

``classify`` answers the question the issuing step has to decide on:

* ``TEMPORARY``: the request was fine, the moment was not. Keep the ACME order and retry the same
  step after Retry-After or backoff (``rateLimited``, ``serverInternal``, ``badNonce``, an
  unreachable server).
* ``PERMANENT``: repeating the same request cannot succeed. The order is finished (RFC 8555
  §7.1.6: one invalid challenge makes its authorization and the order invalid); the certificate is
  marked failed and, after backoff, issuance starts again with a new order.

Challenge validation failures (``connection``, ``dns``, ``incorrectResponse``, ``tls``,
``unauthorized``, ``caa``) are PERMANENT even when their cause is passing, such as a DNS record
still propagating: the CA has already marked the authorization invalid, so nothing is gained by
keeping the order. They are also *user-fixable*: once routing, DNS or CAA is fixed, the next order
after backoff succeeds. ``is_user_fixable`` says whether the condition message should send the
user to their own configuration rather than to the operator's logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from enum import Enum

__all__ = [
    "ACME_ERROR_PREFIX",
    "AcmeProblem",
    "AcmeUnavailable",
    "AcmebridgeError",
    "DnsProblem",
    "SecretConflict",
    "Severity",
    "SpecError",
    "TLSTrustError",
    "classify",
    "is_user_fixable",
    "short_type",
]

ACME_ERROR_PREFIX = "urn:ietf:params:acme:error:"
# Pre-RFC ACME (draft-ietf-acme and Boulder's v1 API) used this namespace; some internal CAs still
# answer with it.
_LEGACY_PREFIX = "urn:acme:error:"


class AcmebridgeError(Exception):
    """Base of every error acmebridge raises on purpose."""


class SpecError(AcmebridgeError):
    """A resource's spec cannot be acted upon; ``message`` names the field and the fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class AcmeProblem(AcmebridgeError):
    """An RFC 8555 §6.7 problem document returned by the ACME server.

    ``type`` is the full URN; ``identifier`` is set on subproblems (RFC 8555 §6.7.1), which name
    the identifier they are about.
    """

    def __init__(
        self,
        type: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after: timedelta | None = None,
        subproblems: tuple[AcmeProblem, ...] = (),
        identifier: str | None = None,
    ) -> None:
        super().__init__(f"{type}: {detail}" if detail else type)
        self.type = type
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.subproblems = subproblems
        self.identifier = identifier


class AcmeUnavailable(AcmebridgeError):
    """The ACME server could not be reached or gave no ACME answer: connection, TLS, timeout."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TLSTrustError(AcmeUnavailable):
    """The ACME server's TLS certificate did not verify against the Issuer's caBundle."""


class SecretConflict(AcmebridgeError):
    """The target Secret exists and belongs to something else; it is left untouched."""

    reason = "SecretConflict"

    def __init__(self, secret_name: str, message: str) -> None:
        super().__init__(message)
        self.secret_name = secret_name
        self.message = message


class DnsProblem(AcmebridgeError):
    """A DNS server refused, failed or did not answer a DNS-01 update or lookup.

    ``server`` is the ``host:port`` asked; ``rcode`` its answer (``REFUSED``, ``NOTAUTH``...), or
    None when it did not answer at all; ``tsig_error`` the TSIG error it signalled (RFC 8945 §5.2:
    ``BADSIG``, ``BADKEY``, ``BADTIME``). ``severity`` says whether the same request may succeed
    later (a timeout, SERVFAIL) or not (a refusal); ``domain.dns01.rcode_severity`` decides it.
    ``short`` is the few words a propagation message shows per server.
    """

    def __init__(
        self,
        message: str,
        *,
        server: str,
        severity: Severity,
        rcode: str | None = None,
        tsig_error: str | None = None,
        short: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.server = server
        self.severity = severity
        self.rcode = rcode
        self.tsig_error = tsig_error
        tsig = f" ({tsig_error})" if tsig_error else ""
        self.short = short or (f"answered {rcode}{tsig}" if rcode else message)


class Severity(Enum):
    """Whether the same request may succeed later (TEMPORARY) or never will (PERMANENT)."""

    TEMPORARY = "Temporary"
    PERMANENT = "Permanent"


_T, _P = Severity.TEMPORARY, Severity.PERMANENT

# RFC 8555 §6.7 error types (plus the two registered since), with severity and user-fixability.
_KNOWN: Mapping[str, tuple[Severity, bool]] = {
    # The account URL is unknown to the server: the operator registers again; nothing for users.
    "accountDoesNotExist": (_P, False),
    # Only returned to revocation requests, which do not retry.
    "alreadyRevoked": (_P, False),
    # The CA refuses the CSR: names, key type or subject against its policy. Fix the spec.
    "badCSR": (_P, True),
    # Stale nonce: the very same request succeeds with a fresh one (RFC 8555 §6.5).
    "badNonce": (_T, False),
    # The CA does not accept this key (type or size): change privateKey, or the account key.
    "badPublicKey": (_P, True),
    "badRevocationReason": (_P, False),
    # The account key's JWS algorithm is not supported: provide another account key.
    "badSignatureAlgorithm": (_P, True),
    # CAA records forbid this CA: fix DNS.
    "caa": (_P, True),
    # Judged by its subproblems when the whole problem is available (see classify).
    "compound": (_P, True),
    # The CA could not reach the solver: Ingress, Service or network policy.
    "connection": (_P, True),
    # The CA could not resolve the name or find the TXT record.
    "dns": (_P, True),
    # The CA requires externalAccountBinding.
    "externalAccountRequired": (_P, True),
    # The solver answered, with the wrong content: usually another ingress serves the path.
    "incorrectResponse": (_P, True),
    "invalidContact": (_P, True),
    # The request itself is malformed: an acmebridge or CA defect, not the user's.
    "malformed": (_P, False),
    # Finalize raced authorization: fetch the order again and carry on.
    "orderNotReady": (_T, False),
    "rateLimited": (_T, False),
    # The CA will not issue for this name (policy, unknown zone): fix the names or the CA.
    "rejectedIdentifier": (_P, True),
    "serverInternal": (_T, False),
    # TLS-ALPN-01 handshake failed at the CA.
    "tls": (_P, True),
    # Authorization failed or the account lacks permission for the identifier.
    "unauthorized": (_P, True),
    "unsupportedContact": (_P, True),
    # For example IP identifiers (RFC 8738) on a CA that only issues for DNS names.
    "unsupportedIdentifier": (_P, True),
    # Terms of service changed or the CA wants a human: see the problem's instance URL.
    "userActionRequired": (_P, True),
    # RFC 9773 (ARI): the certificate named in `replaces` was already replaced. The next order is
    # sent without `replaces`; the operator handles it.
    "alreadyReplaced": (_P, False),
    # ACME profiles extension: the Issuer's spec.acme.profile is not offered by the directory.
    "invalidProfile": (_P, True),
}


def short_type(problem_type: str) -> str:
    """``urn:ietf:params:acme:error:rateLimited`` -> ``rateLimited``; other URNs unchanged."""
    for prefix in (ACME_ERROR_PREFIX, _LEGACY_PREFIX):
        if problem_type.startswith(prefix):
            return problem_type[len(prefix) :]
    return problem_type


def classify(problem: str | AcmebridgeError) -> Severity:
    """Decide TEMPORARY or PERMANENT for a problem type URN or an error instance. Pure.

    Unknown problem types are TEMPORARY unless an HTTP status says otherwise: a problem document
    (RFC 7807) carries the HTTP status next to its type, which is the best signal left for a type
    we do not know, and a 4xx other than 429 means the request itself was refused. With no
    status to go on, guessing "temporary" costs a few retries (which are backed off and capped),
    while guessing "permanent" would throw away an order that an internal CA with its own
    problem types might still have completed.
    """
    if isinstance(problem, str):
        known = _KNOWN.get(short_type(problem))
        return known[0] if known else _T
    if isinstance(problem, AcmeProblem):
        name = short_type(problem.type)
        if name == "compound" and problem.subproblems:
            return _T if all(classify(s) is _T for s in problem.subproblems) else _P
        known = _KNOWN.get(name)
        if known:
            return known[0]
        if problem.status is not None and 400 <= problem.status < 500 and problem.status != 429:
            return _P
        return _T
    if isinstance(problem, AcmeUnavailable):
        return _T
    if isinstance(problem, DnsProblem):
        return problem.severity
    # SpecError, SecretConflict: the same input fails the same way until someone changes it.
    return _P


def is_user_fixable(problem: str | AcmebridgeError) -> bool:
    """True when the remedy lies in the user's spec, DNS, routing or CA settings. Pure."""
    if isinstance(problem, str):
        known = _KNOWN.get(short_type(problem))
        return known[1] if known else False
    if isinstance(problem, AcmeProblem):
        if short_type(problem.type) == "compound" and problem.subproblems:
            return any(is_user_fixable(s) for s in problem.subproblems)
        return is_user_fixable(problem.type)
    if isinstance(problem, TLSTrustError):
        return True  # spec.acme.caBundle does not match the server's certificate
    if isinstance(problem, DnsProblem):
        return True  # the DNS server, its zone or the Issuer's rfc2136 settings: the user's
    # Otherwise unreachable servers are not; SpecError and SecretConflict are.
    return not isinstance(problem, AcmeUnavailable)
