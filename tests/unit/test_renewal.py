"""domain.renewal: the one renewal rule, the ARI record's bookkeeping, the storm guard and the
next wake, with time passed in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acmebridge.adapters.acme_messages import ari_cert_id
from acmebridge.domain.match import CertSummary
from acmebridge.domain.renewal import (
    RenewalWindow,
    capped,
    early_renewals_after,
    jitter,
    next_wake,
    plan_renewal,
    recheck_after,
    refreshed_record,
    renewal_info_due,
    retried_record,
    storm_floor,
)
from acmebridge.domain.schedule import choose_in_window, jitter_for
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.status import RenewalInfoRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# RFC 9773 Appendix A's certificate: it has an Authority Key Identifier, so it has an ARI id.
CERT_ID = ari_cert_id((FIXTURES / "acme" / "rfc9773-appendix-a.pem").read_bytes())

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
NB = datetime(2025, 5, 1, tzinfo=UTC)
NA = NB + timedelta(days=90)
H = timedelta(hours=1)
M = timedelta(minutes=1)
UID = "3f1c9e2a-0000-4000-8000-000000000001"
CAP = timedelta(hours=24)
LEAF = CertSummary(
    common_name=None,
    dns_names=("web.example",),
    ip_addresses=(),
    uris=(),
    email_addresses=(),
    not_before=NB,
    not_after=NA,
    serial="87654321",
    issuer_common_name="CA",
    public_key_fingerprint="fp",
    key_algorithm="ECDSA",
    key_size=256,
)


def spec(**extra: object) -> CertificateSpec:
    body = {"secretName": "s", "issuerRef": {"name": "ca"}, "dnsNames": ["web.example"], **extra}
    return CertificateSpec.from_body(body)


def rec(selected: datetime, **kw: object) -> RenewalInfoRecord:
    base = RenewalInfoRecord(
        cert_id=CERT_ID,
        window_start=selected - H,
        window_end=selected + H,
        selected_time=selected,
        recheck_at=NOW + 6 * H,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


WINDOW = RenewalWindow(NB + timedelta(days=60), NB + timedelta(days=61), retry_after=2 * H)


def test_a_new_window_draws_a_time_once_from_the_seed() -> None:
    got = refreshed_record(None, WINDOW, cert_id=CERT_ID, seed="s", now=NOW, cap=CAP)
    assert got.selected_time == choose_in_window(WINDOW.start, WINDOW.end, seed="s")
    assert WINDOW.start <= got.selected_time < WINDOW.end
    assert got.recheck_at == NOW + 2 * H


def test_the_same_window_keeps_the_time_chosen_before() -> None:
    kept = rec(NB + timedelta(days=60, hours=7), window_start=WINDOW.start, window_end=WINDOW.end)
    got = refreshed_record(kept, WINDOW, cert_id=CERT_ID, seed="another", now=NOW, cap=CAP)
    assert got.selected_time == kept.selected_time


def test_a_moved_window_chooses_again() -> None:
    old = rec(NB + timedelta(days=70))
    got = refreshed_record(old, WINDOW, cert_id=CERT_ID, seed="s", now=NOW, cap=CAP)
    assert WINDOW.start <= got.selected_time < WINDOW.end


def test_a_ca_that_does_not_answer_keeps_what_it_said_before() -> None:
    old = rec(NB + timedelta(days=70), early_renewals=2)
    got = retried_record(old, cert_id=CERT_ID, now=NOW, cap=CAP)
    assert got == replace(old, recheck_at=NOW + 6 * H)
    assert retried_record(old, cert_id="another", now=NOW, cap=CAP) is None


@pytest.mark.parametrize(
    ("record", "cert_id", "now", "due"),
    [
        pytest.param(None, CERT_ID, NOW, True, id="nothing known yet: ask"),
        pytest.param(rec(NA), "another", NOW, True, id="a record of another certificate: ask"),
        pytest.param(rec(NA), CERT_ID, NOW, False, id="before its re-check: do not"),
        pytest.param(rec(NA), CERT_ID, NOW + 6 * H, True, id="at its re-check: ask"),
    ],
)
def test_renewal_info_due(
    record: RenewalInfoRecord | None, cert_id: str, now: datetime, due: bool
) -> None:
    assert renewal_info_due(record, cert_id=cert_id, now=now, cap=CAP) is due


def test_a_recheck_beyond_a_lowered_cap_is_brought_in_once() -> None:
    far = rec(NA, recheck_at=NOW + 20 * H)
    brought = capped(far, now=NOW, cap=H)
    assert brought is not None and brought.recheck_at == NOW + H
    # Once written back it stays put: an hour later it is due, not moved again.
    assert capped(brought, now=NOW + 30 * M, cap=H) == brought


@pytest.mark.parametrize(
    ("retry_after", "cap", "expected"),
    [
        pytest.param(None, CAP, 6 * H, id="six hours without a Retry-After"),
        pytest.param(timedelta(seconds=5), CAP, M, id="at least a minute"),
        pytest.param(timedelta(days=3), timedelta(days=7), 24 * H, id="at most a day"),
        pytest.param(2 * H, 30 * M, 30 * M, id="never beyond the operator's cap"),
        pytest.param(2 * H, timedelta(seconds=2), timedelta(seconds=2), id="a tiny cap wins"),
    ],
)
def test_recheck_after(retry_after: timedelta | None, cap: timedelta, expected: timedelta) -> None:
    assert recheck_after(retry_after, cap=cap) == expected


@pytest.mark.parametrize(
    ("given", "record", "expected"),
    [
        pytest.param(spec(), None, NB + timedelta(days=60), id="no window: two thirds"),
        pytest.param(
            spec(renewBefore="720h"), None, NA - timedelta(days=30), id="no window: renewBefore"
        ),
        pytest.param(
            spec(),
            rec(NB + timedelta(days=70)),
            NB + timedelta(days=70),
            id="a window: its chosen time, even after two thirds",
        ),
        pytest.param(
            spec(renewBefore="720h"),
            rec(NB + timedelta(days=70)),
            NA - timedelta(days=30),
            id="an explicit renewBefore caps the window",
        ),
        pytest.param(
            spec(renewBeforePercentage=50),
            rec(NB + timedelta(days=30)),
            NB + timedelta(days=30),
            id="an explicit limit later than the window changes nothing",
        ),
        pytest.param(
            spec(),
            rec(NA + timedelta(days=1)),
            NB + timedelta(days=81),
            id="a window after expiry is cut off at 90% of the lifetime",
        ),
        pytest.param(
            spec(),
            rec(NB + timedelta(days=3)),
            NB + timedelta(days=9),
            id="a window inside the first 10% waits for the storm guard's floor",
        ),
        pytest.param(
            spec(),
            rec(NB + timedelta(days=3), early_renewals=1),
            NB + timedelta(days=18),
            id="and twice as long after a forced renewal in a row",
        ),
    ],
)
def test_plan_renewal(
    given: CertificateSpec, record: RenewalInfoRecord | None, expected: datetime
) -> None:
    got = plan_renewal(LEAF, given, jitter_=timedelta(0), record=record, now=NB + H)
    assert got.renew_at == expected


def test_the_guard_says_so_only_while_it_holds_back() -> None:
    young = plan_renewal(LEAF, spec(), jitter_=timedelta(0), record=rec(NB), now=NB + H)
    assert young.guarded and young.message and "held back" in young.message
    later = plan_renewal(
        LEAF, spec(), jitter_=timedelta(0), record=rec(NB), now=NB + timedelta(days=10)
    )
    assert not later.guarded and later.renew_at < NB + timedelta(days=10)


@pytest.mark.parametrize(
    ("lifetime", "floor"),
    [
        pytest.param(timedelta(days=90), timedelta(days=9), id="10% of a long lifetime"),
        pytest.param(timedelta(minutes=30), timedelta(minutes=5), id="at least five minutes"),
        pytest.param(timedelta(minutes=6), timedelta(minutes=3), id="at most half the lifetime"),
    ],
)
def test_storm_floor(lifetime: timedelta, floor: timedelta) -> None:
    assert storm_floor(replace(LEAF, not_after=NB + lifetime)) == floor


@pytest.mark.parametrize(
    ("previous", "count"),
    [
        pytest.param(None, 0, id="a first certificate starts at zero"),
        pytest.param(rec(NOW + 10 * H), 0, id="a renewal inside a sane window resets it"),
        pytest.param(rec(NOW - 10 * H), 1, id="a renewal after the window passed counts"),
        pytest.param(rec(NOW + 10 * H, guarded=True, early_renewals=2), 3, id="a guarded one too"),
    ],
)
def test_early_renewals_after(previous: RenewalInfoRecord | None, count: int) -> None:
    assert early_renewals_after(previous, renewed_at=NOW) == count


@pytest.mark.parametrize(
    ("renew_at", "record", "expected"),
    [
        pytest.param(NOW + 2 * H, None, 3600.0, id="the hourly Secret check comes first"),
        pytest.param(NOW + 30 * M, None, 1800.0, id="a renewal sooner than that"),
        pytest.param(NOW + 2 * H, rec(NA, recheck_at=NOW + 10 * M), 600.0, id="or a re-check"),
        pytest.param(NOW - H, None, 1.0, id="a past time is at least a second away"),
    ],
)
def test_next_wake(renew_at: datetime, record: RenewalInfoRecord | None, expected: float) -> None:
    assert next_wake(renew_at, record, now=NOW, secret_check=H) == expected


def test_the_stored_jitter_is_kept_and_a_new_one_comes_from_the_uid() -> None:
    assert jitter(UID, LEAF, 42) == timedelta(seconds=42)
    assert jitter(UID, LEAF, None) == jitter_for(UID, NA - NB)
