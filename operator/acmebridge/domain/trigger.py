"""Whether a Certificate needs a new certificate now, and why: a chain of pure checks.

Modelled on cert-manager's trigger policies: each check looks at the gathered inputs and returns a
``Verdict`` (a reason constant users see in the ``Issuing`` condition, and a message) or None; the
first verdict wins. Nothing here reads the clock or the cluster: ``now`` and the Secret's parsed
contents come in as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from acmebridge.domain.reasons import Reason


@dataclass(frozen=True)
class Verdict:
    reason: str
    message: str


@dataclass(frozen=True)
class SecretState:
    """What the reconciler learnt from the TLS Secret (parsed; never the key itself)."""

    exists: bool
    has_cert: bool = False
    has_key: bool = False
    cert_error: str | None = None  # unparseable tls.crt
    key_error: str | None = None  # unparseable tls.key
    key_matches_cert: bool = False
    key_matches_spec: bool = False
    names_mismatch: str | None = None  # cert_mismatch() message
    not_after: datetime | None = None
    issuer_annotation_matches: bool = True


@dataclass(frozen=True)
class TriggerInputs:
    secret: SecretState
    spec_hash: str
    issued_spec_hash: str | None  # from status, set when the current Secret was written
    renewal_time: datetime | None
    manual_trigger: bool  # Issuing=True with reason ManuallyTriggered (acmebridge renew)


Check = Callable[[TriggerInputs, datetime], Verdict | None]


def _does_not_exist(i: TriggerInputs, now: datetime) -> Verdict | None:
    if not i.secret.exists:
        return Verdict(Reason.DOES_NOT_EXIST, "Issuing certificate as Secret does not exist")
    return None


def _missing_data(i: TriggerInputs, now: datetime) -> Verdict | None:
    if not i.secret.has_cert or not i.secret.has_key:
        return Verdict(
            Reason.MISSING_DATA,
            "Issuing certificate as Secret does not contain a certificate and key",
        )
    return None


def _invalid(i: TriggerInputs, now: datetime) -> Verdict | None:
    if i.secret.cert_error:
        return Verdict(Reason.INVALID_CERTIFICATE, f"Issuing certificate as {i.secret.cert_error}")
    if i.secret.key_error:
        return Verdict(Reason.INVALID_KEY_PAIR, f"Issuing certificate as {i.secret.key_error}")
    if not i.secret.key_matches_cert:
        return Verdict(
            Reason.INVALID_KEY_PAIR,
            "Issuing certificate as Secret's private key does not match its certificate",
        )
    return None


def _names(i: TriggerInputs, now: datetime) -> Verdict | None:
    if i.secret.names_mismatch:
        return Verdict(Reason.SECRET_MISMATCH, f"Issuing certificate as {i.secret.names_mismatch}")
    return None


def _key_spec(i: TriggerInputs, now: datetime) -> Verdict | None:
    if not i.secret.key_matches_spec:
        return Verdict(
            Reason.SECRET_MISMATCH,
            "Issuing certificate as the private key's algorithm or size differs from spec",
        )
    return None


def _issuer(i: TriggerInputs, now: datetime) -> Verdict | None:
    if not i.secret.issuer_annotation_matches:
        return Verdict(
            Reason.INCORRECT_ISSUER, "Issuing certificate as Secret was issued by another issuer"
        )
    return None


def _spec_changed(i: TriggerInputs, now: datetime) -> Verdict | None:
    if i.issued_spec_hash is not None and i.issued_spec_hash != i.spec_hash:
        return Verdict(
            Reason.SPEC_CHANGED,
            "Issuing certificate as the Certificate's spec changed since issuance",
        )
    return None


def _expired(i: TriggerInputs, now: datetime) -> Verdict | None:
    if i.secret.not_after is not None and i.secret.not_after <= now:
        return Verdict(Reason.EXPIRED, f"Issuing certificate as it expired at {i.secret.not_after}")
    return None


def _renewal_due(i: TriggerInputs, now: datetime) -> Verdict | None:
    if i.renewal_time is not None and i.renewal_time <= now:
        return Verdict(
            Reason.RENEWING,
            "Renewing certificate as renewal was scheduled at "
            f"{i.renewal_time.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        )
    return None


def _manual(i: TriggerInputs, now: datetime) -> Verdict | None:
    if i.manual_trigger:
        return Verdict(Reason.MANUALLY_TRIGGERED, "Certificate re-issuance manually triggered")
    return None


CHECKS: Sequence[Check] = (
    _does_not_exist,
    _missing_data,
    _invalid,
    _names,
    _key_spec,
    _issuer,
    _spec_changed,
    _manual,
    _expired,
    _renewal_due,
)


def evaluate(inputs: TriggerInputs, *, now: datetime) -> Verdict | None:
    """Pure: the first reason to issue, or None when the Secret is fine as it is."""
    for check in CHECKS:
        verdict = check(inputs, now)
        if verdict is not None:
            return verdict
    return None
