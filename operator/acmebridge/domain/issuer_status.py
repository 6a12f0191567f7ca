"""What an Issuer's ``status`` says: Ready with a reason, and what its ACME server offers. Pure.

The reconciler reports how registering the account went as an ``AccountOutcome``; this module
turns it into the Ready condition users read (with what to check, for refusals that CAs word
badly), the ``status.acme`` block, and whether that is news worth a write and an Event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from acmebridge.domain.conditions import Condition
from acmebridge.domain.errors import short_type
from acmebridge.domain.reasons import Reason

Kind = Literal["registered", "account", "tls", "unavailable", "refused"]


@dataclass(frozen=True)
class AccountOutcome:
    """How registering the Issuer's account went."""

    kind: Kind
    #: for "account": the AccountError's reason; for "refused": the ACME problem type
    reason: str = ""
    message: str = ""
    server: str = ""


def ready_condition(
    outcome: AccountOutcome, spec: Mapping[str, Any], *, generation: int, now: Any
) -> Condition:
    """Pure: the Issuer's Ready condition for ``outcome`` (``spec`` is its raw spec)."""
    status, reason, message = "False", outcome.reason, outcome.message
    if outcome.kind == "registered":
        status, reason = "True", "ACMEAccountRegistered"
        message = f"The ACME account is registered with {outcome.server}"
    elif outcome.kind == "tls":
        reason = "TLSError"
    elif outcome.kind == "unavailable":
        reason = Reason.ACME_SERVER_UNAVAILABLE
        message = f"{outcome.server}: {outcome.message}"
    elif outcome.kind == "refused":
        reason = "ErrRegisterACMEAccount"
        if short_type(outcome.reason) == "externalAccountRequired":
            reason = "ExternalAccountRequired"
        message = (
            f"the ACME server refused the account: {outcome.message} ({outcome.reason})"
            + binding_hint(spec, reason)
        )
    return Condition(
        type="Ready",
        status=status,  # type: ignore[arg-type]
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=now,
    )


def binding_hint(spec: Mapping[str, Any], reason: str) -> str:
    """What to check about external account binding when the server refused the account.

    CAs word a refused binding very differently (step-ca answers a wrong MAC key with a bare
    "internal error"), so the condition names the binding that was sent and where its key lives.
    """
    eab = (spec.get("acme") or {}).get("externalAccountBinding")
    if not isinstance(eab, Mapping):
        if reason == "ExternalAccountRequired":
            return (
                "; set spec.acme.externalAccountBinding to the key ID and MAC key the CA "
                "issued for this account"
            )
        return ""
    ref = eab.get("keySecretRef") or {}
    return (
        f"; the account was sent with externalAccountBinding keyID '{eab.get('keyID')}': check "
        f"that the CA issued this key ID, that Secret '{ref.get('name')}' key "
        f"'{ref.get('key')}' holds its MAC key as the CA gave it, and that no other account "
        "used the key before (step-ca, for one, accepts each key once)"
    )


def prune(d: Mapping[str, Any]) -> dict[str, Any]:
    """The status as the API server stores it: keys with null values dropped (merge patch)."""
    return {k: prune(v) if isinstance(v, Mapping) else v for k, v in d.items() if v is not None}


def is_news(
    previous: Condition | None,
    new: Condition,
    *,
    stored_acme: Any,
    acme_status: Mapping[str, Any] | None,
) -> bool:
    """Pure: whether the condition or the server's offer changed (worth a write and an Event)."""
    return (
        previous is None
        or previous.status != new.status
        or previous.reason != new.reason
        or previous.message != new.message
        or previous.observed_generation != new.observed_generation
        or (acme_status is not None and stored_acme != prune(acme_status))
    )
