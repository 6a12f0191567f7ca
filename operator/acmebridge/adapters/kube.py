"""Kubernetes reads and writes, by name, as plain JSON dicts.

The operator never lists or watches Secrets: it reads the few it owns by name, and guards every
update and delete with the object's UID and resourceVersion so that it can never clobber a Secret
that changed hands between its read and its write. Bodies stay plain dicts (what the API server
sends), which keeps the domain layer free of the client library's models.

The client is synchronous; the reconcilers call it from a bounded thread pool.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from acmebridge.domain.timefmt import format_time

GROUP = "acmebridge.io"
#: Events whose count this process remembers (client-go's correlator keeps 4096 too)
EVENT_CACHE_SIZE = 4096
VERSION = "v1alpha1"


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Conflict(KubeError):
    """409: the object exists already, or changed since it was read."""


class NotFound(KubeError):
    """404."""


def _wrap(e: ApiException) -> KubeError:
    message = ""
    reason = str(e.reason or "")
    try:
        payload = json.loads(e.body or "{}")
        message = str(payload.get("message", ""))
        reason = str(payload.get("reason", reason))
    except (ValueError, AttributeError):
        message = str(e.body or "")[:500]
    status = int(e.status or 0)
    cls = Conflict if status == 409 else NotFound if status == 404 else KubeError
    return cls(status, reason, message)


def _from_status(status: int, raw: bytes | None) -> KubeError:
    reason, message = "", ""
    try:
        payload = json.loads(raw or b"{}")
        message = str(payload.get("message", ""))
        reason = str(payload.get("reason", ""))
    except ValueError:
        message = (raw or b"")[:500].decode("utf-8", "replace")
    cls = Conflict if status == 409 else NotFound if status == 404 else KubeError
    return cls(status, reason, message)


def api_client() -> k8s.ApiClient:
    """A client for the cluster this runs in, or else for the current kubeconfig context."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    return k8s.ApiClient()


def core_path(kind_plural: str, namespace: str | None, name: str | None = None) -> str:
    ns = f"/namespaces/{quote(namespace)}" if namespace else ""
    tail = f"/{quote(name)}" if name else ""
    return f"/api/v1{ns}/{kind_plural}{tail}"


def group_path(
    group: str, version: str, plural: str, namespace: str | None, name: str | None = None
) -> str:
    ns = f"/namespaces/{quote(namespace)}" if namespace else ""
    tail = f"/{quote(name)}" if name else ""
    return f"/apis/{group}/{version}{ns}/{plural}{tail}"


def ours_path(plural: str, namespace: str | None, name: str | None = None) -> str:
    return group_path(GROUP, VERSION, plural, namespace, name)


#: subresources of a Namespace itself: ``/api/v1/namespaces/<name>/status`` is the Namespace's
#: status, not a resource "status" in that namespace (the API server's RequestInfo reads it so)
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


def resource_of(path: str) -> str:
    """The resource a request path names, for a metrics label: its plural, with the subresource
    after a slash (``certificates/status``), or ``""`` for a path outside the resource APIs.

    Read by position, as the API server reads its own paths, so that an object's name never
    becomes a label value: the label stays as low-cardinality as the set of kinds we touch.
    """
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts[:1] == ["api"]:
        parts = parts[2:]
    elif parts[:1] == ["apis"]:
        parts = parts[3:]
    else:
        return ""
    if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] not in _NAMESPACE_SUBRESOURCES:
        parts = parts[2:]
    if not parts:
        return ""
    return f"{parts[0]}/{parts[2]}" if len(parts) >= 3 else parts[0]


