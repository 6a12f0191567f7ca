"""The two recipes of the operator's image install the same packages.

The Containerfile is how Docker and Podman users build the image; hack/image/build.sh (`make
image`) builds it here, without Docker. Both must install the project's wheel plus exactly the
pins in hack/image/requirements.lock, offline, into /opt/acmebridge, as user 65532 with the same
entrypoint; the lock must satisfy pyproject.toml. tests/node/test_image.py compares the image
`make image` built with the lock.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = (ROOT / "Containerfile").read_text()
BUILD = (ROOT / "hack" / "image" / "build.sh").read_text()
LOCK = ROOT / "hack" / "image" / "requirements.lock"
ARCHIVE = ROOT / "dist" / "acmebridge-image.tar"
# pip and setuptools come with every virtualenv on Python 3.11, in both recipes.
VENV_SEED = {"pip", "setuptools"}


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def _flat(text: str) -> str:
    return re.sub(r"\s*\\\n\s*", " ", text)


@pytest.mark.parametrize(
    "recipe",
    [pytest.param(CONTAINERFILE, id="Containerfile"), pytest.param(BUILD, id="make image")],
)
def test_each_recipe_installs_the_lock_and_the_project_offline(recipe: str) -> None:
    flat = _flat(recipe)
    assert "venv /opt/acmebridge" in flat
    install = re.search(r"/opt/acmebridge/bin/pip install ([^\n&]*)", flat)
    assert install is not None, "no pip install into /opt/acmebridge"
    args = install.group(1).split()
    assert "--no-index" in args and "--find-links" in args
    assert "/wheels/requirements.lock" in args and "acmebridge" in args
    assert "hack/image/requirements.lock" in flat or "$LOCK" in flat


def test_both_recipes_run_as_65532_with_the_same_entrypoint() -> None:
    assert "USER 65532:65532" in CONTAINERFILE and "--user 65532:65532" in BUILD
    assert 'ENTRYPOINT ["acmebridge"]' in CONTAINERFILE
    assert "--entrypoint '[\"acmebridge\"]'" in BUILD
    assert 'CMD ["run"]' in CONTAINERFILE and "--cmd '[\"run\"]'" in BUILD
    user = "useradd --system --uid 65532 --user-group --no-create-home"
    assert user in _flat(CONTAINERFILE) and user in _flat(BUILD)
    # The same Python: python:3.11-slim is Debian 12 with Python 3.11, as bookworm's python3.
    assert "python:3.11-slim" in CONTAINERFILE and "SUITE=bookworm" in BUILD


def test_the_lock_satisfies_every_dependency_of_the_project() -> None:
    pins = locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in {LOCK.name}"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {spec}"


def _installed(archive: Path) -> dict[str, str]:
    with tarfile.open(archive) as outer:
        index = json.load(outer.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(outer.extractfile(f"blobs/sha256/{digest}"))  # type: ignore[arg-type]
        layer = manifest["layers"][0]["digest"].split(":")[1]
        data = outer.extractfile(f"blobs/sha256/{layer}").read()  # type: ignore[union-attr]
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as inner:
        for name in inner.getnames():
            match = re.match(
                r"opt/acmebridge/lib/python3\.11/site-packages/([^/]+)-([^-/]+)\.dist-info/METADATA$",
                name,
            )
            if match:
                found[canonicalize_name(match.group(1))] = match.group(2)
    return found
