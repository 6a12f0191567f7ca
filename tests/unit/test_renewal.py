"""reconcile.renewal: the plain schedule, ARI bookkeeping and the next wake, with fake time.

``ari_plan`` runs against a hand-written fake account whose ``renewal_info`` answers from a
table, so the keep-the-chosen-time rule, the re-check times and the no-ARI branch (step-ca, and
any CA whose directory lacks ``renewalInfo``) are checked without a server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from acmebridge.adapters.acme_messages import RenewalInfo, ari_cert_id
from acmebridge.config import OperatorConfig
from acmebridge.domain.errors import AcmeProblem, AcmeUnavailable
from acmebridge.domain.match import CertSummary
from acmebridge.domain.schedule import choose_in_window, jitter_for
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.timefmt import format_time
from acmebridge.reconcile.certificate import Ctx
from acmebridge.reconcile.renewal import (
    ari_plan,
    jitter,
    next_wake,
    plain_renewal,
    recheck_after,
    renewal_at,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# RFC 9773 Appendix A's certificate: it has an Authority Key Identifier, so it has an ARI id.
ARI_PEM = (FIXTURES / "acme" / "rfc9773-appendix-a.pem").read_bytes()
CERT_ID = ari_cert_id(ARI_PEM)
# A certificate without an Authority Key Identifier (some internal CAs issue these).
NO_AKI_PEM = (FIXTURES / "leaf.pem").read_bytes()

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
NB = datetime(2025, 5, 1, tzinfo=UTC)
NA = NB + timedelta(days=90)
H = timedelta(hours=1)
M = timedelta(minutes=1)
S = timedelta(seconds=1)
UID = "3f1c9e2a-0000-4000-8000-000000000001"
SERIAL = "87654321"


@dataclass
class FakeSession:
    """Answers ``renewal_info`` with ``answer`` (a RenewalInfo, None, or an error to raise)."""

    answer: RenewalInfo | Exception | None
    asked: list[str] = field(default_factory=list)

    def renewal_info(self, cert_id: str) -> RenewalInfo | None:
        self.asked.append(cert_id)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@dataclass
class FakeDirectory:
    renewal_info: str | None


@dataclass
class FakeAccount:
    session: FakeSession
    directory: FakeDirectory


@dataclass
class FakeRuntime:
    config: OperatorConfig

    async def io(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


def make_ctx(
    *,
    now: datetime = NOW,
    spec: dict[str, Any] | None = None,
    book: dict[str, Any] | None = None,
    recheck_max: timedelta = timedelta(hours=24),
) -> Ctx:
    body = {
        "metadata": {"name": "web", "namespace": "shop", "uid": UID, "generation": 1},
        "spec": {"secretName": "web-tls", "issuerRef": {"name": "ca"}, "dnsNames": ["a.test"]},
    }
    body["spec"].update(spec or {})
    rt = FakeRuntime(OperatorConfig(ari_recheck_max=recheck_max))
    return Ctx(
        rt=rt,  # type: ignore[arg-type]
        key=("certificates", "shop", "web"),
        body=body,
        spec=CertificateSpec.from_body(body["spec"]),
        now=now,
        status={"acmebridge": book} if book is not None else {},
    )


def summary(not_before: datetime = NB, not_after: datetime = NA) -> CertSummary:
    return CertSummary(
        common_name=None,
        dns_names=("a.test",),
        ip_addresses=(),
        uris=(),
        email_addresses=(),
        not_before=not_before,
        not_after=not_after,
        serial=SERIAL,
        issuer_common_name=None,
        public_key_fingerprint="",
        key_algorithm="ECDSA",
        key_size=256,
    )


def window(start: datetime, end: datetime, retry: timedelta | None = 6 * H) -> RenewalInfo:
    return RenewalInfo(start=start, end=end, explanation_url=None, retry_after=retry)


def plan(
    start: datetime, end: datetime, chosen: datetime, recheck: datetime, cert_id: str = CERT_ID
) -> dict[str, Any]:
    return {
        "certID": cert_id,
        "windowStart": format_time(start),
        "windowEnd": format_time(end),
        "chosen": format_time(chosen),
        "recheckAt": format_time(recheck),
        "explanationURL": None,
    }


W1 = (NB + timedelta(days=59), NB + timedelta(days=61))
W2 = (NOW - 2 * H, NOW - H)  # moved into the past: renew now
# A time in W1 that the seed would not choose: a kept time shows it was not chosen again.
KEPT = W1[0] + 17 * S
SEED = f"{UID}/{SERIAL}"


# -- ari_plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directory", "answer", "pem", "previous", "recheck_max", "expected", "asks"),
    [
        pytest.param(
            None,
            window(*W1),
            ARI_PEM,
            None,
            24 * H,
            None,
            0,
            id="without renewalInfo in the directory there is no plan: the plain schedule applies",
        ),
        pytest.param(
            "https://ca/ari",
            window(*W1),
            NO_AKI_PEM,
            None,
            24 * H,
            None,
            0,
            id="a certificate without an Authority Key Identifier has no plan",
        ),
        pytest.param(
            "https://ca/ari",
            window(*W1),
            ARI_PEM,
            None,
            24 * H,
            plan(*W1, choose_in_window(*W1, seed=SEED), NOW + 6 * H),
            1,
            id="the first look fetches the window and chooses a time in it once",
        ),
        pytest.param(
            "https://ca/ari",
            window(*W1),
            ARI_PEM,
            plan(*W1, KEPT, NOW - S),
            24 * H,
            plan(*W1, KEPT, NOW + 6 * H),
            1,
            id="the same window at the re-check keeps the time chosen before",
        ),
        pytest.param(
            "https://ca/ari",
            window(*W2),
            ARI_PEM,
            plan(*W1, KEPT, NOW),
            24 * H,
            plan(*W2, choose_in_window(*W2, seed=SEED), NOW + 6 * H),
            1,
            id="a moved window at the re-check chooses again inside it",
        ),
        pytest.param(
            "https://ca/ari",
            window(*W2),
            ARI_PEM,
            plan(*W1, KEPT, NOW + S),
            24 * H,
            plan(*W1, KEPT, NOW + S),
            0,
            id="before the re-check time nothing is fetched and the plan stands",
        ),
        pytest.param(
            "https://ca/ari",
            window(*W1),
            ARI_PEM,
            plan(*W2, NOW - H, NOW + H, cert_id="other.cert"),
            24 * H,
            plan(*W1, choose_in_window(*W1, seed=SEED), NOW + 6 * H),
            1,
            id="a plan made for the previous certificate is not reused",
        ),
        pytest.param(
            "https://ca/ari",
            AcmeUnavailable("connection refused"),
            ARI_PEM,
            plan(*W1, KEPT, NOW - S),
            24 * H,
            plan(*W1, KEPT, NOW + 6 * H),
            1,
            id="an unreachable CA keeps the plan and asks again in six hours",
        ),
        pytest.param(
            "https://ca/ari",
            AcmeProblem("urn:ietf:params:acme:error:malformed", "no such certificate"),
            ARI_PEM,
            None,
            24 * H,
            None,
            1,
            id="a CA that does not know the certificate leaves the plain schedule",
        ),
        pytest.param(
            "https://ca/ari",
            None,
            ARI_PEM,
            None,
            24 * H,
            None,
            1,
            id="renewalInfo gone from the directory at fetch time leaves the plain schedule",
        ),
        pytest.param(
            "https://ca/ari",
            window(*W1, retry=6 * H),
            ARI_PEM,
            None,
            2 * S,
            plan(*W1, choose_in_window(*W1, seed=SEED), NOW + 2 * S),
            1,
            id="--ari-recheck-max caps a long Retry-After",
        ),
        pytest.param(
            "https://ca/ari",
            AcmeUnavailable("connection refused"),
            ARI_PEM,
            plan(*W1, KEPT, NOW - S),
            2 * S,
            plan(*W1, KEPT, NOW + 2 * S),
            1,
            id="--ari-recheck-max caps the re-check after a failed fetch too",
        ),
    ],
)
def test_ari_plan(
    directory: str | None,
    answer: RenewalInfo | Exception | None,
    pem: bytes,
    previous: dict[str, Any] | None,
    recheck_max: timedelta,
    expected: dict[str, Any] | None,
    asks: int,
) -> None:
    session = FakeSession(answer)
    account = FakeAccount(session, FakeDirectory(directory))
    ctx = make_ctx(recheck_max=recheck_max)
    got = asyncio.run(ari_plan(ctx, account, pem, summary(), previous))  # type: ignore[arg-type]
    assert got == expected
    assert len(session.asked) == asks
    assert all(cert_id == CERT_ID for cert_id in session.asked)


def test_the_chosen_time_is_inside_the_window_and_the_same_at_every_look() -> None:
    account = FakeAccount(FakeSession(window(*W1)), FakeDirectory("https://ca/ari"))
    first = asyncio.run(ari_plan(make_ctx(), account, ARI_PEM, summary(), None))  # type: ignore[arg-type]
    assert first is not None
    later = make_ctx(now=NOW + 7 * H)
    again = asyncio.run(ari_plan(later, account, ARI_PEM, summary(), None))  # type: ignore[arg-type]
    assert again is not None
    assert first["chosen"] == again["chosen"]
    assert format_time(W1[0]) <= first["chosen"] < format_time(W1[1])


# -- recheck_after ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "cap", "expected"),
    [
        pytest.param(6 * H, 24 * H, 6 * H, id="the CA's Retry-After is obeyed"),
        pytest.param(None, 24 * H, 6 * H, id="without Retry-After ask again in six hours"),
        pytest.param(5 * S, 24 * H, M, id="a Retry-After under a minute counts as a minute"),
        pytest.param(48 * H, 72 * H, 24 * H, id="a Retry-After over a day counts as a day"),
        pytest.param(6 * H, 10 * M, 10 * M, id="the operator's cap shortens a long Retry-After"),
        pytest.param(6 * H, 2 * S, 2 * S, id="a cap under a minute is the operator's choice"),
    ],
)
def test_recheck_after(retry_after: timedelta | None, cap: timedelta, expected: timedelta) -> None:
    assert recheck_after(retry_after, cap=cap) == expected


# -- renewal_at and next_wake -------------------------------------------------------------------


PLAIN = NB + timedelta(days=60)


@pytest.mark.parametrize(
    ("ari", "expected"),
    [
        pytest.param(None, PLAIN, id="without ARI the plain schedule is the renewal time"),
        pytest.param(
            plan(*W1, PLAIN - H, NOW), PLAIN - H, id="an earlier ARI time wins over the plain one"
        ),
        pytest.param(
            plan(*W1, PLAIN + H, NOW),
            PLAIN,
            id="a later ARI time never extends the plain schedule",
        ),
        pytest.param(
            plan(*W2, NOW - H, NOW), NOW - H, id="a window in the past makes renewal due now"
        ),
    ],
)
def test_renewal_at(ari: dict[str, Any] | None, expected: datetime) -> None:
    assert renewal_at(PLAIN, ari) == expected


@pytest.mark.parametrize(
    ("renew_at", "ari", "expected"),
    [
        pytest.param(NOW + 10 * H, None, 10 * 3600.0, id="wakes at the renewal time"),
        pytest.param(
            NOW + 10 * H,
            plan(*W1, NOW + 10 * H, NOW + 6 * H),
            6 * 3600.0,
            id="wakes at the ARI re-check when it comes first",
        ),
        pytest.param(
            NOW + H,
            plan(*W1, NOW + H, NOW + 6 * H),
            3600.0,
            id="wakes at the renewal time when it comes before the re-check",
        ),
        pytest.param(NOW - H, None, 1.0, id="a renewal time in the past wakes after a second"),
    ],
)
def test_next_wake(renew_at: datetime, ari: dict[str, Any] | None, expected: float) -> None:
    assert next_wake(renew_at, ari, NOW) == expected


# -- the plain schedule and its jitter ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "book", "expected"),
    [
        pytest.param(
            {},
            {"jitterSeconds": 3600},
            NB + timedelta(days=60) - H,
            id="two thirds of the lifetime minus the stored jitter",
        ),
        pytest.param(
            {"renewBefore": "720h"},
            {"jitterSeconds": 0},
            NA - timedelta(hours=720),
            id="renewBefore counts back from expiry",
        ),
        pytest.param(
            {"renewBeforePercentage": 25},
            {"jitterSeconds": 60},
            NA - timedelta(days=22.5) - M,
            id="renewBeforePercentage counts back a share of the lifetime",
        ),
        pytest.param(
            {},
            {},
            NB + timedelta(days=60) - jitter_for(UID, NA - NB),
            id="without a stored jitter the UID's jitter is used",
        ),
    ],
)
def test_plain_renewal_uses_the_stored_jitter(
    spec: dict[str, Any], book: dict[str, Any], expected: datetime
) -> None:
    ctx = make_ctx(spec=spec, book=book)
    assert plain_renewal(ctx, summary(), jitter(ctx, summary())) == expected


def test_a_stored_jitter_is_kept_when_the_lifetime_changes() -> None:
    # Computed once and stored: a renewal with another lifetime keeps the certificate's place.
    ctx = make_ctx(book={"jitterSeconds": 1234})
    assert jitter(ctx, summary(NB, NB + timedelta(days=7))) == timedelta(seconds=1234)


def test_the_kept_time_in_these_tables_is_not_what_the_seed_would_choose() -> None:
    # Otherwise "keeps the time chosen before" could not be told from "chose the same again".
    assert choose_in_window(*W1, seed=SEED) != KEPT
