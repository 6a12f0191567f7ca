"""Fixtures every test may use: the lab, an admin API client on it, and a namespace per test.

Tests under tests/lab/, and any test that uses the ``lab`` fixture, are marked ``lab``, so that
``-m "not lab"`` (make unit) runs exactly the tests that need no servers. The lab is started on
first use and left running for the next run; ``make lab-down`` stops it.
"""

from __future__ import annotations

import os
import re
import secrets
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.lab.labenv import Lab
from tests.lab.waits import wait_for

ROOT = Path(__file__).resolve().parents[1]
LAB_TESTS = ROOT / "tests" / "lab"
TEST_LABEL = "acmebridge.io/test"
# Cold start of every lab process is seconds; a first build of the binaries is not done here.
LAB_START_TIMEOUT = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_TESTS in item.path.parents or "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The running lab (started now when it is not up, reused when it is)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "tests.lab.labctl", "up"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=LAB_START_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"the lab did not start:\n{result.stdout}{result.stderr}", pytrace=False)
    return Lab.from_env_file(ROOT / ".lab" / "env")


@pytest.fixture(scope="session")
def kube(lab: Lab) -> Iterator[client.ApiClient]:
    """A Kubernetes API client authenticated as the lab's admin (system:masters)."""
    api = config.new_client_from_config(config_file=str(lab.kubeconfig))
    yield api
    api.close()


def namespace_name(test_name: str) -> str:
    """A valid, unique namespace name (RFC 1123 label) that says which test made it."""
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    stem = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")
    stem = stem.removeprefix("test-")[: 63 - len(suffix) - 1].strip("-") or "t"
    return f"{stem}-{suffix}"


@pytest.fixture
def namespace(kube: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, ready for Pods (its ServiceAccount exists); deleted after."""
    core = client.CoreV1Api(kube)
    name = namespace_name(request.node.name)
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_LABEL: "true"}))
    core.create_namespace(body)
    # Pods are refused until the namespace's `default` ServiceAccount exists.
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ),
        timeout=30,
        describe=f"the default ServiceAccount in namespace {name}",
    )
    yield name
    # Not waited for: the namespace controller finishes the deletion in the background.
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:  # the test deleted it itself
            raise
