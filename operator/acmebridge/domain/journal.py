"""The ACME journal kept in ``status.order``, and the pure decision of the next order step.

The journal holds exactly what is needed to resume an issuance after a restart: the order URL,
the issuance it serves (spec hash and revision), and each authorization with its chosen challenge.
It never holds key material: the pending private key lives in a Secret found by name derived from
the Certificate's UID, and the operator checks its label and ownerReference before trusting it.

``next_step`` is purely computational: given the journal and the order's current state as read
from the ACME server, it says what to do; the reconciler performs it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from acmebridge.domain.timefmt import format_time, parse_time


@dataclass(frozen=True)
class ChallengeRecord:
    type: str
    url: str
    token: str
    state: str = "pending"
    solver_index: int | None = None
    presented: bool = False
    answered: bool = False
    error: str | None = None

    def to_status(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "url": self.url, "token": self.token}
        d["state"] = self.state
        if self.solver_index is not None:
            d["solverIndex"] = self.solver_index
        d["presented"] = self.presented
        d["answered"] = self.answered
        if self.error:
            d["error"] = self.error
        return d

    @classmethod
    def from_status(cls, d: Mapping[str, Any]) -> ChallengeRecord:
        idx = d.get("solverIndex")
        return cls(
            type=str(d.get("type", "")),
            url=str(d.get("url", "")),
            token=str(d.get("token", "")),
            state=str(d.get("state", "pending")),
            solver_index=int(idx) if isinstance(idx, int) else None,
            presented=bool(d.get("presented", False)),
            answered=bool(d.get("answered", False)),
            error=str(d["error"]) if d.get("error") else None,
        )


@dataclass(frozen=True)
class AuthorizationRecord:
    url: str
    identifier: str
    identifier_type: str = "dns"
    wildcard: bool = False
    state: str = "pending"
    challenge: ChallengeRecord | None = None

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
            state=str(d.get("state", "pending")),
            challenge=ChallengeRecord.from_status(ch) if isinstance(ch, Mapping) else None,
        )


_OPTIONAL_KEYS = ("finalizeURL", "certificateURL", "expires", "replaces", "profile", "error")


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
        if self.finalize_url:
            d["finalizeURL"] = self.finalize_url
        if self.certificate_url:
            d["certificateURL"] = self.certificate_url
        if self.expires:
            d["expires"] = format_time(self.expires)
        if self.replaces:
            d["replaces"] = self.replaces
        if self.profile:
            d["profile"] = self.profile
        if self.error:
            d["error"] = self.error
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
                state=str(d.get("state", "pending")),
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
                expires=parse_time(str(d["expires"])) if d.get("expires") else None,
                replaces=str(d["replaces"]) if d.get("replaces") else None,
                profile=str(d["profile"]) if d.get("profile") else None,
                error=str(d["error"]) if d.get("error") else None,
            )
        except (KeyError, ValueError, TypeError, OverflowError):  # int(inf): json.loads("1e999")
            return None

    def to_merge_patch(self) -> dict[str, Any]:
        """The whole journal for a JSON merge patch: absent optional keys are nulled, so nothing
        of a previous order survives in the merged object."""
        d = self.to_status()
        for k in _OPTIONAL_KEYS:
            d.setdefault(k, None)
        return d

    def with_authorization(self, authz: AuthorizationRecord) -> OrderJournal:
        auths = tuple(authz if a.url == authz.url else a for a in self.authorizations)
        return replace(self, authorizations=auths)


class Step(enum.Enum):
    """What the reconciler does next with an order."""

    NEW_ORDER = "new-order"  # no usable order: create one
    WORK_AUTHORIZATIONS = "authorizations"  # present / self-check / answer challenges
    FINALIZE = "finalize"  # order ready: send the CSR
    WAIT = "wait"  # the server is working (processing): look again later
    DOWNLOAD = "download"  # order valid: fetch the chain and write the Secret
    FAILED = "failed"  # order invalid: record the failure, clean up, back off


@dataclass(frozen=True)
class OrderView:
    """The order as the ACME server reports it now (gathered by the adapter)."""

    status: str
    expires: datetime | None = None
    certificate_url: str | None = None
    error: str | None = None
    authorization_states: Mapping[str, str] = field(default_factory=dict)


def journal_usable(
    journal: OrderJournal | None, *, spec_hash: str, account_uri: str, now: datetime
) -> bool:
    """Pure: may this journaled order be continued for the current spec and account?"""
    if journal is None:
        return False
    if journal.spec_hash != spec_hash or journal.account_uri != account_uri:
        return False
    if journal.state == "invalid":
        return False
    return not (journal.expires is not None and journal.expires <= now)


def next_step(view: OrderView | None, *, now: datetime) -> Step:
    """Pure: the next step for an order in the state the server reports."""
    if view is None:
        return Step.NEW_ORDER
    if view.expires is not None and view.expires <= now and view.status != "valid":
        return Step.NEW_ORDER
    if view.status == "pending":
        return Step.WORK_AUTHORIZATIONS
    if view.status == "ready":
        return Step.FINALIZE
    if view.status == "processing":
        return Step.WAIT
    if view.status == "valid":
        return Step.DOWNLOAD if view.certificate_url else Step.WAIT
    return Step.FAILED


def pick_challenge(types_offered: Sequence[str], *, prefer: Sequence[str]) -> str | None:
    """Pure: the first challenge type in ``prefer`` the server offers for an authorization."""
    for t in prefer:
        if t in types_offered:
            return t
    return None
