"""How acmebridge uses kopf: event handlers only, so kopf's diff base can be switched off.

``handlers.operator.NoDiffBase`` spares kopf a deep copy of every watched body; it is only
right while no handler diffs anything. A change-detection handler (``on.create``,
``on.update``, ``on.resume``, ``on.field``, ...) or a daemon or timer added later fails here,
where the reason is written down, instead of silently getting empty diffs in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import kopf
import pytest
from kopf._cogs.structs import bodies, diffs

from acmebridge.config import OperatorConfig
from acmebridge.handlers import mtls
from acmebridge.handlers import operator as handlers


@pytest.fixture
def fresh_registry() -> Iterator[kopf.OperatorRegistry]:
    saved = kopf.get_default_registry()
    registry = kopf.OperatorRegistry()
    kopf.set_default_registry(registry)
    try:
        yield registry
    finally:
        kopf.set_default_registry(saved)


def _diffing_handlers(registry: kopf.OperatorRegistry) -> list[str]:
    found = [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]
    return [str(h.id) for h in found]


def test_the_certificate_issuer_and_ingress_handlers_need_no_diff_base() -> None:
    # The module registers them in the default registry when it is imported (above).
    registry = kopf.get_default_registry()
    watched = {str(h.id) for h in registry._watching.get_all_handlers()}
    assert {"_certificate_event", "_issuer_event", "_ingress_event"} <= watched
    assert _diffing_handlers(registry) == []


def test_the_mtls_handlers_need_no_diff_base(fresh_registry: kopf.OperatorRegistry) -> None:
    config = replace(OperatorConfig(), mtls=True, webhook_url="https://127.0.0.1:9443")
    mtls.install(config)
    assert fresh_registry._webhooks.get_all_handlers(), "the mTLS handlers were not registered"
    assert _diffing_handlers(fresh_registry) == []


def test_no_diff_base_gives_kopf_an_empty_diff_without_copying_the_body() -> None:
    body = bodies.Body({"metadata": {"name": "a", "annotations": {"x": "y"}}, "spec": {"a": 1}})
    storage = handlers.NoDiffBase()
    old, new = storage.fetch(body=body), storage.build(body=body)
    assert old == new == {}
    assert diffs.diff(old, new) == diffs.EMPTY