class Kube:
    """Thin raw-JSON access to the API server through one shared ``ApiClient``."""

    def __init__(
        self, api: k8s.ApiClient, *, on_request: Callable[[str, int, str], None] | None = None
    ) -> None:
        self.api = api
        #: called with (HTTP method, status; 0 when unreached, resource: :func:`resource_of` the
        #: path) after every request, for metrics
        self.on_request = on_request
        self._events_lock = threading.Lock()
        self._event_counts: OrderedDict[str, int] = OrderedDict()

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            method_, url, headers_, body_, post = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            resp = self.api.call_api(
                method_,
                url,
                header_params=headers_,
                body=body_,
                post_params=post,
                _request_timeout=(5, 30),
            )
            raw = resp.read()  # type: ignore[no-untyped-call]
        except ApiException as e:
            self._count(method, int(e.status or 0), path)
            raise _wrap(e) from e
        except Exception as e:  # urllib3 errors: the server was not reached
            self._count(method, 0, path)
            raise KubeError(0, "Unreachable", str(e)) from e
        self._count(method, int(resp.status), path)
        if not 200 <= resp.status <= 299:
            raise _from_status(resp.status, raw)
        return json.loads(raw) if raw else None

    def _count(self, method: str, status: int, path: str) -> None:
        if self.on_request is not None:
            self.on_request(method, status, resource_of(path))

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call("GET", path)
            return result
        except NotFound:
            return None

    def list(
        self, path: str, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        if field_selector:
            query.append(("fieldSelector", field_selector))
        result = self._call("GET", path, query=query)
        items: list[dict[str, Any]] = result.get("items", []) if result else []
        return items

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", path, body=dict(body))
        return result

    def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: the body's resourceVersion makes this fail with Conflict if the object moved."""
        result: dict[str, Any] = self._call("PUT", path, body=dict(body))
        return result

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "PATCH", path, body=dict(patch), content_type="application/merge-patch+json"
        )
        return result

    def delete(
        self, path: str, *, uid: str | None = None, resource_version: str | None = None
    ) -> bool:
        """Delete; preconditions make it refuse when the object is not the one that was read."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        pre = {}
        if uid:
            pre["uid"] = uid
        if resource_version:
            pre["resourceVersion"] = resource_version
        if pre:
            body["preconditions"] = pre
        body["propagationPolicy"] = "Background"
        try:
            self._call("DELETE", path, body=body)
            return True
        except NotFound:
            return False

    # Events ---------------------------------------------------------------------------------

    def record_event(
        self,
        *,
        involved: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        now: datetime,
        component: str = "acmebridge",
    ) -> None:
        """A core/v1 Event, aggregated: the same reason and message on the same object raise
        ``count`` on one Event instead of adding another (as kubelet and cert-manager do).

        Like client-go's event correlator, the counts of Events this process posted are kept in
        memory (a bounded LRU), so posting costs one write and no read; only an Event made by an
        earlier process (a 409 on create) is read once to learn its count.
        """
        meta = involved.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        uid = str(meta.get("uid", ""))
        digest = hashlib.sha256(f"{uid}\x00{type_}\x00{reason}\x00{message}".encode()).hexdigest()
        # A cut ending in '.' or '-' would make the Event's name invalid ("x..<digest>").
        name = f"{str(meta.get('name', 'object'))[:200].rstrip('-.')}.{digest[:16]}"
        stamp = format_time(now)
        path = core_path("events", namespace, name)
        with self._events_lock:
            count = self._event_counts.pop(path, None)
        if count is None:
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": involved.get("apiVersion"),
                    "kind": involved.get("kind"),
                    "name": meta.get("name"),
                    "namespace": meta.get("namespace"),
                    "uid": uid,
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "type": type_,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": component},
                "reportingComponent": component,
                "reportingInstance": component,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            try:
                self.create(core_path("events", namespace), body)
                count = 1
            except Conflict:
                existing = self.get(path)
                count = int((existing or {}).get("count", 1)) + 1
                self.merge_patch(path, {"count": count, "lastTimestamp": stamp})
        else:
            count += 1
            self.merge_patch(path, {"count": count, "lastTimestamp": stamp})
        with self._events_lock:
            self._event_counts[path] = count
            while len(self._event_counts) > EVENT_CACHE_SIZE:
                self._event_counts.popitem(last=False)
