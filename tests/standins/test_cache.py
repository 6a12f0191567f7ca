"""The stand-ins' watch cache: a list is the whole truth, events update it, failures keep it.

Without the lab: a scripted API plays lists and watches (and their failures) in order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.lab.standins._cache import WatchCache
from tests.lab.standins._kube import WatchExpired

JSON = dict[str, Any]


def obj(name: str, namespace: str = "ns", **labels: str) -> JSON:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}}


def names(cache: WatchCache) -> list[str]:
    return sorted(o["metadata"]["name"] for o in cache.items())


class ScriptedApi:
    """Lists answer the next listing (or raise it); watches play the next script, then end;
    once the scripts are spent, a watch fails as a vanished API server would."""

    def __init__(self, listings: list[list[JSON] | Exception], watches: list[list[Any]]) -> None:
        self.listings, self.watches = listings, watches
        self.lists = 0

    def get(self, path: str, query: Mapping[str, str] | None = None) -> JSON:
        self.lists += 1
        listing = self.listings.pop(0)
        if isinstance(listing, Exception):
            raise listing
        return {"metadata": {"resourceVersion": "1"}, "items": listing}

    def watch(
        self, path: str, *, resource_version: str, query: Mapping[str, str]
    ) -> Iterator[JSON]:
        for step in self.watches.pop(0) if self.watches else [ConnectionRefusedError("gone")]:
            if isinstance(step, Exception):
                raise step
            yield step


def run_until(cache: WatchCache, api: ScriptedApi, lists: int) -> None:
    """Runs the cache's list-and-watch loop until ``api`` has answered ``lists`` lists."""
    stop = threading.Event()
    original = api.get

    def get(path: str, query: Mapping[str, str] | None = None) -> JSON:
        if api.lists + 1 >= lists:
            stop.set()  # this list is the last one the loop makes
        return original(path, query)

    api.get = get  # type: ignore[method-assign]
    thread = threading.Thread(target=cache.run, args=(api, stop), daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), f"the loop did not reach list {lists}"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.lab.standins._kube.time.sleep", lambda _: None)


def test_events_add_change_and_remove_objects_after_the_first_list() -> None:
    changed = {**obj("b"), "spec": {"v": 2}}
    api = ScriptedApi(
        listings=[[obj("a"), obj("b")], ConnectionRefusedError("gone")],
        watches=[
            [
                {"type": "ADDED", "object": obj("c")},
                {"type": "MODIFIED", "object": changed},
                {"type": "DELETED", "object": obj("a")},
                WatchExpired("/x"),
            ]
        ],
    )
    cache = WatchCache("/x")
    assert not cache.synced
    run_until(cache, api, lists=2)
    assert cache.synced
    assert names(cache) == ["b", "c"]
    assert cache.get("ns", "b") == changed


def test_a_new_list_drops_what_was_deleted_while_nobody_watched() -> None:
    api = ScriptedApi(
        listings=[[obj("a"), obj("b")], [obj("b"), obj("d")]],
        watches=[[WatchExpired("/x")]],
    )
    cache = WatchCache("/x")
    run_until(cache, api, lists=2)
    assert names(cache) == ["b", "d"]


def test_an_unreachable_api_server_leaves_the_last_objects_in_place() -> None:
    refused = ConnectionRefusedError("nothing listens")
    api = ScriptedApi(
        listings=[[obj("a")], refused, refused, refused],
        watches=[[{"type": "ADDED", "object": obj("b")}, OSError("connection reset")]],
    )
    cache = WatchCache("/x")
    run_until(cache, api, lists=4)
    assert api.lists == 4, "it kept trying to list again"
    assert names(cache) == ["a", "b"]
    assert cache.synced


@pytest.mark.parametrize(
    ("namespace", "value", "expected"),
    [
        pytest.param("ns", "web", ["web-1", "web-2"], id="every slice of the Service"),
        pytest.param("other", "web", ["web-3"], id="only in the namespace asked for"),
        pytest.param("ns", "api", [], id="another Service's are not"),
    ],
)
def test_labelled_selects_by_namespace_and_label(
    namespace: str, value: str, expected: list[str]
) -> None:
    label = "kubernetes.io/service-name"
    cache = WatchCache("/slices")
    cache.replace(
        [
            obj("web-1", **{label: "web"}),
            obj("web-2", **{label: "web"}),
            obj("web-3", "other", **{label: "web"}),
            obj("unlabelled"),
        ]
    )
    found = sorted(o["metadata"]["name"] for o in cache.labelled(namespace, label, value))
    assert found == expected
