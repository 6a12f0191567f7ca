"""metav1.Condition values and the merge rules for ``status.conditions`` lists of plain dicts.

The rules are Kubernetes' own (apimachinery ``meta.SetStatusCondition``): one entry per type,
replaced in place so the list keeps a stable order, and ``lastTransitionTime`` kept when the
status did not change, so that it tells users since when a Certificate has been failing rather
than when it was last looked at. Entries of other types are copied through untouched, including
ones this version does not understand. Constraints the API server enforces on metav1.Condition
(reason syntax, message length) are applied here, so a status patch is never refused for them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from acmebridge.domain.timefmt import ensure_utc, format_time, parse_time, truncate_to_second

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "Condition",
    "ConditionStatus",
    "get_condition",
    "remove_condition",
    "set_condition",
]

ConditionStatus = Literal["True", "False", "Unknown"]
_STATUSES: tuple[str, ...] = ("True", "False", "Unknown")
# metav1.Condition validation (apimachinery types.go).
_REASON = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?", re.ASCII)
_MAX_REASON_LENGTH = 1024
MAX_MESSAGE_LENGTH = 32768


@dataclass(frozen=True)
class Condition:
    """One metav1.Condition; the transition time is kept in UTC, truncated to the second."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    observed_generation: int | None
    last_transition_time: datetime

    def __post_init__(self) -> None:
        if not self.type or len(self.type) > 316:
            raise ValueError(f"condition type must be 1 to 316 characters, got {self.type!r}")
        if self.status not in _STATUSES:
            raise ValueError(f"condition status must be True, False or Unknown: {self.status!r}")
        if len(self.reason) > _MAX_REASON_LENGTH or _REASON.fullmatch(self.reason) is None:
            raise ValueError(f"condition reason must be CamelCase, got {self.reason!r}")
        if self.observed_generation is not None and self.observed_generation < 0:
            raise ValueError("observed_generation must be >= 0")
        if len(self.message) > MAX_MESSAGE_LENGTH:
            # Messages carry server text (ACME problem details) of unbounded size: cut, not fail.
            cut = self.message[: MAX_MESSAGE_LENGTH - 1] + "…"
            object.__setattr__(self, "message", cut)
        moment = truncate_to_second(
            ensure_utc(self.last_transition_time, name="lastTransitionTime")
        )
        object.__setattr__(self, "last_transition_time", moment)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with camelCase keys; observedGeneration left out when unknown."""
        out: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": format_time(self.last_transition_time),
        }
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        """Parse the JSON form; ValueError when a required field is missing or malformed."""
        try:
            generation = data.get("observedGeneration")
            if generation is not None and (
                isinstance(generation, bool) or not isinstance(generation, int)
            ):
                raise ValueError(f"observedGeneration must be an integer, got {generation!r}")
            for key in ("type", "status", "reason", "message", "lastTransitionTime"):
                if not isinstance(data.get(key), str):
                    raise ValueError(f"{key} must be a string, got {data.get(key)!r}")
            return cls(
                type=data["type"],
                status=cast(ConditionStatus, data["status"]),
                reason=data["reason"],
                message=data["message"],
                observed_generation=generation,
                last_transition_time=parse_time(data["lastTransitionTime"]),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a condition: {data!r} ({e})") from e


def get_condition(conditions: Sequence[Mapping[str, Any]], type: str) -> Condition | None:
    """The condition of ``type``, or None. Pure.

    A malformed entry (hand-edited status, an older writer) counts as absent: the next
    ``set_condition`` replaces it, which is the repair.
    """
    for entry in conditions:
        if isinstance(entry, Mapping) and entry.get("type") == type:
            try:
                return Condition.from_dict(entry)
            except ValueError:
                return None
    return None


def set_condition(conditions: Sequence[Mapping[str, Any]], new: Condition) -> list[dict[str, Any]]:
    """A new list with ``new`` in place of the condition of its type (appended if absent). Pure.

    When the status is unchanged the existing lastTransitionTime is kept; everything else comes
    from ``new``. The input is not modified.
    """
    out: list[dict[str, Any]] = []
    placed = False
    for entry in conditions:
        if not isinstance(entry, Mapping):
            continue  # not a condition at all: drop it rather than fail every patch
        if entry.get("type") != new.type:
            out.append(dict(entry))
            continue
        if placed:
            continue  # duplicate type: a list-map allows one
        old = get_condition([entry], new.type)
        merged = new
        if old is not None and old.status == new.status:
            merged = Condition(
                type=new.type,
                status=new.status,
                reason=new.reason,
                message=new.message,
                observed_generation=new.observed_generation,
                last_transition_time=old.last_transition_time,
            )
        out.append(merged.to_dict())
        placed = True
    if not placed:
        out.append(new.to_dict())
    return out


def remove_condition(conditions: Sequence[Mapping[str, Any]], type: str) -> list[dict[str, Any]]:
    """A new list without the condition of ``type``. Pure."""
    return [dict(c) for c in conditions if isinstance(c, Mapping) and c.get("type") != type]
