"""Reading untrusted Kubernetes JSON field by field, with the field's path in every error.

The CRD schema may not have been applied (an older CRD, a write straight to etcd, a schema bug),
so the parsers in ``spec`` check types themselves, and every failure becomes a ``SpecError`` whose
message starts with the offending path (``spec.dnsNames[2]: ...``): that message is what the
user reads in ``kubectl describe``. JSON ``null`` reads as an absent field, as it does for the API
server's own types; an empty string reads as absent for optional strings, as in cert-manager.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NoReturn

from acmebridge.domain.errors import SpecError
from acmebridge.domain.frozen import FrozenDict

__all__ = ["INVALID_SPEC", "Fields", "check_object_name", "check_qualified_name", "invalid"]

INVALID_SPEC = "InvalidSpec"

_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", re.ASCII)
_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII
)


def invalid(path: str, message: str) -> NoReturn:
    """Raise the SpecError for ``path``."""
    raise SpecError(INVALID_SPEC, f"{path}: {message}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_object_name(value: str, path: str) -> str:
    """A Kubernetes object name (DNS-1123 subdomain), as Secrets and Issuers must have."""
    if len(value) > 253 or _DNS_SUBDOMAIN.fullmatch(value) is None:
        invalid(
            path,
            f"{_show(value)} is not a valid object name: use at most 253 lower-case letters, "
            "digits, '-' and '.', starting and ending with a letter or digit",
        )
    return value


def check_qualified_name(key: str, path: str) -> None:
    """A label or annotation key: an optional DNS-subdomain prefix and a name of ≤ 63 characters."""
    prefix, slash, name = key.rpartition("/")
    ok = _LABEL_NAME.fullmatch(name) is not None
    if slash:
        ok = ok and len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix) is not None
    if not ok:
        invalid(
            path,
            f"{_show(key)} is not a valid key: an optional DNS prefix and '/', then at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        )


class Fields:
    """One JSON object of a spec and its path; typed accessors that raise SpecError."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            invalid(path, f"must be an object, got {type(data).__name__}")
        self.data: Mapping[Any, Any] = data
        self.path = path

    def at(self, key: str) -> str:
        """The path of ``key`` below this object."""
        return f"{self.path}.{key}"

    def fail(self, key: str, message: str) -> NoReturn:
        invalid(self.at(key), message)

    def has(self, key: str) -> bool:
        value = self.data.get(key)
        return value is not None and value != ""

    def object(self, key: str, *, required: bool = False) -> Fields | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return None
        return Fields(value, self.at(key))

    def string(
        self,
        key: str,
        *,
        required: bool = False,
        max_length: int | None = None,
    ) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                self.fail(key, "is required")
            return None
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_show(value)}")
        if max_length is not None and len(value) > max_length:
            self.fail(key, f"must be at most {max_length} characters long")
        return value

    def required_string(self, key: str, *, max_length: int | None = None) -> str:
        value = self.string(key, required=True, max_length=max_length)
        assert value is not None
        return value

    def choice(self, key: str, allowed: tuple[str, ...], *, default: str) -> str:
        value = self.string(key)
        if value is None:
            return default
        if value not in allowed:
            self.fail(key, f"must be one of {', '.join(allowed)}; got {_show(value)}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {_show(value)}")
        return value

    def integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        # JSON has one number type: 2048.0 is 2048, but True is not 1.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {_show(value)}")
        return value

    def items(self, key: str, *, max_items: int) -> list[tuple[str, Any]]:
        """The elements of a list field with their paths; absent means empty."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            self.fail(key, f"must be a list, got {type(value).__name__}")
        if len(value) > max_items:
            self.fail(key, f"may hold at most {max_items} entries, got {len(value)}")
        return [(f"{self.at(key)}[{i}]", item) for i, item in enumerate(value)]

    def strings(
        self, key: str, *, max_items: int, max_length: int | None = None
    ) -> tuple[str, ...]:
        """A list of strings, in order, duplicates removed."""
        out: dict[str, None] = {}
        for path, item in self.items(key, max_items=max_items):
            if not isinstance(item, str):
                invalid(path, f"must be a string, got {_show(item)}")
            if max_length is not None and len(item) > max_length:
                invalid(path, f"must be at most {max_length} characters long")
            out[item] = None
        return tuple(out)

    def string_map(
        self,
        key: str,
        *,
        max_items: int | None = None,
        max_value_length: int | None = None,
        check_keys: bool = False,
        label_values: bool = False,
        reserved_prefix: str | None = None,
    ) -> FrozenDict[str, str]:
        """An object of string values (labels, annotations, nodeSelector)."""
        value = self.data.get(key)
        if value is None:
            return FrozenDict()
        if not isinstance(value, Mapping):
            self.fail(key, f"must be an object of strings, got {type(value).__name__}")
        if max_items is not None and len(value) > max_items:
            self.fail(key, f"may hold at most {max_items} entries, got {len(value)}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                self.fail(key, f"keys must be strings, got {_show(k)}")
            path = f"{self.at(key)}[{k!r}]"
            if not isinstance(v, str):
                invalid(path, f"must be a string, got {_show(v)}")
            if max_value_length is not None and len(v) > max_value_length:
                invalid(path, f"must be at most {max_value_length} characters long")
            if check_keys:
                check_qualified_name(k, path)
            if label_values and v and _LABEL_NAME.fullmatch(v) is None:
                invalid(
                    path,
                    f"{_show(v)} is not a valid label value: at most 63 letters, digits, '-', "
                    "'_' or '.', starting and ending with a letter or digit",
                )
            if reserved_prefix is not None and k.startswith(reserved_prefix):
                invalid(
                    path,
                    f"keys under {reserved_prefix} are set by the operator itself, "
                    "to recognise the objects it owns; use another prefix",
                )
            out[k] = v
        return FrozenDict(out)
