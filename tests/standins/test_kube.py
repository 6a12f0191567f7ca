"""Watching resumes: after a 410 or a broken connection the node agent lists again."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.lab.standins._kube import ApiError, WatchExpired, list_and_watch


def _pod(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


class ScriptedApi:
    """Each list answers the next listing; each watch plays the next script, then fails."""

    def __init__(
        self, listings: list[list[str]], watches: list[list[dict[str, Any] | Exception]]
    ) -> None:
        self.listings, self.watches = listings, watches
        self.watched_from: list[str] = []

    def get(self, path: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        names = self.listings.pop(0)
        return {"metadata": {"resourceVersion": "10"}, "items": [_pod(n, "10") for n in names]}

    def watch(
        self, path: str, *, resource_version: str, query: Mapping[str, str]
    ) -> Iterator[dict[str, Any]]:
        self.watched_from.append(resource_version)
        script = self.watches.pop(0) if self.watches else []
        for step in script:
            if isinstance(step, Exception):
                raise step
            yield step


def test_an_expired_watch_lists_again_and_a_normal_end_resumes_from_the_last_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tests.lab.standins._kube.time.sleep", lambda _: None)
    api = ScriptedApi(
        listings=[["a"], ["b"], ["c"]],
        watches=[
            [
                {"type": "ADDED", "object": _pod("x", "11")},
                {"type": "BOOKMARK", "object": _pod("", "12")},
            ],
            [WatchExpired("/api/v1/pods")],
            [ApiError(500, "WATCH", "/api/v1/pods", "{}")],
        ],
    )
    lists: list[list[str]] = []
    events: list[tuple[str, str]] = []
    list_and_watch(
        api,
        "/api/v1/pods",
        query={},
        on_list=lambda items: lists.append([i["metadata"]["name"] for i in items]),
        on_event=lambda kind, obj: events.append((kind, obj["metadata"]["name"])),
        keep_going=lambda: len(lists) < 3,
    )
    assert lists == [["a"], ["b"], ["c"]], "each failure is followed by a fresh list"
    assert events == [("ADDED", "x")], "bookmarks only move the version"
    assert api.watched_from[:3] == ["10", "12", "10"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            '{"kind": "Status", "message": "pods \\"p\\" not found"}',
            'pods "p" not found',
            id="a Status body gives its message",
        ),
        pytest.param(
            "upstream connect error", "upstream connect error", id="any other body is kept whole"
        ),
    ],
)
def test_an_api_error_carries_the_status_code_and_the_servers_message(
    body: str, message: str
) -> None:
    error = ApiError(404, "GET", "/api/v1/namespaces/ns/pods/p", body)
    assert error.status == 404
    assert str(error) == f"GET /api/v1/namespaces/ns/pods/p: 404 {message}"
