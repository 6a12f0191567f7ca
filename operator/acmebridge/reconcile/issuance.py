"""One Certificate reconcile's working state (``Issuance``): the context, the account, what
has been observed so far, the pending key, and how a failed step becomes an observation.

Steps (``reconcile.steps``, ``reconcile.challenges``) read and extend it; the terminal actions
(``reconcile.outcome``) read it. A failure is never raised past a step: a transport failure
marks the ACME server down for everyone, a problem document becomes a classified ``Fail``, and
an unknown account is registered again once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from acmebridge.adapters.acme_messages import AuthorizationInfo, OrderInfo
from acmebridge.domain import actions as a
from acmebridge.domain.errors import AcmeProblem, Severity, classify, short_type
from acmebridge.domain.failures import own_reason, problem_reason
from acmebridge.domain.journal import OrderJournal
from acmebridge.domain.keys import PrivateKey
from acmebridge.domain.observed import IssuerState, IssuerView, Observed
from acmebridge.domain.reasons import Reason
from acmebridge.domain.spec import CertificateSpec
from acmebridge.reconcile.accounts import Account, Accounts
from acmebridge.reconcile.context import Ctx
from acmebridge.reconcile.runtime import ObjectKey, Runtime

log = logging.getLogger("acmebridge.issuance")


def issuer_view(rt: Runtime, account: Account) -> IssuerView:
    """The plan's view of a ready issuer: its account, what its server offers, and whether the
    server is down right now."""
    outage = rt.health.outage(account.spec.server)
    return IssuerView(
        IssuerState.SERVER_DOWN if outage else IssuerState.READY,
        message=outage.message() if outage else "",
        account_uri=account.ref.uri,
        ari=account.directory.renewal_info is not None,
        can_list_orders=account.orders_url is not None,
        solvers=account.spec.solvers,
        preferred_chain=account.spec.preferred_chain or None,
    )


@dataclass
class Issuance:
    """One reconcile's working state: the context, the account, what has been observed."""

    ctx: Ctx
    account: Account | None
    observed: Observed
    secret: dict[str, Any] | None = None
    accounts: Accounts | None = None
    issuer_key: ObjectKey | None = None
    #: the pending private key, once loaded or made (never in ``observed``)
    key: PrivateKey | None = None
    key_uid: str | None = None
    #: set by a failed step: the reconcile ends with it
    terminal: a.Terminal | None = None
    reregistered: bool = False
    last_order: OrderInfo | None = None
    authz_infos: dict[str, AuthorizationInfo] = field(default_factory=dict)
    #: the TLS Secret was not read in this reconcile (``Runtime.secret_absent``): read it
    #: before writing it
    secret_unread: bool = False
    #: the TLS Secret was read in this reconcile and did not exist
    secret_read_absent: bool = False

    @property
    def spec(self) -> CertificateSpec:
        assert self.observed.spec is not None
        return self.observed.spec

    @property
    def acct(self) -> Account:
        assert self.account is not None
        return self.account

    @property
    def journal(self) -> OrderJournal:
        j = self.ctx.status.order
        assert j is not None
        return j

    def see(self, **changes: Any) -> None:
        """Add what a step learnt; the status (with the pending patch) is always current."""
        self.observed = replace(self.observed, status=self.ctx.status, **changes)

    def set_journal(self, journal: OrderJournal | None) -> None:
        self.ctx.patch.set_order(journal)
        self.see()

    def fail(
        self,
        reason: str,
        condition_reason: str,
        message: str,
        *,
        permanent: bool,
        retry_after: Any = None,
    ) -> None:
        self.terminal = a.Fail(reason, condition_reason, message, permanent, retry_after)

    def fail_spec(self, condition_reason: str, message: str) -> None:
        self.fail(own_reason(condition_reason), condition_reason, message, permanent=True)

    def server_down(self, detail: str) -> None:
        """A transport failure: the server is down for everyone; wait for its probe."""
        if self.account is None:
            self.fail("unavailable", Reason.ACME_SERVER_UNAVAILABLE, detail, permanent=False)
            return
        session = self.account.session
        rt = self.ctx.rt
        outage = rt.health.report(
            self.account.spec.server,
            detail,
            probe=lambda: rt.io(session.directory, refresh=True),
            waiter=self.ctx.key,
        )
        issuer = replace(
            self.observed.issuer, state=IssuerState.SERVER_DOWN, message=outage.message()
        )
        self.see(issuer=issuer)

    async def problem(self, e: AcmeProblem) -> None:
        if (
            short_type(e.type) == "accountDoesNotExist"
            and not self.reregistered
            and self.accounts is not None
            and self.issuer_key is not None
        ):
            # The CA no longer knows the account (restored from an empty database, a test CA
            # restarted): register the same key again, once per reconcile; the journal's
            # account no longer matches, so the plan starts a new order.
            self.reregistered = True
            issuer = self.ctx.rt.cache.get(self.issuer_key)
            if issuer is not None:
                log.warning(
                    "Certificate %s: the ACME server does not know account %s; registering again",
                    self.ctx.log_name(),
                    self.acct.ref.uri,
                )
                self.account = await self.accounts.reregister(
                    self.ctx.rt, self.issuer_key, issuer, self.acct
                )
                self.ctx.rt.wake(self.issuer_key, 0.0)
                self.see(issuer=issuer_view(self.ctx.rt, self.account))
                return
        permanent = classify(e) is Severity.PERMANENT
        self.fail(
            problem_reason(e.type),
            Reason.FAILED,
            f"{e.detail} ({e.type})",
            permanent=permanent,
            retry_after=e.retry_after,
        )
