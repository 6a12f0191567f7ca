"""status.conditions merging (metav1.Condition rules) and the RFC 3339 times they carry."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from acmebridge.domain.conditions import (
    MAX_MESSAGE_LENGTH,
    Condition,
    get_condition,
    remove_condition,
    set_condition,
)
from acmebridge.domain.timefmt import format_time, parse_time

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


def ready(
    status: str = "True", *, at: datetime = T0, reason: str = "Ready", gen: int = 1
) -> Condition:
    return Condition(
        type="Ready",
        status=status,  # type: ignore[arg-type]
        reason=reason,
        message=f"message for {reason}",
        observed_generation=gen,
        last_transition_time=at,
    )


def test_condition_round_trips_through_json() -> None:
    cond = ready()
    as_dict = cond.to_dict()
    assert as_dict == {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "message for Ready",
        "observedGeneration": 1,
        "lastTransitionTime": "2025-03-01T12:00:00Z",
    }
    assert Condition.from_dict(as_dict) == cond


def test_condition_without_generation_omits_it() -> None:
    cond = Condition("Issuing", "Unknown", "Pending", "", None, T0)
    assert "observedGeneration" not in cond.to_dict()
    assert Condition.from_dict(cond.to_dict()) == cond


def test_condition_time_is_utc_and_whole_seconds() -> None:
    # metav1.Time drops fractions; keeping them would make a round trip compare unequal.
    local = (T0 + timedelta(microseconds=123456)).astimezone(timezone(timedelta(hours=-5)))
    cond = ready(at=local)
    assert cond.last_transition_time == T0
    assert Condition.from_dict(cond.to_dict()) == cond


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        pytest.param({"status": "Maybe"}, "True, False or Unknown", id="refuses an unknown status"),
        pytest.param({"reason": "not camel case"}, "CamelCase", id="refuses a reason with spaces"),
        pytest.param({"reason": ""}, "CamelCase", id="refuses an empty reason"),
        pytest.param({"type": ""}, "type", id="refuses an empty type"),
        pytest.param(
            {"observed_generation": -1}, "observed_generation", id="refuses a negative generation"
        ),
        pytest.param(
            {"last_transition_time": datetime(2025, 1, 1)},
            "timezone-aware",
            id="refuses naive times",
        ),
    ],
)
def test_condition_refuses_what_the_api_server_would(kwargs: dict[str, Any], fragment: str) -> None:
    fields: dict[str, Any] = {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "",
        "observed_generation": 1,
        "last_transition_time": T0,
    }
    with pytest.raises(ValueError, match=fragment):
        Condition(**{**fields, **kwargs})


def test_long_messages_are_cut_rather_than_refused() -> None:
    cond = Condition("Ready", "False", "Failed", "x" * 100_000, 1, T0)
    assert len(cond.message) == MAX_MESSAGE_LENGTH
    assert cond.message.endswith("…")


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        pytest.param({"type": "Ready"}, "status", id="refuses a missing status"),
        pytest.param(
            {**ready().to_dict(), "lastTransitionTime": "yesterday"},
            "RFC 3339",
            id="refuses a bad time",
        ),
        pytest.param(
            {**ready().to_dict(), "observedGeneration": "3"},
            "integer",
            id="refuses a string generation",
        ),
        pytest.param({**ready().to_dict(), "status": "yes"}, "status", id="refuses a bad status"),
    ],
)
def test_from_dict_refuses_malformed_entries(entry: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Condition.from_dict(entry)


@pytest.mark.parametrize(
    ("before", "new", "expected_time"),
    [
        pytest.param([], ready(at=T0), T0, id="a new condition takes its own time"),
        pytest.param(
            [ready("True", at=T0).to_dict()],
            ready("True", at=T1, reason="StillReady"),
            T0,
            id="an unchanged status keeps its transition time",
        ),
        pytest.param(
            [ready("True", at=T0).to_dict()],
            ready("False", at=T1, reason="Failed"),
            T1,
            id="a changed status takes the new transition time",
        ),
        pytest.param(
            [{"type": "Ready", "status": "True"}],
            ready("True", at=T1),
            T1,
            id="a malformed entry of the type is replaced whole",
        ),
    ],
)
def test_set_condition_transition_time(
    before: list[dict[str, Any]], new: Condition, expected_time: datetime
) -> None:
    after = set_condition(before, new)
    got = get_condition(after, "Ready")
    assert got is not None
    assert got.last_transition_time == expected_time
    assert (got.status, got.reason, got.message) == (new.status, new.reason, new.message)


def test_set_condition_updates_generation_and_reason_in_place() -> None:
    issuing = {
        "type": "Issuing",
        "status": "True",
        "reason": "Renewing",
        "message": "",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    other = {"type": "example.com/Custom", "status": "True", "extra": {"kept": True}}
    before = [issuing, ready(gen=1).to_dict(), other]
    snapshot = copy.deepcopy(before)
    after = set_condition(before, ready(reason="Updated", gen=2, at=T1))
    assert [c["type"] for c in after] == ["Issuing", "Ready", "example.com/Custom"]
    assert after[1]["reason"] == "Updated"
    assert after[1]["observedGeneration"] == 2
    assert after[0] == issuing and after[2] == other  # others copied through untouched
    assert before == snapshot  # the input is not modified


def test_set_condition_appends_a_new_type_at_the_end() -> None:
    after = set_condition([ready().to_dict()], Condition("Issuing", "True", "Renewing", "", 1, T0))
    assert [c["type"] for c in after] == ["Ready", "Issuing"]


def test_set_condition_collapses_duplicate_types() -> None:
    twice = [ready(at=T0).to_dict(), ready("False", at=T1, reason="Old").to_dict()]
    after = set_condition(twice, ready("True", at=T1, reason="Now"))
    assert [c["type"] for c in after] == ["Ready"]
    assert after[0]["lastTransitionTime"] == "2025-03-01T12:00:00Z"


def test_set_condition_is_idempotent() -> None:
    once = set_condition([], ready())
    assert set_condition(once, ready(at=T1)) == once


def test_get_condition() -> None:
    conditions = [ready().to_dict(), {"type": "Issuing", "status": "bogus"}]
    assert get_condition(conditions, "Ready") == ready()
    assert get_condition(conditions, "Missing") is None
    assert get_condition(conditions, "Issuing") is None  # malformed counts as absent
    assert get_condition([], "Ready") is None


def test_remove_condition() -> None:
    conditions = [ready().to_dict(), {"type": "Issuing", "status": "True"}]
    assert remove_condition(conditions, "Issuing") == [ready().to_dict()]
    assert remove_condition(conditions, "Absent") == conditions
    assert len(conditions) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2025-03-01T12:00:00Z", T0, id="Kubernetes form"),
        pytest.param("2025-03-01t12:00:00z", T0, id="lower case separators"),
        pytest.param("2025-03-01T14:00:00+02:00", T0, id="an offset converts to UTC"),
        pytest.param(
            "2025-03-01T12:00:00.123456789Z",
            T0 + timedelta(microseconds=123456),
            id="nanoseconds from Go are cut to microseconds",
        ),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    got = parse_time(text)
    assert got == expected
    assert got.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2025-03-01", id="refuses a date alone"),
        pytest.param("2025-03-01T12:00:00", id="refuses a time without offset"),
        pytest.param("20250301T120000Z", id="refuses the basic format"),
        pytest.param("2025-13-01T12:00:00Z", id="refuses month thirteen"),
        pytest.param("", id="refuses the empty string"),
    ],
)
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time(text)


def test_format_time_is_utc_whole_seconds_with_z() -> None:
    moment = (T0 + timedelta(microseconds=999_999)).astimezone(timezone(timedelta(hours=9)))
    assert format_time(moment) == "2025-03-01T12:00:00Z"
    assert parse_time(format_time(moment)) == T0
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2025, 1, 1))
