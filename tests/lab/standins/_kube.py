"""A small JSON client for the Kubernetes API, shared by the lab's stand-ins (test-only code).

The stand-ins read and write plain dicts rather than the generated models: they touch a few
fields only, and the models get in the way (the Binding subresource answers with a Status that
the generated ``V1Binding`` refuses to deserialise). The kubernetes package still does the parts
worth reusing: reading the kubeconfig and building a TLS connection pool from it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3
from kubernetes import config as kube_config

JSON = dict[str, Any]
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

log = logging.getLogger("standins")


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        message = parsed.get("message", body) if isinstance(parsed, dict) else body
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class Kube:
    """Requests against one API server, authenticated as the kubeconfig's current user."""

    def __init__(self, kubeconfig: str) -> None:
        load: Any = kube_config.new_client_from_config  # the package has no type hints here
        client = load(config_file=kubeconfig)
        self._host: str = client.configuration.host
        self._pool: urllib3.PoolManager = client.rest_client.pool_manager
        self._headers = {"Accept": "application/json"}
        token = client.configuration.get_api_key_with_prefix("BearerToken")
        if token:
            self._headers["Authorization"] = token

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        url = self._host + path + ("?" + urlencode(query) if query else "")
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        response = self._pool.request(
            method, url, body=data, headers=headers, timeout=timeout, retries=False
        )
        text = response.data.decode("utf-8", errors="replace")
        if response.status >= 400:
            raise ApiError(response.status, method, path, text)
        result: JSON = json.loads(text) if text else {}
        return result

    def get(self, path: str, query: Mapping[str, str] | None = None) -> JSON:
        return self.request("GET", path, query=query)

    def watch(
        self, path: str, *, resource_version: str, query: Mapping[str, str]
    ) -> Iterator[JSON]:
        """Yields watch events ({type, object}) until the server ends the watch."""
        params = {
            **query,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "60",
        }
        url = self._host + path + "?" + urlencode(params)
        # The read timeout outlasts the server-side timeout, so a silent server is noticed.
        timeout = urllib3.Timeout(connect=5.0, read=90.0)
        response = self._pool.request(
            "GET", url, headers=self._headers, timeout=timeout, preload_content=False, retries=False
        )
        try:
            if response.status == 410:
                raise WatchExpired(path)
            if response.status >= 400:
                raise ApiError(response.status, "WATCH", path, response.data.decode())
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=False):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event: JSON = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object", {})
                        if status.get("code") == 410:
                            raise WatchExpired(path)
                        raise ApiError(
                            int(status.get("code", 500)), "WATCH", path, json.dumps(status)
                        )
                    yield event
        finally:
            response.release_conn()


class ListWatch(Protocol):
    def get(self, path: str, query: Mapping[str, str] | None = None) -> JSON: ...

    def watch(
        self, path: str, *, resource_version: str, query: Mapping[str, str]
    ) -> Iterator[JSON]: ...


def list_and_watch(
    kube: ListWatch,
    path: str,
    *,
    query: Mapping[str, str],
    on_list: Callable[[list[JSON]], None],
    on_event: Callable[[str, JSON], None],
    keep_going: Callable[[], bool],
) -> None:
    """Lists, then watches from the list's resourceVersion; lists again whenever a watch fails.

    ``on_list`` receives the whole current set, so the caller can notice objects that went away
    while nobody was watching (the 410 case).
    """
    resource_version = ""
    while keep_going():
        try:
            if not resource_version:
                listing = kube.get(path, query)
                resource_version = listing["metadata"]["resourceVersion"]
                on_list(listing.get("items") or [])
            for event in kube.watch(path, resource_version=resource_version, query=query):
                obj = event.get("object") or {}
                resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                if event["type"] != "BOOKMARK":
                    on_event(event["type"], obj)
        except WatchExpired:
            log.info("watch %s expired; listing again", path)
            resource_version = ""
        except Exception as error:  # a broken connection or a failing callback: list again
            log.warning("watch %s failed (%s); listing again in 1s", path, error)
            resource_version = ""
            time.sleep(1.0)


def setup_logging(component: str) -> None:
    """One line per action on stderr, with the component's name, for the lab's log files."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {component} %(levelname)s %(message)s",
    )
