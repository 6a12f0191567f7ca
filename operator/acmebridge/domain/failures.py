"""Why an issuance attempt failed, in a fixed vocabulary, and in the CA's own words. Pure.

The vocabulary is the ``reason`` of ``status.lastFailure`` and the label of the failure metric:
RFC 8555's problem short names when the CA refused (``unauthorized``, ``connection``, ``dns``,
``rejectedIdentifier``, ``badCSR``...), a few of the operator's own (``invalidSpec``,
``noSolver``...), ``unspecified`` when the CA marked something invalid without saying why, and
``problem`` for a problem type outside RFC 8555. It is closed, so dashboards can enumerate it
and a CA cannot grow the metric's cardinality.

The message never invents a reason: when an authorization turned invalid and its challenge
carries no error (RFC 8555 allows that), it says the CA gave no reason and shows the validation
record the CA did give (the URL it fetched, the address it used, the HTTP status).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acmebridge.domain.errors import short_type

ACME_PROBLEMS = frozenset(
    {
        "accountDoesNotExist",
        "alreadyReplaced",
        "alreadyRevoked",
        "badCSR",
        "badNonce",
        "badPublicKey",
        "badRevocationReason",
        "badSignatureAlgorithm",
        "caa",
        "compound",
        "connection",
        "dns",
        "externalAccountRequired",
        "incorrectResponse",
        "invalidContact",
        "invalidProfile",
        "malformed",
        "orderNotReady",
        "rateLimited",
        "rejectedIdentifier",
        "serverInternal",
        "tls",
        "unauthorized",
        "unsupportedContact",
        "unsupportedIdentifier",
        "userActionRequired",
    }
)
#: a problem type outside RFC 8555 and its registered extensions
OTHER_PROBLEM = "problem"
#: the CA marked an authorization or order invalid without a problem document
UNSPECIFIED = "unspecified"
#: the ACME server could not be reached or gave no ACME answer
UNAVAILABLE = "unavailable"
#: the operator's own reasons (a spec or a cluster object is in the way)
OWN_REASONS = frozenset(
    {
        "invalidSpec",
        "noSolver",
        "nameNotValidatable",
        "solverNotSupported",
        "pendingKeyConflict",
        "secretConflict",
        "dnsUpdate",
    }
)
VOCABULARY = frozenset({*ACME_PROBLEMS, OTHER_PROBLEM, UNSPECIFIED, UNAVAILABLE, *OWN_REASONS})


def problem_reason(problem_type: str | None) -> str:
    """The vocabulary word for an ACME problem type (None: the CA gave none)."""
    if not problem_type:
        return UNSPECIFIED
    name = short_type(problem_type)
    return name if name in ACME_PROBLEMS else OTHER_PROBLEM


def own_reason(condition_reason: str) -> str:
    """The vocabulary word for one of the operator's condition reasons (``NoSolver`` ->
    ``noSolver``); anything unknown is ``invalidSpec``, the usual cause."""
    word = condition_reason[:1].lower() + condition_reason[1:]
    return word if word in OWN_REASONS else "invalidSpec"


@dataclass(frozen=True)
class ChallengeOutcome:
    """What the CA said about one failed authorization (gathered by the adapter)."""

    identifier: str
    authorization_state: str
    challenge_type: str | None = None
    error_type: str | None = None
    error_detail: str | None = None
    #: the challenge's validation record as the CA sent it (Boulder and Pebble send one)
    validation_record: tuple[Mapping[str, Any], ...] = ()


def _record_text(record: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for entry in record[:3]:
        bits = []
        for key, label in (
            ("url", "fetched"),
            ("hostname", "host"),
            ("port", "port"),
            ("addressUsed", "address"),
        ):
            value = entry.get(key)
            if value not in (None, ""):
                bits.append(f"{label} {value}")
        for key in ("httpStatus", "statusCode", "status"):
            if isinstance(entry.get(key), int):
                bits.append(f"HTTP status {entry[key]}")
                break
        resolved = entry.get("addressesResolved")
        if isinstance(resolved, list) and resolved:
            bits.append("resolved to " + ", ".join(str(a) for a in resolved[:4]))
        if bits:
            parts.append(", ".join(bits))
    return "; ".join(parts)


def describe_invalid(outcome: ChallengeOutcome) -> tuple[str, str]:
    """Pure: (reason word, message) for an authorization the CA marked invalid."""
    what = f"{outcome.challenge_type} challenge" if outcome.challenge_type else "authorization"
    if outcome.error_type or outcome.error_detail:
        reason = problem_reason(outcome.error_type)
        detail = outcome.error_detail or "(no detail)"
        kind = f" ({outcome.error_type})" if outcome.error_type else ""
        message = f"{what} for {outcome.identifier} failed: {detail}{kind}"
    else:
        reason = UNSPECIFIED
        message = (
            f"the CA marked the {what} for {outcome.identifier} "
            f"{outcome.authorization_state} and gave no reason"
        )
    record = _record_text(outcome.validation_record)
    if record:
        message += f"; the CA's validation record: {record}"
    return reason, message
