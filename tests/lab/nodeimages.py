"""Images on the real node, which has no registry: the sandbox image, and loading OCI archives.

The sandbox ("pause") image is the lab's pause binary wrapped by hack/image/oci.py. The
operator's image (`make image`) is loaded under its own name, ``localhost/acmebridge:dev``, and
also under the operator's default solver image, ``DEFAULT_SOLVER_IMAGE``: lab tests run the
operator as a local process with its defaults, and while the node is up their solver Pods are
real containers that the kubelet must find without pulling (imagePullPolicy IfNotPresent).
Standard library only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from tests.lab.nodelayout import PAUSE_IMAGE, NodeError, NodeLayout

CONTAINERD_NAMESPACE = "k8s.io"


def default_solver_image(repo: Path) -> str:
    """The operator's own default (operator/acmebridge/config.py), read without importing it:
    `make image` loads with the system Python, which lacks the operator's dependencies."""
    text = (repo / "operator" / "acmebridge" / "config.py").read_text()
    match = re.search(r'^DEFAULT_SOLVER_IMAGE = "([^"]+)"$', text, re.M)
    if match is None:
        raise NodeError("no DEFAULT_SOLVER_IMAGE in operator/acmebridge/config.py")
    return match.group(1)


def pause_archive(node: NodeLayout) -> Path:
    """The sandbox image, from the lab's pause binary (kept next to it, rebuilt when it changes)."""
    archive = node.lab.bin / "pause-image.tar"
    binary = node.lab.bin / "pause"
    if archive.exists() and archive.stat().st_mtime >= binary.stat().st_mtime:
        return archive
    rootfs = node.images / "pause-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.mkdir(parents=True)
    shutil.copy2(binary, rootfs / "pause")
    for folder in ("proc", "sys", "dev", "etc"):
        (rootfs / folder).mkdir()
    _run(
        [
            "python3",
            str(node.lab.repo / "hack" / "image" / "oci.py"),
            "--rootfs",
            str(rootfs),
            "--name",
            PAUSE_IMAGE,
            "--out",
            str(archive),
            "--entrypoint",
            '["/pause"]',
            "--user",
            "65535:65535",
        ],
        "writing the pause image",
    )
    shutil.rmtree(rootfs, ignore_errors=True)
    return archive


def archive_name(archive: Path) -> str:
    """The image name an OCI archive of hack/image/oci.py carries (containerd's annotation)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise NodeError(f"{archive} has no index.json: not an OCI archive")
        index = json.loads(member.read())
    name = index["manifests"][0].get("annotations", {}).get("io.containerd.image.name")
    if not name:
        raise NodeError(f"{archive} does not name its image (io.containerd.image.name)")
    return str(name)


def load_image(socket: Path, archive: Path, *, also: Sequence[str] = ()) -> str:
    """Imports an OCI archive into the node's containerd, where the kubelet finds it, and tags
    it under the names in ``also`` (replacing what they named before). containerd's output."""
    out = _ctr(
        socket, "images", "import", str(archive), what=f"containerd could not load {archive}"
    )
    if also:
        name = archive_name(archive)
        _ctr(socket, "images", "tag", "--force", name, *also, what=f"tagging {name}")
        out += f"tagged {name} as {', '.join(also)}\n"
    return out


def _ctr(socket: Path, *args: str, what: str) -> str:
    argv = ["ctr", "--address", str(socket), "-n", CONTAINERD_NAMESPACE, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise NodeError(f"{what}: {result.stderr.strip()}")
    return result.stdout


def _run(argv: Sequence[str], what: str) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise NodeError(f"{what} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout
