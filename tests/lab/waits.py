"""Bounded waits for lab tests, whose failures say what was awaited and what was seen instead.

Integration tests wait on real servers with real time. A bare timeout tells nothing; these
messages carry the object's status and its Events, which is what one would otherwise fetch with
`kubectl describe` after the lab is gone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import yaml
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")
JSON = dict[str, Any]


class WaitTimeout(AssertionError):
    """A wait ran out of time; pytest reports it as a failed assertion with this message."""


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    describe: str | Callable[[], str],
) -> T:
    """Calls ``predicate`` until it returns something truthy, and returns that.

    ``describe`` names what is awaited; a callable is evaluated only on failure, so it may fetch
    the current state for the message. Exceptions from ``predicate`` propagate: a predicate that
    expects "not found yet" handles it itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = describe() if callable(describe) else describe
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def get_object(
    api: ApiClient, group: str, version: str, plural: str, namespace: str | None, name: str
) -> JSON | None:
    """Any object as plain JSON (core group when ``group`` is empty), None when it is absent."""
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    method, url, headers, _, _ = api.param_serialize(
        "GET",
        f"{prefix}{scope}/{plural}/{name}",
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, _request_timeout=(5, 30))
    raw: bytes = response.read()  # type: ignore[no-untyped-call]
    if response.status == 404:
        return None
    if not 200 <= response.status < 300:
        raise ApiException(status=response.status, reason=response.reason, body=raw.decode())
    body: JSON = json.loads(raw)
    return body


def condition(obj: JSON | None, cond_type: str) -> JSON | None:
    """The condition of type ``cond_type`` in ``status.conditions``, if any."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == cond_type), None)


def wait_for_condition(
    api: ApiClient,
    group: str,
    version: str,
    plural: str,
    namespace: str | None,
    name: str,
    cond_type: str,
    status: str = "True",
    timeout: float = 60,
) -> JSON:
    """Waits until the object has condition ``cond_type`` with ``status``; returns the object.

    On timeout the message shows the object's status as YAML and its Events.
    """
    seen: list[JSON | None] = [None]

    def met() -> JSON | None:
        seen[0] = get_object(api, group, version, plural, namespace, name)
        found = condition(seen[0], cond_type)
        return seen[0] if found is not None and found.get("status") == status else None

    def describe() -> str:
        where = f"{namespace}/{name}" if namespace else name
        head = f"{plural}.{group or 'core'} {where} to have condition {cond_type}={status}"
        if seen[0] is None:
            return f"{head}; the object does not exist"
        return (
            f"{head}\nstatus:\n{_indent(yaml.safe_dump(seen[0].get('status') or {}))}"
            f"events:\n{_indent(describe_events(api, seen[0]))}"
        )

    return wait_for(met, timeout=timeout, interval=0.25, describe=describe)


def describe_events(api: ApiClient, obj: JSON) -> str:
    """The object's Events, oldest first, one line each (as `kubectl describe` lists them)."""
    meta = obj.get("metadata") or {}
    selector = f"involvedObject.uid={meta.get('uid', '')}"
    core = CoreV1Api(api)
    # Events about a cluster-scoped object may be recorded in any namespace (often `default`).
    if meta.get("namespace"):
        events = core.list_namespaced_event(meta["namespace"], field_selector=selector).items
    else:
        events = core.list_event_for_all_namespaces(field_selector=selector).items
    if not events:
        return "(none)\n"

    def when(event: Any) -> str:
        stamp = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
        return stamp.isoformat() if stamp else ""

    lines = [
        f"{when(e)}  {e.type}  {e.reason}  {(e.message or '').strip()}"
        + (f" (x{e.count})" if e.count and e.count > 1 else "")
        for e in sorted(events, key=when)
    ]
    return "\n".join(lines) + "\n"


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
