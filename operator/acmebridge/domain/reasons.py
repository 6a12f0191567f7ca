"""Every condition reason, condition type and ACME state name the operator uses, defined once.

Users filter Events and alert on condition reasons, so these strings are an API: a rename is a
breaking change and goes in the changelog. Reasons shared with cert-manager keep its spelling
(``DoesNotExist``, ``IssuerNotReady``, ``ManuallyTriggered``...), so that dashboards carry over.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    READY = "Ready"
    ISSUING = "Issuing"


class Reason(StrEnum):
    """Reasons of the Certificate's ``Ready`` and ``Issuing`` conditions and their Events."""

    # Ready=True
    READY = "Ready"
    RENEWAL_INFO_IN_PAST = "RenewalInfoInPast"
    # Why an issuance cannot start (Ready=False)
    INVALID_SPEC = "InvalidSpec"
    ISSUER_NOT_FOUND = "IssuerNotFound"
    ISSUER_NOT_READY = "IssuerNotReady"
    SECRET_CONFLICT = "SecretConflict"
    ACME_SERVER_UNAVAILABLE = "ACMEServerUnavailable"
    # Why an issuance starts (the trigger's verdicts, cert-manager's words; Issuing=True)
    DOES_NOT_EXIST = "DoesNotExist"
    MISSING_DATA = "MissingData"
    INVALID_CERTIFICATE = "InvalidCertificate"
    INVALID_KEY_PAIR = "InvalidKeyPair"
    SECRET_MISMATCH = "SecretMismatch"
    INCORRECT_ISSUER = "IncorrectIssuer"
    SPEC_CHANGED = "SpecChanged"
    EXPIRED = "Expired"
    RENEWING = "Renewing"
    #: set by `acmebridge renew` on the Issuing condition; the trigger looks for it
    MANUALLY_TRIGGERED = "ManuallyTriggered"
    # An issuance in progress (Issuing=True, and Ready=False while there is no usable Secret)
    ISSUING = "Issuing"
    WAITING_FOR_SELF_CHECK = "WaitingForSelfCheck"
    VALIDATING = "Validating"
    FINALIZING = "Finalizing"
    # An attempt that failed (Issuing=False; Ready=False without a usable Secret)
    FAILED = "Failed"
    NO_SOLVER = "NoSolver"
    #: a cluster-internal name, which no ACME challenge can prove (domain.validatable)
    NAME_NOT_VALIDATABLE = "NameNotValidatable"
    SOLVER_NOT_SUPPORTED = "SolverNotSupported"
    PENDING_KEY_CONFLICT = "PendingKeyConflict"


class EventReason(StrEnum):
    """Event reasons that are not also condition reasons."""

    ORDER_CREATED = "OrderCreated"
    ISSUED = "Issued"
    RENEWED = "Renewed"
    CA_UNKNOWN = "CAUnknown"


# Reasons that say "nothing can start until the user (or the issuer) changes something": once
# they no longer hold, a stale one must not stay on Ready.
GATE_REASONS = frozenset(
    {
        Reason.INVALID_SPEC,
        Reason.ISSUER_NOT_FOUND,
        Reason.ISSUER_NOT_READY,
        Reason.SECRET_CONFLICT,
        Reason.ACME_SERVER_UNAVAILABLE,
    }
)


class OrderState(StrEnum):
    """RFC 8555 §7.1.6 order states."""

    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class AuthzState(StrEnum):
    """RFC 8555 §7.1.6 authorization and challenge states."""

    PENDING = "pending"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


# An authorization in one of these states can never become valid (RFC 8555 §7.1.6).
DEAD_AUTHZ_STATES = frozenset(
    {AuthzState.INVALID, AuthzState.DEACTIVATED, AuthzState.EXPIRED, AuthzState.REVOKED}
)
