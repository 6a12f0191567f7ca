"""Renewal time, jitter, ARI window choice and failure backoff: pure time math with fake times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from acmebridge.domain.schedule import (
    MAX_RETRY_AFTER,
    backoff_delay,
    choose_in_window,
    jitter_for,
    next_wake,
    renewal_time,
)

NB = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
H = timedelta(hours=1)
M = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("lifetime", "renew_before", "percentage", "jitter", "expected"),
    [
        pytest.param(
            90 * DAY, None, None, timedelta(0), NB + 60 * DAY, id="renews at two thirds of lifetime"
        ),
        pytest.param(
            90 * DAY,
            30 * DAY,
            None,
            timedelta(0),
            NB + 60 * DAY,
            id="renewBefore counts back from expiry",
        ),
        pytest.param(
            90 * DAY,
            10 * DAY,
            None,
            timedelta(0),
            NB + 80 * DAY,
            id="a short renewBefore renews late",
        ),
        pytest.param(
            90 * DAY,
            90 * DAY,
            None,
            timedelta(0),
            NB + 60 * DAY,
            id="renewBefore equal to the lifetime falls back to two thirds",
        ),
        pytest.param(
            1 * DAY,
            2 * DAY,
            None,
            timedelta(0),
            NB + 16 * H,
            id="renewBefore longer than a short issued lifetime falls back to two thirds",
        ),
        pytest.param(
            100 * DAY, None, 25, timedelta(0), NB + 75 * DAY, id="percentage of lifetime remaining"
        ),
        pytest.param(
            100 * DAY, None, 0, timedelta(0), NB + DAY * 200 / 3, id="percentage zero is ignored"
        ),
        pytest.param(
            100 * DAY,
            None,
            100,
            timedelta(0),
            NB + DAY * 200 / 3,
            id="percentage one hundred is ignored",
        ),
        pytest.param(
            90 * DAY, None, None, 6 * H, NB + 60 * DAY - 6 * H, id="jitter moves renewal earlier"
        ),
        pytest.param(
            90 * DAY,
            None,
            None,
            40 * DAY,
            NB + 45 * DAY,
            id="jitter never moves renewal before mid life",
        ),
        pytest.param(
            90 * DAY,
            80 * DAY,
            None,
            6 * H,
            NB + 10 * DAY,
            id="a renewal the user put before mid life is not jittered further",
        ),
        pytest.param(
            10 * M,
            None,
            None,
            timedelta(0),
            NB + 6 * M + 40 * timedelta(seconds=1),
            id="a ten minute certificate renews after six minutes forty",
        ),
    ],
)
def test_renewal_time(
    lifetime: timedelta,
    renew_before: timedelta | None,
    percentage: int | None,
    jitter: timedelta,
    expected: datetime,
) -> None:
    got = renewal_time(
        NB,
        NB + lifetime,
        renew_before=renew_before,
        renew_before_percentage=percentage,
        jitter=jitter,
    )
    assert got == expected.replace(microsecond=0)
    assert got.tzinfo is not None


def test_renewal_time_is_truncated_to_the_second() -> None:
    # cert-manager pull request 4399: status stores whole seconds, so a computed renewal time
    # with a fraction would always be "later" than the stored one and re-queue early.
    not_before = datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)
    not_after = not_before + timedelta(seconds=10)  # a third is 3.333... seconds
    got = renewal_time(
        not_before, not_after, renew_before=None, renew_before_percentage=None, jitter=timedelta(0)
    )
    assert got == datetime(2025, 1, 1, 0, 0, 6, tzinfo=UTC)
    assert got.microsecond == 0


def test_renewal_time_ignores_subsecond_inputs() -> None:
    # X.509 validity has whole seconds; fractions from a careless caller do not leak through.
    got = renewal_time(
        NB + timedelta(microseconds=999_999),
        NB + 90 * DAY + timedelta(microseconds=999_999),
        renew_before=None,
        renew_before_percentage=None,
        jitter=timedelta(0),
    )
    assert got == NB + 60 * DAY


def test_renewal_time_accepts_other_timezones_and_answers_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    got = renewal_time(
        NB.astimezone(plus_two),
        (NB + 90 * DAY).astimezone(plus_two),
        renew_before=None,
        renew_before_percentage=None,
        jitter=timedelta(0),
    )
    assert got == NB + 60 * DAY
    assert got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("not_before", "not_after", "jitter", "fragment"),
    [
        pytest.param(
            NB.replace(tzinfo=None),
            NB + DAY,
            timedelta(0),
            "timezone-aware",
            id="refuses naive times",
        ),
        pytest.param(NB, NB, timedelta(0), "must be after", id="refuses an empty validity"),
        pytest.param(
            NB + DAY, NB, timedelta(0), "must be after", id="refuses an inverted validity"
        ),
        pytest.param(NB, NB + DAY, -H, "negative", id="refuses a negative jitter"),
    ],
)
def test_renewal_time_refuses_bad_input(
    not_before: datetime, not_after: datetime, jitter: timedelta, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        renewal_time(
            not_before, not_after, renew_before=None, renew_before_percentage=None, jitter=jitter
        )


def test_jitter_is_deterministic_per_uid() -> None:
    first = jitter_for("3f1c-uid", 90 * DAY)
    assert first == jitter_for("3f1c-uid", 90 * DAY)
    others = {jitter_for(f"uid-{i}", 90 * DAY) for i in range(50)}
    assert len(others) > 40  # spread, not one value for the fleet


@pytest.mark.parametrize(
    ("lifetime", "kwargs", "bound"),
    [
        pytest.param(90 * DAY, {}, 6 * H, id="long lifetimes are capped at six hours"),
        pytest.param(DAY, {}, DAY * 0.05, id="short lifetimes spread over five percent"),
        pytest.param(DAY, {"max_fraction": 0.0}, timedelta(0), id="zero fraction means no jitter"),
        pytest.param(90 * DAY, {"cap": M}, M, id="a custom cap applies"),
        pytest.param(timedelta(0), {}, timedelta(0), id="zero lifetime means no jitter"),
    ],
)
def test_jitter_stays_within_its_span(
    lifetime: timedelta, kwargs: dict[str, object], bound: timedelta
) -> None:
    for i in range(200):
        j = jitter_for(f"uid-{i}", lifetime, **kwargs)  # type: ignore[arg-type]
        assert timedelta(0) <= j <= bound
        assert j.microseconds == 0


def test_jitter_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        jitter_for("u", -DAY)
    with pytest.raises(ValueError):
        jitter_for("u", DAY, max_fraction=1.5)


def test_window_choice_is_inside_the_window_and_stable() -> None:
    start, end = NB, NB + 2 * DAY
    picks = {choose_in_window(start, end, seed=f"uid-{i}/serial") for i in range(100)}
    assert all(start <= p < end and p.microsecond == 0 for p in picks)
    assert len(picks) > 90
    assert choose_in_window(start, end, seed="a") == choose_in_window(start, end, seed="a")


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(NB, NB, NB, id="an empty window yields its start"),
        pytest.param(NB + H, NB, NB + H, id="an inverted window yields its start"),
        pytest.param(
            NB + timedelta(microseconds=1),
            NB + timedelta(seconds=1, microseconds=500),
            NB + timedelta(seconds=1),
            id="a sub-second start rounds up into the window",
        ),
    ],
)
def test_window_edge_cases(start: datetime, end: datetime, expected: datetime) -> None:
    assert choose_in_window(start, end, seed="x") == expected


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [
        pytest.param(0, timedelta(0), timedelta(0), id="no failure no delay"),
        pytest.param(1, 0.9 * M, 1.1 * M, id="first failure waits about a minute"),
        pytest.param(2, 1.8 * M, 2.2 * M, id="second failure waits about two minutes"),
        pytest.param(3, 3.6 * M, 4.4 * M, id="third failure waits about four minutes"),
        pytest.param(7, 0.9 * H, H, id="seventh failure reaches the cap"),
        pytest.param(10_000, 0.9 * H, H, id="many failures stay at the cap without overflow"),
    ],
)
def test_backoff_doubles_up_to_the_cap(failures: int, low: timedelta, high: timedelta) -> None:
    for seed in ("a", "b", "c", "uid-42"):
        assert low <= backoff_delay(failures, seed=seed) <= high


def test_backoff_jitter_is_deterministic_and_spreads_the_fleet() -> None:
    assert backoff_delay(3, seed="uid-1") == backoff_delay(3, seed="uid-1")
    at_cap = {backoff_delay(50, seed=f"uid-{i}") for i in range(50)}
    assert len(at_cap) > 40  # certificates that failed together do not retry together


@pytest.mark.parametrize(
    ("failures", "retry_after", "expected"),
    [
        pytest.param(1, 30 * M, 30 * M, id="a longer Retry-After wins"),
        pytest.param(1, 3 * H, 3 * H, id="Retry-After is honoured above the cap"),
        pytest.param(1, 72 * H, MAX_RETRY_AFTER, id="Retry-After is honoured up to a day"),
        pytest.param(0, 10 * M, 10 * M, id="Retry-After applies even before a failure is counted"),
    ],
)
def test_backoff_honours_retry_after(
    failures: int, retry_after: timedelta, expected: timedelta
) -> None:
    assert backoff_delay(failures, retry_after=retry_after, seed="s") == expected


def test_backoff_ignores_a_shorter_retry_after() -> None:
    plain = backoff_delay(5, seed="s")
    assert backoff_delay(5, retry_after=timedelta(seconds=1), seed="s") == plain


def test_backoff_custom_base_and_cap() -> None:
    delay = backoff_delay(3, base=timedelta(seconds=10), cap=timedelta(seconds=30), seed="s")
    assert timedelta(seconds=27) <= delay <= timedelta(seconds=30)


def test_backoff_refuses_negative_failures() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1)


@pytest.mark.parametrize(
    ("now", "when", "expected"),
    [
        pytest.param(NB, NB + H, H, id="waits until the time"),
        pytest.param(NB + H, NB, timedelta(0), id="a past time means now"),
        pytest.param(NB, NB, timedelta(0), id="the same time means now"),
    ],
)
def test_next_wake(now: datetime, when: datetime, expected: timedelta) -> None:
    assert next_wake(now, when) == expected


def test_next_wake_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_wake(datetime(2025, 1, 1), NB)
