"""The image `make image` built holds exactly the locked packages, as the Containerfile's would."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

from packaging.utils import canonicalize_name

from tests.node.conftest import IMAGE_ARCHIVE
from tests.unit.test_image_recipe import locked

# pip and setuptools come with every virtualenv on Python 3.11, in both recipes.
VENV_SEED = {"pip", "setuptools"}
METADATA = re.compile(
    r"opt/acmebridge/lib/python3\.11/site-packages/([^/]+)-([^-/]+)\.dist-info/METADATA$"
)


def installed(archive: Path) -> dict[str, str]:
    """name -> version of every distribution in the image's virtualenv."""
    with tarfile.open(archive) as outer:

        def blob(digest: str) -> bytes:
            member = outer.extractfile(f"blobs/sha256/{digest.split(':')[1]}")
            assert member is not None
            return member.read()

        index = json.loads(outer.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        layer = blob(manifest["layers"][0]["digest"])
    found = {}
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as inner:
        for name in inner.getnames():
            if match := METADATA.match(name):
                found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def test_the_built_image_holds_exactly_the_locked_packages(node: str) -> None:
    found = installed(IMAGE_ARCHIVE)
    assert found.pop("acmebridge", None) is not None, "the project itself is not installed"
    for seed in VENV_SEED:
        found.pop(seed, None)
    assert found == locked()
