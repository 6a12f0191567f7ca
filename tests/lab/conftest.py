"""Fixtures for tests that run the operator in the lab: the operator process, API access, and
manifests for Issuers and Certificates pointing at the lab's Pebble."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from kubernetes import client, config

from acmebridge.adapters.kube import Conflict, Kube, core_path, ours_path
from tests.lab import manifests
from tests.lab.manifests import b64_file as b64_file
from tests.lab.operator_proc import CLUSTER_RESOURCE_NAMESPACE, OperatorProcess, start_operator


@pytest.fixture(scope="session")
def k(lab: Any) -> Kube:
    """Raw-JSON access to the lab's API server as the admin."""
    api = client.ApiClient(config.new_client_from_config(lab.env["KUBECONFIG"]).configuration)
    return Kube(api)


@pytest.fixture
def operator_factory(lab: Any, k: Kube) -> Iterator[Callable[..., OperatorProcess]]:
    """Starts operators that serve only the given namespaces (ClusterIssuers are cluster-wide).

    Each test gets its own operator, so tests (and engineers) sharing one lab never have two
    operators acting on the same Certificate.
    """
    with contextlib.suppress(Conflict):
        k.create(core_path("namespaces", None), {"metadata": {"name": CLUSTER_RESOURCE_NAMESPACE}})
    started: list[OperatorProcess] = []

    def start(*namespaces: str, extra: Sequence[str] = (), **kw: Any) -> OperatorProcess:
        args = [f"--namespace={n}" for n in namespaces]
        op = start_operator(lab.env, extra=[*args, *extra], **kw)
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
        print(f"operator log: {op.log_path}")


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess], namespace: str) -> OperatorProcess:
    """An operator for this test's namespace."""
    return operator_factory(namespace)


def acme_spec(lab: Any, **overrides: Any) -> dict[str, Any]:
    return manifests.pebble_acme(lab.env, **overrides)


def make_issuer(k: Kube, namespace: str | None, name: str, acme: dict[str, Any]) -> dict[str, Any]:
    body = manifests.issuer(namespace, name, acme)
    return k.create(ours_path("issuers" if namespace else "clusterissuers", namespace), body)


def make_certificate(k: Kube, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return k.create(
        ours_path("certificates", namespace), manifests.certificate(namespace, name, **spec)
    )
