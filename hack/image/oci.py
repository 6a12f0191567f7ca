"""Writes a root filesystem as a one-layer OCI image archive, without Docker or a registry.

    python3 hack/image/oci.py --rootfs DIR --name localhost/acmebridge:dev --out IMAGE.tar \
        [--entrypoint JSON] [--cmd JSON] [--user 65532:65532] [--env K=V ...] \
        [--port 9402/tcp ...] [--workdir /] [--exclude PATH ...]

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) in a tar file, which
`ctr images import` loads. Its index names the image twice: `io.containerd.image.name` (the full
name containerd stores it under) and `org.opencontainers.image.ref.name` (the tag, for other
tools). The layer is reproducible: entries in sorted order, one fixed modification time, numeric
owners only, gzip without a timestamp; so the same root filesystem gives the same digests.
Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

# A fixed time for every entry: 2026-01-01T00:00:00Z.
EPOCH = 1767225600
CHUNK = 1 << 20
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def _walk(rootfs: Path, excluded: set[str]) -> Iterator[Path]:
    """Every path under ``rootfs`` in sorted order, parents before children, minus exclusions.

    An excluded directory itself stays (empty): /proc, /dev and the like must exist as mount
    points, but their contents belong to the runtime.
    """
    stack = [rootfs]
    while stack:
        folder = stack.pop()
        entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        for entry in entries:
            path = Path(entry.path)
            yield path
            inner = "/" + path.relative_to(rootfs).as_posix()
            if entry.is_dir(follow_symlinks=False) and inner not in excluded:
                stack.append(path)


def _sorted_walk(rootfs: Path, excluded: set[str]) -> list[Path]:
    return sorted(_walk(rootfs, excluded), key=lambda p: p.relative_to(rootfs).parts)


def write_layer(rootfs: Path, tar_out: BinaryIO, excluded: set[str]) -> None:
    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = EPOCH
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=tar_out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in _sorted_walk(rootfs, excluded):
            arcname = path.relative_to(rootfs).as_posix()
            info = tar.gettarinfo(str(path), arcname)
            if info is None:  # a socket or another type a layer cannot hold
                continue
            info = normalise(info)
            if info.isreg():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)


class _Hashing(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``target``."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += len(view)
        self.target.write(view)
        return len(view)


def _blob(folder: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (folder / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def build(
    *,
    rootfs: Path,
    name: str,
    out: Path,
    config: dict[str, Any],
    excluded: Sequence[str] = (),
) -> dict[str, Any]:
    """Writes the archive; returns its digests and sizes (for the build's summary line)."""
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        layout = Path(scratch) / "layout"
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        partial = Path(scratch) / "layer.tar.gz"
        with partial.open("wb") as raw:
            compressed = _Hashing(raw)
            with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=6) as gz:
                uncompressed = _Hashing(gz)  # type: ignore[arg-type]
                buffered = io.BufferedWriter(uncompressed, buffer_size=CHUNK)
                write_layer(rootfs, buffered, set(excluded))  # type: ignore[arg-type]
                buffered.flush()
        layer_digest = f"sha256:{compressed.sha.hexdigest()}"
        shutil.move(partial, blobs / layer_digest.split(":", 1)[1])
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{uncompressed.sha.hexdigest()}"]},
            "history": [{"created_by": "hack/image/oci.py", "comment": f"{name} root filesystem"}],
        }
        config_digest, config_size = _blob(blobs, json.dumps(image_config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": compressed.size}],
        }
        manifest_digest, manifest_size = _blob(blobs, json.dumps(manifest).encode())
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
        (layout / "index.json").write_text(json.dumps(index))
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        archive = Path(scratch) / "image.tar"
        with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in _sorted_walk(layout, set()):
                info = tar.gettarinfo(str(path), path.relative_to(layout).as_posix())
                info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
                if info.isreg():
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
        archive.replace(out)
    return {
        "name": name,
        "manifest": manifest_digest,
        "layer_bytes": uncompressed.size,
        "compressed_bytes": compressed.size,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rootfs", type=Path, required=True)
    p.add_argument("--name", required=True, help="full image name, e.g. localhost/acmebridge:dev")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--entrypoint", type=json.loads, default=None, help="JSON list")
    p.add_argument("--cmd", type=json.loads, default=None, help="JSON list")
    p.add_argument("--user", default="")
    p.add_argument("--env", action="append", default=[], help="KEY=value (repeatable)")
    p.add_argument("--port", action="append", default=[], help="9402/tcp (repeatable)")
    p.add_argument("--workdir", default="/")
    p.add_argument("--exclude", action="append", default=[], help="keep this folder empty")
    args = p.parse_args(argv)
    config: dict[str, Any] = {"Env": args.env, "WorkingDir": args.workdir}
    if args.entrypoint is not None:
        config["Entrypoint"] = args.entrypoint
    if args.cmd is not None:
        config["Cmd"] = args.cmd
    if args.user:
        config["User"] = args.user
    if args.port:
        config["ExposedPorts"] = {port: {} for port in args.port}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = build(
        rootfs=args.rootfs, name=args.name, out=args.out, config=config, excluded=args.exclude
    )
    json.dump(summary, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
