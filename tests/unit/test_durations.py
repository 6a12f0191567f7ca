"""Go duration strings read and written as cert-manager (Go's time package) does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from acmebridge.domain.durations import format_go_duration, parse_go_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2160h", timedelta(days=90), id="ninety days in hours"),
        pytest.param("90m", timedelta(minutes=90), id="minutes"),
        pytest.param("1h30m", timedelta(minutes=90), id="hours and minutes"),
        pytest.param("300s", timedelta(minutes=5), id="seconds"),
        pytest.param("1.5h", timedelta(minutes=90), id="a fraction of an hour"),
        pytest.param("0.1h", timedelta(minutes=6), id="a decimal fraction is exact"),
        pytest.param("500ms", timedelta(milliseconds=500), id="milliseconds"),
        pytest.param("1h0m0s", timedelta(hours=1), id="Go's own output reads back"),
        pytest.param("2us", timedelta(microseconds=2), id="microseconds with u"),
        pytest.param("2µs", timedelta(microseconds=2), id="microseconds with the micro sign"),
        pytest.param("2μs", timedelta(microseconds=2), id="microseconds with greek mu"),
        pytest.param(
            "1500ns", timedelta(microseconds=1), id="nanoseconds truncate to microseconds"
        ),
        pytest.param("0", timedelta(0), id="a bare zero"),
        pytest.param("-1h", timedelta(hours=-1), id="negative as Go allows"),
        pytest.param("+5m", timedelta(minutes=5), id="explicit plus sign"),
        pytest.param(".5h", timedelta(minutes=30), id="no digits before the point"),
        pytest.param("5.h", timedelta(hours=5), id="no digits after the point"),
        pytest.param("1h1h", timedelta(hours=2), id="repeated units add up"),
    ],
)
def test_parses_go_durations(text: str, expected: timedelta) -> None:
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("", "empty", id="refuses the empty string"),
        pytest.param("90d", "2160h", id="explains that there are no days"),
        pytest.param("2w", "168h", id="explains that there are no weeks"),
        pytest.param("10", "has no unit", id="refuses a number without unit"),
        pytest.param("1x", "unknown unit 'x'", id="refuses an unknown unit"),
        pytest.param("h", "number is missing", id="refuses a unit without number"),
        pytest.param(".h", "number is missing", id="refuses a lone point"),
        pytest.param("1h ", "unknown unit", id="refuses trailing space"),
        pytest.param("-", "empty", id="refuses a lone sign"),
        pytest.param("1.2.3h", "expected a number", id="refuses two points"),
        pytest.param("٣h", "number is missing", id="refuses non-ASCII digits"),
        pytest.param("3000000h", "292 years", id="refuses what overflows Go's int64"),
    ],
)
def test_refuses_what_go_refuses(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as caught:
        parse_go_duration(text)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(timedelta(0), "0s", id="zero"),
        pytest.param(timedelta(days=90), "2160h0m0s", id="ninety days as cert-manager prints it"),
        pytest.param(timedelta(minutes=90), "1h30m0s", id="an hour and a half"),
        pytest.param(timedelta(seconds=90), "1m30s", id="no hours when under an hour"),
        pytest.param(timedelta(seconds=1.5), "1.5s", id="fractional seconds"),
        pytest.param(timedelta(milliseconds=500), "500ms", id="under a second in milliseconds"),
        pytest.param(timedelta(microseconds=1500), "1.5ms", id="fractional milliseconds"),
        pytest.param(timedelta(microseconds=7), "7µs", id="microseconds with the micro sign"),
        pytest.param(timedelta(hours=-1), "-1h0m0s", id="negative"),
    ],
)
def test_formats_like_go(value: timedelta, text: str) -> None:
    assert format_go_duration(value) == text
    assert parse_go_duration(text) == value
