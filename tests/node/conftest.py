"""Fixtures for the tests that need the lab's real node: the node itself and the loaded image.

Every test under tests/node/ is marked ``node`` (and ``lab``); `make test` runs them after the
rest, with the node up. The ``node`` fixture brings the node up when it is not (`labctl
node-up`, what `make node-up` runs), builds the operator's image when dist/ has none
(hack/image/build.sh, cached per machine) and loads it into the node.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.lab.labenv import Lab

ROOT = Path(__file__).resolve().parents[2]
IMAGE_ARCHIVE = ROOT / "dist" / "acmebridge-image.tar"
IMAGE = "localhost/acmebridge:dev"
NODE_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if NODE_TESTS in item.path.parents:
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.lab)


def image_id(archive: Path = IMAGE_ARCHIVE) -> str:
    """The image's ID as the kubelet reports it (its config's digest): the names do not tell,
    since the node tags the image under a second name (tests/lab/nodeimages.py)."""
    with tarfile.open(archive) as outer:

        def blob(digest: str) -> dict[str, object]:
            member = outer.extractfile(f"blobs/sha256/{digest.split(':')[1]}")
            assert member is not None
            loaded: dict[str, object] = json.loads(member.read())
            return loaded

        index = json.loads(outer.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = blob(index["manifests"][0]["digest"])
    return str(manifest["config"]["digest"])  # type: ignore[index]


def _run(*argv: str, timeout: float) -> None:
    result = subprocess.run(
        list(argv), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    print(result.stdout, end="")
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def helm() -> Path:
    from tests.chart.chart import helm_binary

    found = helm_binary()
    assert found is not None, "helm is not built: `make lab-bin`"
    return found


@pytest.fixture(scope="session")
def node(lab: Lab) -> str:
    """The real node's name, once it is Ready with the operator's image loaded."""
    _run(sys.executable, "-m", "tests.lab.labctl", "node-up", timeout=300)
    if not IMAGE_ARCHIVE.exists():
        _run(str(ROOT / "hack" / "image" / "build.sh"), timeout=900)
    _run(sys.executable, "-m", "tests.lab.labnode", "load-image", str(IMAGE_ARCHIVE), timeout=300)
    return Lab.from_env_file(ROOT / ".lab" / "env").env["LAB_NODE"]
