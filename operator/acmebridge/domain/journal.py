"""The ACME journal kept in ``status.order``: enough to resume an issuance after a restart.

The journal holds the order URL, the issuance it serves (spec hash, revision, account) and, per
authorization, the chosen challenge with when it was presented and answered and what the
operator created to present it. It is written right after each ACME write (newOrder, a
challenge answer) so that a restart resumes the same order instead of making another. It never
holds key material: the pending private key lives in a Secret whose name derives from the
Certificate's UID, and the operator checks that Secret's label and ownerReference before use.

Everything here is pure data with one JSON mapping each way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from acmebridge.domain.reasons import DEAD_AUTHZ_STATES, AuthzState, OrderState
from acmebridge.domain.timefmt import format_time, parse_time


def _time(d: Mapping[str, Any], key: str) -> datetime | None:
    raw = d.get(key)
    return parse_time(str(raw)) if raw else None


def _put(d: dict[str, Any], key: str, value: Any) -> None:
    if value is None or value == "":
        return
    d[key] = format_time(value) if isinstance(value, datetime) else value


@dataclass(frozen=True)
class ChallengeRecord:
    """The challenge chosen for one authorization, and what was done with it."""

    type: str
    url: str
    token: str
    state: str = AuthzState.PENDING
    solver_index: int | None = None
    presented_at: datetime | None = None
    answered_at: datetime | None = None
    #: UID of the HTTP-01 solver Pod (its Service and Ingress are owned by it)
    solver_uid: str | None = None
    #: DNS-01: where the TXT value was added (the name after following a CNAME, its zone, the
    #: update server) and the value itself (public: it is in DNS), so that exactly it is removed
    record_name: str | None = None
    record_zone: str | None = None
    record_server: str | None = None
    record_value: str | None = None
    error: str | None = None

    @property
    def presented(self) -> bool:
        return self.presented_at is not None

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    def to_status(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "url": self.url, "token": self.token}
        d["state"] = self.state
        _put(d, "solverIndex", self.solver_index)
        _put(d, "presentedAt", self.presented_at)
        _put(d, "answeredAt", self.answered_at)
        _put(d, "solverUID", self.solver_uid)
        _put(d, "recordName", self.record_name)
        _put(d, "recordZone", self.record_zone)
        _put(d, "recordServer", self.record_server)
        _put(d, "recordValue", self.record_value)
        _put(d, "error", self.error)
        return d

    @classmethod
    def from_status(cls, d: Mapping[str, Any]) -> ChallengeRecord:
        idx = d.get("solverIndex")
        return cls(
            type=str(d.get("type", "")),
            url=str(d.get("url", "")),
            token=str(d.get("token", "")),
            state=str(d.get("state", AuthzState.PENDING)),
            solver_index=idx if isinstance(idx, int) and not isinstance(idx, bool) else None,
            presented_at=_time(d, "presentedAt"),
            answered_at=_time(d, "answeredAt"),
            solver_uid=str(d["solverUID"]) if d.get("solverUID") else None,
            record_name=str(d["recordName"]) if d.get("recordName") else None,
            record_zone=str(d["recordZone"]) if d.get("recordZone") else None,
            record_server=str(d["recordServer"]) if d.get("recordServer") else None,
            record_value=str(d["recordValue"]) if d.get("recordValue") else None,
            error=str(d["error"]) if d.get("error") else None,
        )


@dataclass(frozen=True)
class AuthorizationRecord:
    url: str
    identifier: str
    identifier_type: str = "dns"
    wildcard: bool = False
    state: str = AuthzState.PENDING
    challenge: ChallengeRecord | None = None

    @property
    def dead(self) -> bool:
        return self.state in DEAD_AUTHZ_STATES

    def to_status(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "url": self.url,
            "identifier": self.identifier,
            "identifierType": self.identifier_type,
            "state": self.state,
        }
        if self.wildcard:
            d["wildcard"] = True
        if self.challenge is not None:
            d["challenge"] = self.challenge.to_status()
        return d

    @classmethod
    def from_status(cls, d: Mapping[str, Any]) -> AuthorizationRecord:
        ch = d.get("challenge")
        return cls(
            url=str(d.get("url", "")),
            identifier=str(d.get("identifier", "")),
            identifier_type=str(d.get("identifierType", "dns")),
            wildcard=bool(d.get("wildcard", False)),
            state=str(d.get("state", AuthzState.PENDING)),
            challenge=ChallengeRecord.from_status(ch) if isinstance(ch, Mapping) else None,
        )


# Keys a merge patch must null when absent, so that nothing of a previous order survives.
_OPTIONAL_KEYS = (
    "finalizeURL",
    "certificateURL",
    "expires",
    "replaces",
    "profile",
    "error",
    "pendingKeyUID",
    "finalizedAt",
)


@dataclass(frozen=True)
class OrderJournal:
    url: str
    state: str
    spec_hash: str
    revision: int
    account_uri: str
    created: datetime
    authorizations: tuple[AuthorizationRecord, ...] = ()
    finalize_url: str = ""
    certificate_url: str = ""
    expires: datetime | None = None
    replaces: str | None = None
    profile: str | None = None
    error: str | None = None
    #: UID of the pending-key Secret, for a delete that cannot hit a look-alike
    pending_key_uid: str | None = None
    finalized_at: datetime | None = None

    @property
    def answered_at(self) -> datetime | None:
        """When the first challenge of this order was answered (None: none yet)."""
        times = [
            a.challenge.answered_at
            for a in self.authorizations
            if a.challenge is not None and a.challenge.answered_at is not None
        ]
        return min(times) if times else None

    @property
    def finished(self) -> bool:
        """The order can no longer produce a certificate for this journal."""
        return self.state == OrderState.INVALID

    def to_status(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "url": self.url,
            "state": self.state,
            "specHash": self.spec_hash,
            "revision": self.revision,
            "accountURI": self.account_uri,
            "created": format_time(self.created),
            "authorizations": [a.to_status() for a in self.authorizations],
        }
        _put(d, "finalizeURL", self.finalize_url)
        _put(d, "certificateURL", self.certificate_url)
        _put(d, "expires", self.expires)
        _put(d, "replaces", self.replaces)
        _put(d, "profile", self.profile)
        _put(d, "error", self.error)
        _put(d, "pendingKeyUID", self.pending_key_uid)
        _put(d, "finalizedAt", self.finalized_at)
        return d

    @classmethod
    def from_status(cls, d: Mapping[str, Any] | None) -> OrderJournal | None:
        """The journal from status, or None when there is none or it is unreadable.

        An unreadable journal (hand-edited status, an older operator) is dropped rather than
        trusted: the cost is one new order, never a wrong certificate.
        """
        if not isinstance(d, Mapping) or not d.get("url"):
            return None
        try:
            return cls(
                url=str(d["url"]),
                state=str(d.get("state", OrderState.PENDING)),
                spec_hash=str(d.get("specHash", "")),
                revision=int(d.get("revision", 0)),
                account_uri=str(d.get("accountURI", "")),
                created=parse_time(str(d["created"])),
                authorizations=tuple(
                    AuthorizationRecord.from_status(a)
                    for a in d.get("authorizations", []) or []
                    if isinstance(a, Mapping)
                ),
                finalize_url=str(d.get("finalizeURL", "")),
                certificate_url=str(d.get("certificateURL", "")),
                expires=_time(d, "expires"),
                replaces=str(d["replaces"]) if d.get("replaces") else None,
                profile=str(d["profile"]) if d.get("profile") else None,
                error=str(d["error"]) if d.get("error") else None,
                pending_key_uid=str(d["pendingKeyUID"]) if d.get("pendingKeyUID") else None,
                finalized_at=_time(d, "finalizedAt"),
            )
        except (KeyError, ValueError, TypeError, OverflowError):  # int(inf): json.loads("1e999")
            return None

    def to_merge_patch(self) -> dict[str, Any]:
        """The whole journal for a JSON merge patch: absent optional keys are nulled."""
        d = self.to_status()
        for k in _OPTIONAL_KEYS:
            d.setdefault(k, None)
        return d

    def with_authorization(self, authz: AuthorizationRecord) -> OrderJournal:
        auths = tuple(authz if a.url == authz.url else a for a in self.authorizations)
        return replace(self, authorizations=auths)

    def authorization(self, url: str) -> AuthorizationRecord:
        for a in self.authorizations:
            if a.url == url:
                return a
        raise KeyError(url)


def journal_usable(
    journal: OrderJournal | None, *, spec_hash: str, account_uri: str, now: datetime
) -> bool:
    """Pure: is this journaled order the current spec's and account's, and not expired?

    An order the CA made invalid is still "usable" here: it must be explained and counted as a
    failed attempt (with backoff) before it is dropped, never silently replaced by a new order.
    """
    if journal is None:
        return False
    if journal.spec_hash != spec_hash or journal.account_uri != account_uri:
        return False
    expired = journal.expires is not None and journal.expires <= now
    return not (expired and journal.state not in (OrderState.VALID, OrderState.INVALID))
