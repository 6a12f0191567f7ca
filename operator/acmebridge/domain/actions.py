"""The steps a Certificate reconcile can take, as ``domain.plan`` decides them.

Each action is plain data. ``Terminal`` actions end the reconcile and say when to look again;
the others are one IO step each (an ACME request, a Kubernetes write, a self check), after which
the reconciler gathers what changed and asks the plan again. None of them carries key material.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from acmebridge.domain.journal import AuthorizationRecord, OrderJournal
from acmebridge.domain.match import CertSummary
from acmebridge.domain.status import Issued, RenewalInfoRecord


class Action:
    """One step of a Certificate reconcile."""


class Terminal(Action):
    """Ends the reconcile."""


# --- terminal ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotReady(Terminal):
    """Nothing can start until something outside changes: Ready=False with a reason to act on."""

    reason: str
    message: str
    #: seconds until looking again by itself (None: wait for a change)
    retry: float | None


@dataclass(frozen=True)
class WaitForServer(Terminal):
    """The issuer's ACME server is down: wait for its probe, count no failure."""

    message: str


@dataclass(frozen=True)
class BackOff(Terminal):
    """An earlier attempt of this spec failed: wait until ``retry_at``."""

    retry_at: datetime
    message: str


@dataclass(frozen=True)
class Settle(Terminal):
    """Nothing to issue: Ready=True, the renewal schedule written, a wake at the next check."""

    leaf: CertSummary
    spec_hash: str
    renew_at: datetime
    jitter: timedelta
    renewal_info: RenewalInfoRecord | None
    #: the storm guard's message when it held renewal back (Ready reason RenewalInfoInPast)
    guard_message: str | None
    wake: float


@dataclass(frozen=True)
class Wait(Terminal):
    """An issuance waits on something outside (a solver, the CA): look again after ``delay``.

    ``visible`` says whether the wait has lasted long enough to be written to the Issuing
    condition; short waits are not worth a status write each.
    """

    delay: float
    reason: str
    message: str
    visible: bool


@dataclass(frozen=True)
class Fail(Terminal):
    """The attempt failed: count it, say why, back off (and drop the order if it is dead)."""

    #: the closed vocabulary of ``domain.failures``
    reason: str
    #: the condition reason shown on Ready (when there is no usable Secret)
    condition_reason: str
    message: str
    permanent: bool
    retry_after: timedelta | None = None


@dataclass(frozen=True)
class Finish(Terminal):
    """The new certificate is in the Secret: Ready=True, schedule, Events, metrics."""

    leaf: CertSummary
    issued: Issued
    renew_at: datetime
    renewal_info: RenewalInfoRecord | None
    guard_message: str | None
    wake: float
    renewing: bool


# --- steps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchRenewalInfo(Action):
    """Ask the CA for the renewal window of the certificate ``cert_id`` (RFC 9773)."""

    cert_id: str


@dataclass(frozen=True)
class DropOrder(Action):
    """Remove what an unusable journaled order presented, and forget the order."""

    journal: OrderJournal
    why: str


@dataclass(frozen=True)
class EnsureKey(Action):
    """Create the pending private key's Secret, or load it if it exists."""


@dataclass(frozen=True)
class RecoverOrder(Action):
    """A key Secret exists but no journal: an order may have been created just before a crash.
    Look for it among the account's orders before creating another."""


@dataclass(frozen=True)
class NewOrder(Action):
    reason: str
    message: str
    #: RFC 9773 ``replaces``: the ARI identifier of the certificate being renewed
    replaces: str | None


@dataclass(frozen=True)
class FetchAuthorization(Action):
    url: str


@dataclass(frozen=True)
class RecordAuthorization(Action):
    """Write what is now known of an authorization into the journal (no IO)."""

    authorization: AuthorizationRecord


@dataclass(frozen=True)
class Present(Action):
    """Create the solver (HTTP-01 Pod, Service, Ingress) for one authorization."""

    url: str


@dataclass(frozen=True)
class SelfCheck(Action):
    """Fetch the challenge response the way the CA will; ``inspect`` also looks at the solver."""

    url: str
    inspect: bool


@dataclass(frozen=True)
class Answer(Action):
    """Tell the CA the challenge is ready (RFC 8555 §7.5.1)."""

    url: str


@dataclass(frozen=True)
class FetchOrder(Action):
    """Read the order's state from the CA (only once a challenge was answered)."""


@dataclass(frozen=True)
class ExplainFailure(Action):
    """The order is invalid: read its authorizations to report what the CA said."""


@dataclass(frozen=True)
class Finalize(Action):
    """Send the CSR."""


@dataclass(frozen=True)
class Download(Action):
    """Fetch the chain, check it against the pending key, write the Secret."""


@dataclass(frozen=True)
class CleanupIssuance(Action):
    """Remove the solver objects and the pending key once the Secret holds the certificate."""
