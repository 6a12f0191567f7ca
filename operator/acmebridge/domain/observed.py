"""What one Certificate reconcile knows when it asks ``domain.plan`` for the next step.

The reconciler fills ``Observed`` from the Certificate, its issuer, its Secret and what earlier
steps of the same reconcile learnt from the CA; every field is plain data (never a key).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from acmebridge.domain.assess import SecretView
from acmebridge.domain.failures import ChallengeOutcome
from acmebridge.domain.issuer_spec import Solver
from acmebridge.domain.match import CertSummary
from acmebridge.domain.renewal import RenewalWindow
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.status import CertificateStatus


class IssuerState(enum.Enum):
    MISSING = "missing"
    NOT_READY = "not-ready"
    SERVER_DOWN = "server-down"
    READY = "ready"


@dataclass(frozen=True)
class IssuerView:
    """The referenced issuer, its account and what its ACME server offers."""

    state: IssuerState
    message: str = ""
    account_uri: str = ""
    ari: bool = False
    can_list_orders: bool = False
    solvers: tuple[Solver, ...] = ()
    preferred_chain: str | None = None


@dataclass(frozen=True)
class KeyView:
    """The pending private key's Secret (the key itself stays in the reconciler)."""

    present: bool
    #: it existed before this reconcile looked (an issuance started earlier)
    existed: bool = False
    conflict: str | None = None


@dataclass(frozen=True)
class OrderView:
    """The order as the CA reported it in this reconcile."""

    status: str
    certificate_url: str | None = None
    retry_after: timedelta | None = None


@dataclass(frozen=True)
class OfferedChallenge:
    type: str
    url: str
    token: str | None
    status: str


@dataclass(frozen=True)
class AuthzView:
    """An authorization as the CA reported it in this reconcile."""

    status: str
    identifier_type: str
    identifier: str
    wildcard: bool
    challenges: tuple[OfferedChallenge, ...]


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str = ""
    #: the solver object was looked at and is gone: present it again
    solver_missing: bool = False


@dataclass(frozen=True)
class Written:
    """The certificate just written to the Secret."""

    leaf: CertSummary
    cert_id: str | None
    ca_source: str | None
    ca_omitted_reason: str | None


@dataclass(frozen=True)
class Settings:
    """The operator settings decisions depend on."""

    backoff_cap: timedelta = timedelta(hours=1)
    order_poll_max: timedelta = timedelta(seconds=10)
    ari_recheck_max: timedelta = timedelta(hours=24)
    secret_check_interval: timedelta = timedelta(hours=1)
    dns01_supported: bool = False
    #: the cluster's DNS domain: names under it are cluster-internal (domain.validatable)
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile knows; steps of the same reconcile add to it."""

    now: datetime
    uid: str
    generation: int
    labels: Mapping[str, str]
    spec: CertificateSpec | None
    spec_error: str
    status: CertificateStatus
    issuer: IssuerView
    secret: SecretView
    settings: Settings = field(default_factory=Settings)
    key: KeyView | None = None
    recovery_searched: bool = False
    renewal_window: RenewalWindow | None = None
    renewal_fetched: bool = False
    order: OrderView | None = None
    authorizations: Mapping[str, AuthzView] = field(default_factory=dict)
    checks: Mapping[str, CheckResult] = field(default_factory=dict)
    #: a challenge was answered in this reconcile and the CA is still validating it: asking
    #: about the order at once would only hear "pending" (one wasted request per issuance)
    just_answered: bool = False
    outcomes: tuple[ChallengeOutcome, ...] | None = None
    written: Written | None = None
    cleaned: bool = False
