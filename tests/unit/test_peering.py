"""The operator's own kopf peering object (adapters/peering.py): created where kopf will look,
kept when it exists, and a clear error when it cannot be had."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from acmebridge.adapters.kube import Conflict, KubeError, NotFound
from acmebridge.adapters.peering import PeeringError, ensure
from acmebridge.config import named_namespaces


class FakeKube:
    """Records creates; answers each POST path with the error given for it, GETs from ``found``."""

    def __init__(
        self, errors: Mapping[str, KubeError] | None = None, found: frozenset[str] = frozenset()
    ) -> None:
        self.errors, self.found = dict(errors or {}), set(found)
        self.created: list[tuple[str, str]] = []

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if path in self.errors:
            raise self.errors[path]
        self.created.append((path, body["metadata"]["name"]))
        return dict(body)

    def get(self, path: str) -> dict[str, Any] | None:
        return {} if path in self.found else None


CLUSTER = "/apis/kopf.dev/v1/clusterkopfpeerings"
SHOP = "/apis/kopf.dev/v1/namespaces/shop/kopfpeerings"
MISSING_CRD = NotFound(404, "NotFound", "the server could not find the requested resource")


@pytest.mark.parametrize(
    ("namespaces", "kube", "created", "skipped"),
    [
        pytest.param(
            (),
            FakeKube(),
            [(CLUSTER, "ab")],
            [],
            id="a cluster-wide operator makes a ClusterKopfPeering",
        ),
        pytest.param(
            ("shop", "pay"),
            FakeKube(),
            [(SHOP, "ab"), ("/apis/kopf.dev/v1/namespaces/pay/kopfpeerings", "ab")],
            [],
            id="a namespaced operator makes a KopfPeering in each namespace",
        ),
        pytest.param(
            (),
            FakeKube({CLUSTER: Conflict(409, "AlreadyExists", "")}),
            [],
            [],
            id="an existing object is kept with the keep-alives in it",
        ),
        pytest.param(
            ("shop", "apps-*"),
            FakeKube(),
            [(SHOP, "ab")],
            ["apps-*"],
            id="a namespace pattern is named back, kopf resolves it",
        ),
        pytest.param(
            ("shop",),
            FakeKube({SHOP: NotFound(404, "NotFound", 'namespaces "shop" not found')}),
            [],
            ["shop"],
            id="a namespace that does not exist yet is named back",
        ),
        pytest.param(
            (),
            FakeKube(
                {CLUSTER: KubeError(403, "Forbidden", "no")}, found=frozenset({f"{CLUSTER}/ab"})
            ),
            [],
            [],
            id="an object someone else made is enough without the create verb",
        ),
    ],
)
def test_the_peering_object_is_there_before_kopf_starts(
    namespaces: tuple[str, ...], kube: FakeKube, created: list[Any], skipped: list[str]
) -> None:
    assert ensure(kube, "ab", namespaces) == skipped  # type: ignore[arg-type]
    assert kube.created == created


@pytest.mark.parametrize(
    ("namespaces", "kube", "says"),
    [
        pytest.param(
            (),
            FakeKube({CLUSTER: MISSING_CRD}),
            "install kopf's peering CRDs",
            id="missing CRDs are named",
        ),
        pytest.param(
            ("shop",),
            FakeKube({SHOP: MISSING_CRD}),
            "install kopf's peering CRDs",
            id="missing CRDs are named for a namespace too",
        ),
        pytest.param(
            (),
            FakeKube({CLUSTER: KubeError(403, "Forbidden", "no")}),
            "needs the create verb on clusterkopfpeerings.kopf.dev",
            id="a missing permission is named",
        ),
        pytest.param(
            (),
            FakeKube({CLUSTER: KubeError(0, "Unreachable", "refused")}),
            "Unreachable: refused",
            id="an unreachable API server is not blamed on permissions",
        ),
    ],
)
def test_a_peering_object_that_cannot_be_had_is_explained(
    namespaces: tuple[str, ...], kube: FakeKube, says: str
) -> None:
    with pytest.raises(PeeringError, match=says) as caught:
        ensure(kube, "ab", namespaces)  # type: ignore[arg-type]
    assert "create verb" not in str(caught.value) or "403" in str(caught.value)


def test_only_namespaces_given_by_name_are_named() -> None:
    assert named_namespaces(["shop", "apps-*", "!kube-system", "te?t", "[ab]x"]) == ["shop"]
