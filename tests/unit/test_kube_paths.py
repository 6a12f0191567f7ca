"""The resource label of a Kubernetes request: read from the path by position, never a name."""

from __future__ import annotations

import pytest

from acmebridge.adapters.kube import core_path, ours_path, resource_of


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        pytest.param(core_path("secrets", "shop", "web-tls"), "secrets", id="a namespaced get"),
        pytest.param(core_path("events", "shop"), "events", id="a namespaced list or create"),
        pytest.param(
            ours_path("certificates", "shop", "web") + "/status",
            "certificates/status",
            id="a status subresource",
        ),
        pytest.param(ours_path("clusterissuers", None, "ca"), "clusterissuers", id="cluster scope"),
        pytest.param(core_path("namespaces", None), "namespaces", id="the namespaces themselves"),
        pytest.param(core_path("namespaces", None, "shop"), "namespaces", id="one namespace"),
        pytest.param(
            core_path("namespaces", None, "shop") + "/finalize",
            "namespaces/finalize",
            id="a namespace's own subresource",
        ),
        pytest.param(
            core_path("pods", "status", "p"),
            "pods",
            id="a namespace called status is no subresource",
        ),
        pytest.param(
            core_path("secrets", "shop") + "?labelSelector=a%3Db",
            "secrets",
            id="the query is ignored",
        ),
        pytest.param(
            core_path("secrets", "namespaces", "secrets"),
            "secrets",
            id="names equal to path words stay names",
        ),
        pytest.param("/metrics", "", id="a path outside the resource APIs"),
        pytest.param("/apis/acmebridge.io/v1alpha1", "", id="a group version alone"),
    ],
)
def test_resource_of_a_path(path: str, resource: str) -> None:
    assert resource_of(path) == resource
