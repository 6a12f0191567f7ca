"""The reconcilers' cache of watched bodies (reconcile/runtime.py): what it keeps, and when it
refuses an older body."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from acmebridge.config import OperatorConfig
from acmebridge.reconcile.runtime import Runtime

KEY = ("certificates", "shop", "web")


def body(rv: str, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv, **meta},
        "spec": {"secretName": "web-tls"},
    }


@pytest.fixture
def rt() -> Runtime:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return Runtime(config=OperatorConfig(), kube=None, executor=pool)  # type: ignore[arg-type]


def test_the_cache_drops_managed_fields_and_keeps_the_rest(rt: Runtime) -> None:
    managed = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    sent = body("7", managedFields=managed, labels={"app": "shop"})
    assert rt.observe(KEY, sent)
    cached = rt.cache[KEY]
    assert "managedFields" not in cached["metadata"]
    assert cached["metadata"]["labels"] == {"app": "shop"}
    assert cached["spec"] == {"secretName": "web-tls"}
    assert sent["metadata"]["managedFields"] == managed  # the caller's body is left as it was


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        pytest.param("8", "7", "8", id="an older body does not replace a newer one"),
        pytest.param("7", "8", "8", id="a newer body replaces the cached one"),
    ],
)
def test_the_cache_keeps_the_newest_body(rt: Runtime, first: str, second: str, kept: str) -> None:
    rt.observe(KEY, body(first))
    rt.observe(KEY, body(second))
    assert rt.cache[KEY]["metadata"]["resourceVersion"] == kept
