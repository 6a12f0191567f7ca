"""Immutable, hashable JSON values, so that parsed specs can be frozen dataclasses all the way down.

``FrozenDict`` subclasses ``dict`` on purpose: values taken from a parsed spec (solver pod
overrides, labels) end up inside manifests that ``json.dumps`` and the Kubernetes client serialise,
and both accept dict subclasses and tuples as JSON objects and arrays. Mutating methods raise, and
the hash is computed from the items, so two equal specs hash equally.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, TypeAlias, TypeVar

__all__ = [
    "FrozenDict",
    "JSONValue",
    "canonical_sha256",
    "freeze_fields",
    "freeze_json",
    "thaw_json",
]

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(dict[K, V]):
    """A dict that refuses changes after construction and can be hashed and used in sets."""

    __slots__ = ("_hash",)

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        super().__init__(items)
        self._hash: int | None = None

    def __hash__(self) -> int:  # type: ignore[override]
        if self._hash is None:
            self._hash = hash(frozenset(self.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))

    def __copy__(self) -> FrozenDict[K, V]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict[K, V]:
        return self

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("FrozenDict is immutable")

    __setitem__ = _refuse
    __delitem__ = _refuse
    __ior__ = _refuse
    clear = _refuse
    pop = _refuse
    popitem = _refuse
    setdefault = _refuse
    update = _refuse


JSONValue: TypeAlias = (
    "bool | int | float | str | tuple[JSONValue, ...] | FrozenDict[str, JSONValue] | None"
)


def freeze_json(value: Any) -> JSONValue:
    """Deep-copy plain JSON into tuples and FrozenDicts; TypeError for anything that is not JSON."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return tuple(freeze_json(item) for item in value)
    if isinstance(value, Mapping):
        frozen: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, got {key!r}")
            frozen[key] = freeze_json(item)
        return FrozenDict(frozen)
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def thaw_json(value: JSONValue | Mapping[str, JSONValue]) -> Any:
    """The plain dict/list form of a frozen value, for code that must mutate a manifest."""
    if isinstance(value, tuple):
        return [thaw_json(item) for item in value]
    if isinstance(value, Mapping):
        return {key: thaw_json(item) for key, item in value.items()}
    return value


def canonical_sha256(value: Any) -> str:
    """sha256 hex of ``value`` as canonical JSON (sorted keys, no spaces, ASCII)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def freeze_fields(instance: object, *names: str) -> None:
    """In a frozen dataclass's ``__post_init__``: make the named mapping fields FrozenDicts.

    The fields are typed ``Mapping`` so that type checkers refuse writes to them; this makes
    them hashable at run time too, however the dataclass was constructed.
    """
    for name in names:
        value = getattr(instance, name)
        if not isinstance(value, FrozenDict):
            object.__setattr__(instance, name, freeze_json(value))
