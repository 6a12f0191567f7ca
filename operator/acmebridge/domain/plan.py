"""The Certificate's next step, decided from what was observed: ``plan(observed) -> Action``.

Purely computational, like cert-manager's trigger policies and kopf's cause detection: the
reconciler gathers (the Certificate, its issuer, its Secret, and what earlier steps of the same
reconcile learnt from the CA), calls ``plan``, performs the one action it returns, and asks again
until the action is terminal. Nothing here reads the clock, the cluster or the CA.

The order of the checks is the policy:

1. gates that need someone else to act (spec, issuer, a Secret that is not ours);
2. nothing to issue: settle as Ready and schedule the renewal (``domain.renewal``);
3. the ACME server is down: wait for it, without counting a failure;
4. backoff after a failed attempt of the same spec (a manual trigger or a spec change skips it);
5. the order journal: drop an unusable order, create (or recover) one, then per authorization
   present, self-check and answer; the CA is asked about the order only once a challenge has
   been answered, then polled with a growing interval; finalize, download, clean up, finish.
"""

from __future__ import annotations

from datetime import timedelta

from acmebridge.domain import actions as a
from acmebridge.domain.assess import usable
from acmebridge.domain.conditions import Condition
from acmebridge.domain.journal import OrderJournal, journal_usable
from acmebridge.domain.observed import IssuerState, Observed
from acmebridge.domain.order_steps import key_problem, names_problem, order_step
from acmebridge.domain.reasons import ConditionType, Reason
from acmebridge.domain.schedule import backoff_delay
from acmebridge.domain.settle import settle
from acmebridge.domain.status import CertificateStatus
from acmebridge.domain.timefmt import format_time
from acmebridge.domain.trigger import TriggerInputs, Verdict, evaluate


def plan(o: Observed) -> a.Action:
    """Pure: the next step for the Certificate as observed (see the module docstring)."""
    if o.spec is None:
        return a.NotReady(Reason.INVALID_SPEC, o.spec_error, None)
    gate = _gate(o)
    if gate is not None:
        return gate
    spec = o.spec
    spec_hash = spec.issuance_hash()
    journal = o.status.order
    verdict = evaluate(
        TriggerInputs(
            secret=o.secret.state,
            spec_hash=spec_hash,
            issued_spec_hash=o.status.issued.spec_hash,
            renewal_time=o.status.renewal_time,
            manual_trigger=_manual(o.status),
        ),
        now=o.now,
    )
    in_flight = journal is not None and journal.spec_hash == spec_hash
    if verdict is None and not in_flight:
        if journal is not None:
            return a.DropOrder(journal, "the certificate in the Secret is current")
        return settle(o)
    if o.issuer.state is IssuerState.SERVER_DOWN:
        return a.WaitForServer(o.issuer.message)
    backoff = _backoff(o, spec_hash)
    if backoff is not None:
        return backoff
    verdict = verdict or Verdict(Reason.ISSUING, "Issuing certificate")
    if journal is not None and not journal_usable(
        journal, spec_hash=spec_hash, account_uri=o.issuer.account_uri, now=o.now
    ):
        return a.DropOrder(journal, _unusable(journal, spec_hash, o))
    if journal is None:
        return _start(o, verdict)
    return order_step(o, journal)


# --- gates and settling -----------------------------------------------------------------------


def _gate(o: Observed) -> a.Action | None:
    if o.issuer.state is IssuerState.MISSING:
        return a.NotReady(Reason.ISSUER_NOT_FOUND, o.issuer.message, None)
    if o.issuer.state is IssuerState.NOT_READY:
        return a.NotReady(Reason.ISSUER_NOT_READY, o.issuer.message, None)
    if o.secret.conflict is not None:
        message = o.secret.conflict + " (acmebridge leaves the Secret untouched)"
        return a.NotReady(Reason.SECRET_CONFLICT, message, 120.0)
    return None


def _manual(status: CertificateStatus) -> bool:
    issuing = status.condition(ConditionType.ISSUING)
    return bool(
        issuing and issuing.status == "True" and issuing.reason == Reason.MANUALLY_TRIGGERED
    )


def _backoff(o: Observed, spec_hash: str) -> a.Action | None:
    st = o.status
    failure, failures, since = st.last_failure, st.failed_issuance_attempts, st.last_failure_time
    if not failures or failure is None or since is None or failure.spec_hash != spec_hash:
        return None
    issuing = st.condition(ConditionType.ISSUING)
    if _manual(st) and issuing is not None and issuing.last_transition_time > since:
        return None  # `acmebridge renew` after the failure: try now
    retry_after = (
        timedelta(seconds=failure.retry_after_seconds) if failure.retry_after_seconds else None
    )
    delay = backoff_delay(failures, cap=o.settings.backoff_cap, retry_after=retry_after, seed=o.uid)
    retry_at = since + delay
    if retry_at <= o.now:
        return None
    message = (
        f"Issuance failed {failures} time(s); retrying at {format_time(retry_at)}: "
        f"{failure.message}"
    )
    return a.BackOff(retry_at, message)


def _unusable(journal: OrderJournal, spec_hash: str, o: Observed) -> str:
    if journal.spec_hash != spec_hash:
        return "the Certificate's spec changed"
    if journal.account_uri != o.issuer.account_uri:
        return "the issuer's ACME account changed"
    return "the order expired"


# --- starting an order ------------------------------------------------------------------------


def _start(o: Observed, verdict: Verdict) -> a.Action:
    names = names_problem(o)
    if names is not None:
        return names
    problem = key_problem(o)
    if problem is not None:
        return problem
    assert o.key is not None
    if o.key.existed and o.issuer.can_list_orders and not o.recovery_searched:
        return a.RecoverOrder()
    record = o.status.renewal_info
    renewing = usable(o.secret) and o.secret.cert_id is not None
    # RFC 9773 §5: name the certificate this order replaces, so the CA can link the two.
    replaces = (
        record.cert_id
        if renewing and record is not None and record.cert_id == o.secret.cert_id
        else None
    )
    return a.NewOrder(verdict.reason, verdict.message, replaces)


# --- working an order -------------------------------------------------------------------------


def urgency(action: a.Terminal) -> int:
    """Pure: how soon the work queue should serve this Certificate's next run when many are due
    (0 first): an order the CA is validating or finalizing, then one waiting on its solver, then
    everything else (new orders among them), so a burst of certificates streams out."""
    if isinstance(action, a.Wait):
        if action.reason in (Reason.VALIDATING, Reason.FINALIZING):
            return 0
        return 1
    return 2


def ready_condition_changed(previous: Condition | None, reason: str, generation: int) -> bool:
    """Whether Ready=True with ``reason`` would be news (so worth a write and an Event)."""
    return (
        previous is None
        or previous.status != "True"
        or previous.reason != reason
        or previous.observed_generation != generation
    )
