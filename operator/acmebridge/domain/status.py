"""The Certificate's ``status``, typed: one place reads it from JSON and one writes it back.

Every field the operator keeps has a model here and a schema in ``crds/certificates.yaml`` (so
``kubectl explain certificate.status`` documents it). Reading is lenient: a malformed field
(hand-edited status, an older operator) reads as absent, which costs at most a recomputation or
one new order, never a wrong certificate. Writing is a JSON merge patch, built by
``StatusPatch``: a field set to None is removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

from acmebridge.domain.conditions import (
    Condition,
    get_condition,
    remove_condition,
    set_condition,
)
from acmebridge.domain.journal import OrderJournal
from acmebridge.domain.timefmt import format_time, parse_time


def _time(d: Mapping[str, Any], key: str) -> datetime | None:
    raw = d.get(key)
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return parse_time(raw)
    except ValueError:
        return None


def _int(d: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    raw = d.get(key)
    if isinstance(raw, bool) or not isinstance(raw, int):
        return default
    return raw


def _str(d: Mapping[str, Any], key: str) -> str | None:
    raw = d.get(key)
    return raw if isinstance(raw, str) and raw else None


def _section(d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    raw = d.get(key)
    return raw if isinstance(raw, Mapping) else {}


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    return value


class Section:
    """A status sub-object: dataclass fields map to the camelCase keys in ``KEYS``."""

    KEYS: ClassVar[Mapping[str, str]]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, key in self.KEYS.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = _json(value)
        return out

    def to_merge_patch(self) -> dict[str, Any]:
        """Every key, absent ones nulled, so nothing of an older value survives a merge."""
        return {**dict.fromkeys(self.KEYS.values()), **self.to_json()}


@dataclass(frozen=True)
class Issued(Section):
    """What the operator knows of the certificate in the Secret, from when it wrote it."""

    spec_hash: str | None = None
    serial: str | None = None
    #: where ca.crt came from (servedChain, aia, issuingCABundle, caBundle), None if omitted
    ca_source: str | None = None
    ca_omitted_reason: str | None = None
    #: the renewal jitter chosen once for this Certificate (seconds)
    jitter_seconds: int | None = None

    KEYS: ClassVar[Mapping[str, str]] = {
        "spec_hash": "specHash",
        "serial": "serial",
        "ca_source": "caSource",
        "ca_omitted_reason": "caOmittedReason",
        "jitter_seconds": "jitterSeconds",
    }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Issued:
        return cls(
            spec_hash=_str(d, "specHash"),
            serial=_str(d, "serial"),
            ca_source=_str(d, "caSource"),
            ca_omitted_reason=_str(d, "caOmittedReason"),
            jitter_seconds=_int(d, "jitterSeconds"),
        )


@dataclass(frozen=True)
class RenewalInfoRecord(Section):
    """ACME Renewal Information (RFC 9773) for the certificate in the Secret."""

    cert_id: str
    window_start: datetime
    window_end: datetime
    #: the time chosen once in the window (seeded, so every reconcile picks the same)
    selected_time: datetime
    #: when to ask the CA again
    recheck_at: datetime
    explanation_url: str | None = None
    #: consecutive renewals the CA forced on certificates younger than the storm guard's floor
    early_renewals: int = 0
    #: the CA's window was in the past for a young certificate: renewal held back to the floor
    guarded: bool | None = None

    KEYS: ClassVar[Mapping[str, str]] = {
        "cert_id": "certID",
        "window_start": "windowStart",
        "window_end": "windowEnd",
        "selected_time": "selectedTime",
        "recheck_at": "recheckAt",
        "explanation_url": "explanationURL",
        "early_renewals": "earlyRenewals",
        "guarded": "guarded",
    }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RenewalInfoRecord | None:
        times = [_time(d, k) for k in ("windowStart", "windowEnd", "selectedTime", "recheckAt")]
        cert_id = _str(d, "certID")
        if cert_id is None or any(t is None for t in times):
            return None
        start, end, selected, recheck = times
        assert start and end and selected and recheck
        return cls(
            cert_id=cert_id,
            window_start=start,
            window_end=end,
            selected_time=selected,
            recheck_at=recheck,
            explanation_url=_str(d, "explanationURL"),
            early_renewals=_int(d, "earlyRenewals", 0) or 0,
            guarded=True if d.get("guarded") is True else None,
        )


@dataclass(frozen=True)
class LastFailure(Section):
    """Why the last issuance attempt failed; cleared by a successful issuance."""

    #: a fixed vocabulary (``domain.failures``), also the failure metric's label
    reason: str
    message: str
    #: the spec that failed: backoff applies to it only, a changed spec retries at once
    spec_hash: str
    retry_after_seconds: int | None = None

    KEYS: ClassVar[Mapping[str, str]] = {
        "reason": "reason",
        "message": "message",
        "spec_hash": "specHash",
        "retry_after_seconds": "retryAfterSeconds",
    }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LastFailure | None:
        reason, message, spec_hash = _str(d, "reason"), _str(d, "message"), _str(d, "specHash")
        if reason is None or spec_hash is None:
            return None
        return cls(
            reason=reason,
            message=message or "",
            spec_hash=spec_hash,
            retry_after_seconds=_int(d, "retryAfterSeconds"),
        )


@dataclass(frozen=True)
class CertificateStatus:
    """``status`` of a Certificate as the operator reads it."""

    conditions: tuple[Mapping[str, Any], ...] = ()
    not_before: datetime | None = None
    not_after: datetime | None = None
    renewal_time: datetime | None = None
    revision: int = 0
    failed_issuance_attempts: int = 0
    last_failure_time: datetime | None = None
    last_failure: LastFailure | None = None
    issued: Issued = field(default_factory=Issued)
    renewal_info: RenewalInfoRecord | None = None
    #: when the current issuance began (None: no issuance in progress)
    issuing_since: datetime | None = None
    order: OrderJournal | None = None

    @classmethod
    def from_json(cls, status: Mapping[str, Any] | None) -> CertificateStatus:
        s = status if isinstance(status, Mapping) else {}
        conds = s.get("conditions")
        return cls(
            conditions=tuple(c for c in conds if isinstance(c, Mapping))
            if isinstance(conds, list)
            else (),
            not_before=_time(s, "notBefore"),
            not_after=_time(s, "notAfter"),
            renewal_time=_time(s, "renewalTime"),
            revision=_int(s, "revision", 0) or 0,
            failed_issuance_attempts=_int(s, "failedIssuanceAttempts", 0) or 0,
            last_failure_time=_time(s, "lastFailureTime"),
            last_failure=LastFailure.from_json(_section(s, "lastFailure")),
            issued=Issued.from_json(_section(s, "issued")),
            renewal_info=RenewalInfoRecord.from_json(_section(s, "renewalInfo")),
            issuing_since=_time(s, "issuingSince"),
            order=OrderJournal.from_status(s.get("order")),
        )

    def condition(self, type_: str) -> Condition | None:
        return get_condition(self.conditions, type_)


# status key -> CertificateStatus field, for the fields StatusPatch writes as plain values.
_PLAIN = {
    "notBefore": "not_before",
    "notAfter": "not_after",
    "renewalTime": "renewal_time",
    "revision": "revision",
    "failedIssuanceAttempts": "failed_issuance_attempts",
    "lastFailureTime": "last_failure_time",
    "issuingSince": "issuing_since",
}


@dataclass
class StatusPatch:
    """A JSON merge patch of ``status``, accumulated over one reconcile, applied to a base.

    ``current`` is the status as it will be once the patch is written, so later decisions in the
    same reconcile see their own earlier changes.
    """

    base: CertificateStatus
    generation: int
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def current(self) -> CertificateStatus:
        return self._current

    def __post_init__(self) -> None:
        self._current = self.base

    def set(self, **values: Any) -> None:
        """Plain fields by their dataclass name (None removes them)."""
        for name, value in values.items():
            key = next(k for k, v in _PLAIN.items() if v == name)
            self.body[key] = _json(value)
        self._current = replace(self._current, **values)

    def set_issued(self, issued: Issued) -> None:
        self.body["issued"] = issued.to_merge_patch()
        self._current = replace(self._current, issued=issued)

    def set_renewal_info(self, record: RenewalInfoRecord | None) -> None:
        self.body["renewalInfo"] = None if record is None else record.to_merge_patch()
        self._current = replace(self._current, renewal_info=record)

    def set_last_failure(self, failure: LastFailure | None) -> None:
        self.body["lastFailure"] = None if failure is None else failure.to_merge_patch()
        self._current = replace(self._current, last_failure=failure)

    def set_order(self, journal: OrderJournal | None) -> None:
        self.body["order"] = None if journal is None else journal.to_merge_patch()
        self._current = replace(self._current, order=journal)

    def condition(
        self, type_: str, status: str, reason: str, message: str, *, now: datetime
    ) -> None:
        cond = Condition(
            type=type_,
            status=status,  # type: ignore[arg-type]
            reason=reason,
            message=message,
            observed_generation=self.generation,
            last_transition_time=now,
        )
        conds = tuple(set_condition(self._current.conditions, cond))
        self.body["conditions"] = list(conds)
        self._current = replace(self._current, conditions=conds)

    def drop_condition(self, type_: str) -> None:
        conds = tuple(remove_condition(self._current.conditions, type_))
        self.body["conditions"] = list(conds)
        self._current = replace(self._current, conditions=conds)

    def changes(self, written: Mapping[str, Any]) -> bool:
        """Whether applying the patch to ``written`` (the stored status) changes anything."""
        return not _unchanged(written, self.body)

    def clear(self, written: CertificateStatus) -> None:
        """The patch was written: start again from the stored result."""
        self.base = written
        self._current = written
        self.body = {}


def _unchanged(status: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    for k, v in patch.items():
        old = status.get(k)
        if k == "conditions":
            if _strip_times(old or []) != _strip_times(v or []):
                return False
        elif isinstance(v, Mapping):
            if not isinstance(old, Mapping) or not _unchanged(old, v):
                return False
        elif v is None:
            if old is not None:
                return False
        elif old != v:
            return False
    return True


def _strip_times(conds: Any) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in conds
        if isinstance(c, Mapping)
    ]
