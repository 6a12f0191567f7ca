"""Settling a Certificate whose Secret is current, and finishing an issuance: the renewal
schedule, the ARI record and the next wake, decided from what was observed. Pure."""

from __future__ import annotations

from dataclasses import replace

from acmebridge.domain import actions as a
from acmebridge.domain.observed import IssuerState, Observed
from acmebridge.domain.renewal import (
    capped,
    early_renewals_after,
    jitter,
    next_wake,
    plan_renewal,
    refreshed_record,
    renewal_info_due,
    retried_record,
)
from acmebridge.domain.status import Issued, RenewalInfoRecord


def renewal_record(
    o: Observed, *, cert_id: str | None, previous: RenewalInfoRecord | None, seed: str
) -> RenewalInfoRecord | None:
    """The ARI record as this reconcile leaves it (refreshed, retried, capped or kept)."""
    cap = o.settings.ari_recheck_max
    if cert_id is None or not o.issuer.ari:
        return None
    if o.renewal_window is not None:
        return refreshed_record(
            previous, o.renewal_window, cert_id=cert_id, seed=seed, now=o.now, cap=cap
        )
    if o.renewal_fetched:
        return retried_record(previous, cert_id=cert_id, now=o.now, cap=cap)
    if previous is not None and previous.cert_id != cert_id:
        return None
    return capped(previous, now=o.now, cap=cap)


def settle(o: Observed) -> a.Action:
    assert o.spec is not None and o.secret.leaf is not None  # the trigger checks guarantee it
    leaf = o.secret.leaf
    cert_id = o.secret.cert_id
    stored = o.status.renewal_info
    if (
        o.issuer.ari
        and o.issuer.state is IssuerState.READY
        and cert_id is not None
        and not o.renewal_fetched
        and renewal_info_due(stored, cert_id=cert_id, now=o.now, cap=o.settings.ari_recheck_max)
    ):
        return a.FetchRenewalInfo(cert_id)
    record = renewal_record(o, cert_id=cert_id, previous=stored, seed=f"{o.uid}/{leaf.serial}")
    jitter_ = jitter(o.uid, leaf, o.status.issued.jitter_seconds)
    renewal = plan_renewal(leaf, o.spec, jitter_=jitter_, record=record, now=o.now)
    if renewal.guarded and record is not None:
        record = replace(record, guarded=True)
    wake = next_wake(
        renewal.renew_at, record, now=o.now, secret_check=o.settings.secret_check_interval
    )
    return a.Settle(
        leaf, o.spec.issuance_hash(), renewal.renew_at, jitter_, record, renewal.message, wake
    )


def finish(o: Observed) -> a.Action:
    """Pure: once the Secret holds the new certificate and cleanup is done: its renewal info
    first (when the CA offers it), then Finish with the schedule."""
    assert o.written is not None
    w = o.written
    previous = o.status.renewal_info
    if (
        o.issuer.ari
        and w.cert_id is not None
        and not o.renewal_fetched
        and o.issuer.state is IssuerState.READY
    ):
        return a.FetchRenewalInfo(w.cert_id)
    assert o.spec is not None
    record = renewal_record(o, cert_id=w.cert_id, previous=None, seed=f"{o.uid}/{w.leaf.serial}")
    if record is not None:
        record = replace(record, early_renewals=early_renewals_after(previous, renewed_at=o.now))
    jitter_ = jitter(o.uid, w.leaf, o.status.issued.jitter_seconds)
    renewal = plan_renewal(w.leaf, o.spec, jitter_=jitter_, record=record, now=o.now)
    if renewal.guarded and record is not None:
        record = replace(record, guarded=True)
    issued = Issued(
        spec_hash=o.spec.issuance_hash(),
        serial=w.leaf.serial,
        ca_source=w.ca_source,
        ca_omitted_reason=w.ca_omitted_reason,
        jitter_seconds=int(jitter_.total_seconds()),
    )
    wake = next_wake(
        renewal.renew_at, record, now=o.now, secret_check=o.settings.secret_check_interval
    )
    return a.Finish(
        w.leaf,
        issued,
        renewal.renew_at,
        record,
        renewal.message,
        wake,
        renewing=o.status.issued.serial is not None or o.status.revision > 0,
    )
