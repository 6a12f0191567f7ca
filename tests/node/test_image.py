"""The image `make image` built holds exactly the locked packages, and none of what slim.py cuts.

The Containerfile's image is made by the same steps (tests/unit/test_image_recipe.py); this reads
the archive itself: the virtualenv's distributions, what is left of the root, and whether the
bytecode is valid in a layer whose files all carry one modification time.
"""

from __future__ import annotations

import io
import json
import re
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.node.conftest import IMAGE_ARCHIVE
from tests.unit.test_image_recipe import locked

ROOT = Path(__file__).resolve().parents[2]
SITE = "opt/acmebridge/lib/python3.11/site-packages"
METADATA = re.compile(rf"{SITE}/([^/]+)-([^-/]+)\.dist-info/METADATA$")
# PEP 552: the flags word of a .pyc; 0 means "check the source's mtime", which a layer resets.
PYC_CHECKED_HASH = 0b11


def layer(archive: Path) -> tarfile.TarFile:
    with tarfile.open(archive) as outer:

        def blob(digest: str) -> bytes:
            member = outer.extractfile(f"blobs/sha256/{digest.split(':')[1]}")
            assert member is not None
            return member.read()

        index = json.loads(outer.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        data = blob(manifest["layers"][0]["digest"])
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


@pytest.fixture(scope="module")
def image(node: str) -> Iterator[tarfile.TarFile]:
    with layer(IMAGE_ARCHIVE) as tar:
        yield tar


def installed(tar: tarfile.TarFile) -> dict[str, str]:
    """name -> version of every distribution in the image's virtualenv."""
    return {
        canonicalize_name(m.group(1)): m.group(2)
        for name in tar.getnames()
        if (m := METADATA.match(name))
    }


def test_the_built_image_holds_exactly_the_locked_packages(image: tarfile.TarFile) -> None:
    found = installed(image)
    assert found.pop("acmebridge", None) is not None, "the project itself is not installed"
    assert found == locked()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"{SITE}/kubernetes/aio", id="the kubernetes client's asyncio copy"),
        pytest.param(f"{SITE}/kubernetes/client/api/core_v1_api.py", id="the client's typed APIs"),
        pytest.param(f"{SITE}/kubernetes/client/models/v1_pod.py", id="the client's models"),
        pytest.param(f"{SITE}/pip", id="pip"),
        pytest.param(f"{SITE}/setuptools", id="setuptools"),
        pytest.param("opt/acmebridge/bin/pip", id="pip's script"),
        pytest.param("usr/bin/bash", id="a shell"),
        pytest.param("usr/bin/dpkg", id="dpkg"),
        pytest.param("usr/bin/apt-get", id="apt"),
        pytest.param("usr/bin/perl", id="perl"),
        pytest.param("usr/share/doc", id="documentation"),
        pytest.param("usr/lib/python3.11/ensurepip", id="ensurepip"),
        pytest.param("usr/lib/python3.11/lib-dynload/readline.cpython-311-x86_64-linux-gnu.so"),
    ],
)
def test_what_the_operator_never_runs_is_not_in_the_image(
    image: tarfile.TarFile, path: str
) -> None:
    names = image.getnames()
    assert not [n for n in names if n == path or n.startswith(path + "/")], path


def test_what_the_operator_runs_is(image: tarfile.TarFile) -> None:
    names = set(image.getnames())
    for path in (
        "opt/acmebridge/bin/acmebridge",
        f"{SITE}/kubernetes/client/api_client.py",
        f"{SITE}/kubernetes/client/models/__init__.py",
        f"{SITE}/kubernetes/client/models/v1_object_meta.py",  # kopf imports it
        "usr/lib/python3.11/ssl.py",
        "etc/passwd",
        "var/lib/dpkg/status",
    ):
        assert path in names, path
    passwd = image.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
    assert re.search(r"^acmebridge:x:65532:", passwd, re.M), passwd


def test_every_bytecode_file_is_valid_in_a_layer_with_one_mtime(image: tarfile.TarFile) -> None:
    flags = {}
    for member in image.getmembers():
        if member.name.endswith(".pyc"):
            header = image.extractfile(member).read(8)  # type: ignore[union-attr]
            flags[member.name] = struct.unpack("<I", header[4:8])[0]
    assert len(flags) > 1000
    stale = [name for name, value in flags.items() if value != PYC_CHECKED_HASH]
    assert not stale, f"{len(stale)} timestamp-checked .pyc files, e.g. {stale[:3]}"


def test_the_image_holds_the_checkouts_operator(image: tarfile.TarFile) -> None:
    """Every module of operator/acmebridge, byte for byte: a stale image would test old code."""
    source = ROOT / "operator" / "acmebridge"
    differ = []
    for path in sorted(source.rglob("*.py")):
        name = f"{SITE}/acmebridge/{path.relative_to(source).as_posix()}"
        member = image.extractfile(name) if name in image.getnames() else None
        if member is None or member.read() != path.read_bytes():
            differ.append(path.relative_to(ROOT).as_posix())
    assert not differ, f"`make image` again: the image's copy differs for {differ[:5]}"
