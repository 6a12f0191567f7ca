"""Copies what the operator runs, and nothing else, into a fresh root filesystem: the image's.

    /opt/acmebridge/bin/python slim.py /slim

Both image recipes run it as their last step, in the root they built (the Containerfile in its
python:3.11-slim stage, then `FROM scratch` + `COPY --from=... /slim /`; hack/build.sh in its
debootstrap root, chrooted): so the two images hold the same kinds of things, and the same list
of cuts. The operator is one Python program that starts no other program, so the root holds:

- the virtualenv /opt/acmebridge without pip and setuptools (nothing installs at run time),
  without kubernetes.aio (the client's asyncio copy: the operator uses the synchronous client,
  kopf talks to the API server through aiohttp) nor the client's generated typed APIs and models
  (``LAZY_UNUSED``), nor packages' own test suites;
- the Python interpreter and its standard library without the parts that need a terminal, a
  GUI, a compiler toolchain or an installer (``UNUSED_STDLIB``);
- exactly the shared libraries those load (the dynamic loader's own answer, ``ldd``), with the
  loader and its cache;
- from /etc: users and groups (65532), name-service and loader settings, OpenSSL's config;
  /tmp; empty /proc, /sys and /dev for the runtime's mounts. No system CA store: the operator
  trusts each Issuer's caBundle, or certifi's bundle in the virtualenv, and the API server's CA
  from its ServiceAccount;
- the dpkg status of the Debian packages whose files it holds, so that image scanners see them.

No shell, no coreutils, no package manager: `kubectl exec` into the operator has nothing to run
(debug with an ephemeral container: `kubectl debug -it POD --image=busybox --target=operator`).

Every kept ``.py`` is compiled with hash-based invalidation (PEP 552): image layers carry one
fixed modification time (hack/image/oci.py), which would make timestamp-based bytecode look stale
on a read-only root, so every start would compile the kubernetes client again. Standard library
only: it runs with the image's own Python.
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

VENV = Path("/opt/acmebridge")
# Never imported by the operator: installers, the asyncio copy of the kubernetes client.
UNUSED_PACKAGES = (
    "pip",
    "setuptools",
    "pkg_resources",
    "_distutils_hack",
    "distutils-precedence.pth",
    "kubernetes/aio",
)
UNUSED_DIST_INFO = re.compile(r"^(pip|setuptools)-[^/]+\.dist-info$")
# The kubernetes client's generated typed APIs and models (57 MB with their bytecode): the client
# loads each module on first use, and the operator uses only ApiClient, its configuration and its
# exceptions (raw JSON by path, adapters/kube.py). The package __init__ files stay, so the
# client imports as before; tests/unit/test_image_recipe.py checks that the operator's own code
# paths load none of the removed modules, and the node tests run the image.
LAZY_UNUSED = ("kubernetes/client/api", "kubernetes/client/models")
# ...except the models kopf imports for its isinstance checks (kopf/_cogs/helpers/thirdparty.py).
LAZY_KEPT = frozenset(
    {"__init__.py", "v1_object_meta.py", "v1_owner_reference.py", "v1_managed_fields_entry.py"}
)
# Standard library parts for terminals, GUIs, building and installing, and CPython's own tests.
UNUSED_STDLIB = (
    "idlelib",
    "tkinter",
    "turtledemo",
    "turtle.py",
    "lib2to3",
    "pydoc_data",
    "ensurepip",
    "distutils",
    "venv",
    "test",
    "unittest/test",
    "sqlite3",
    "dbm",
    "curses",
    # The base interpreter's own installed packages (python:3.11-slim has pip there).
    "site-packages",
    "dist-packages",
)
# Extension modules of those, and ones whose libraries (ncurses, readline, sqlite, Berkeley DB,
# NIS and its Kerberos) would otherwise come along.
UNUSED_EXTENSIONS = re.compile(
    r"^(_test\w*|_xx\w*|xxlimited\w*|_ctypes_test|_curses\w*|readline|_sqlite3|_dbm|_gdbm|nis"
    r"|ossaudiodev|audioop|_tkinter)\."
)
ETC = (
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/os-release",
    "/etc/ssl/openssl.cnf",
    "/usr/lib/ssl/openssl.cnf",
)
MOUNT_POINTS = ("proc", "sys", "dev")


def copy(path: Path, dest: Path) -> None:
    """Copies one path into ``dest``: a file, a symlink and what it points to, or a directory.

    Directories along the way that are symlinks (usr-merged /lib) become the same symlinks, and
    everything is written at its real path, so nothing is ever written through a link.
    """
    if not os.path.lexists(path):
        return
    parent = make_dirs(path.parent, dest)
    source = parent / path.name
    target = dest / source.relative_to("/")
    if os.path.lexists(target):
        return
    if source.is_symlink():
        link = os.readlink(source)
        target.symlink_to(link)
        copy(Path(os.path.normpath(parent / link)), dest)
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True)
        for inner in list(target.rglob("*")):  # links inside the tree: bring their targets
            if inner.is_symlink():
                origin = source / inner.relative_to(target)
                copy(Path(os.path.normpath(origin.parent / os.readlink(origin))), dest)
    else:
        shutil.copy2(source, target)


def make_dirs(folder: Path, dest: Path) -> Path:
    """Makes ``folder``'s directories (and directory symlinks) in ``dest``; its real path."""
    real = Path("/")
    for part in folder.relative_to("/").parts:
        current = real / part
        target = dest / current.relative_to("/")
        if current.is_symlink():
            if not os.path.lexists(target):
                target.symlink_to(os.readlink(current))
            real = make_dirs(Path(os.path.realpath(current)), dest)
        else:
            if not os.path.lexists(target):
                target.mkdir()
                shutil.copystat(current, target)
            real = current
    return real


def remove(paths: Iterable[Path]) -> None:
    for path in list(paths):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()


def prune_venv(site: Path) -> None:
    remove(site / name for name in UNUSED_PACKAGES)
    remove(p for p in site.iterdir() if UNUSED_DIST_INFO.match(p.name))
    # Packages' own test suites (acme._internal.tests, websocket.tests...), never imported.
    remove(p for p in site.glob("*/**/tests") if p.is_dir() and (p / "__init__.py").exists())
    remove(p for p in site.glob("kubernetes/**/*_test.py"))
    remove(
        p for folder in LAZY_UNUSED for p in (site / folder).glob("*.py") if p.name not in LAZY_KEPT
    )
    remove(
        p for p in (VENV / "bin").iterdir() if p.name.startswith(("pip", "activate", "Activate"))
    )
    leftover = [name for name in UNUSED_PACKAGES if os.path.lexists(site / name)]
    if leftover:
        raise SystemExit(f"slim: could not remove {leftover} from {site}")


def prune_stdlib(stdlib: Path) -> None:
    remove(stdlib / name for name in UNUSED_STDLIB)
    remove(stdlib.glob("config-*"))  # what building extensions needs
    dynload = stdlib / "lib-dynload"
    remove(p for p in dynload.iterdir() if UNUSED_EXTENSIONS.match(p.name))


def compile_all(folders: Iterable[Path]) -> None:
    mode = py_compile.PycInvalidationMode.CHECKED_HASH
    for folder in folders:
        for stale in folder.rglob("__pycache__"):
            shutil.rmtree(stale)
        ok = compileall.compile_dir(folder, quiet=2, force=True, invalidation_mode=mode, workers=1)
        if not ok:
            raise SystemExit(f"slim: compiling {folder} failed")


def shared_libraries(binaries: Iterable[Path]) -> set[Path]:
    """What the dynamic loader loads for these (their DT_NEEDED closure), loader included."""
    found: set[Path] = set()
    for binary in binaries:
        result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            continue  # not dynamic: nothing to bring
        for line in result.stdout.splitlines():
            if "not found" in line:
                raise SystemExit(f"slim: {binary} needs a library that is missing: {line.strip()}")
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match:
                found.add(Path(match.group(1)))
    return found


def dpkg_status(dest: Path) -> None:
    """/var/lib/dpkg/status with only the packages that own a file in ``dest``."""
    info = Path("/var/lib/dpkg/info")
    status = Path("/var/lib/dpkg/status")
    if not status.exists():
        return
    held = {
        os.path.realpath("/" + str(p.relative_to(dest)))
        for p in dest.rglob("*")
        if p.is_file() and not p.is_symlink()
    }
    owners = set()
    for listing in info.glob("*.list"):
        for line in listing.read_text(errors="replace").splitlines():
            if line and os.path.realpath(line) in held:
                owners.add(listing.stem.split(":")[0])
                break
    kept = [
        paragraph
        for paragraph in status.read_text().split("\n\n")
        if (m := re.search(r"^Package: (\S+)$", paragraph, re.M)) and m.group(1) in owners
    ]
    out = dest / "var/lib/dpkg/status"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n\n".join(p.strip("\n") for p in kept) + "\n")


def build(dest: Path) -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if not str(site).startswith(str(VENV)):
        raise SystemExit(f"slim: run it with {VENV}/bin/python, not {sys.executable}")
    prune_venv(site)
    prune_stdlib(stdlib)
    compile_all([stdlib, VENV / "lib"])
    dest.mkdir()
    interpreter = Path(os.path.realpath(sys.executable))
    for path in (VENV, stdlib, interpreter, *(Path(p) for p in ETC)):
        copy(path, dest)
    extensions = [
        p for p in (*(dest / "opt").rglob("*.so*"), *(dest / stdlib.relative_to("/")).rglob("*.so"))
    ]
    binaries = [interpreter, *(Path("/") / p.relative_to(dest) for p in extensions)]
    for library in sorted(shared_libraries(binaries)):
        copy(library, dest)
    # Loaded with dlopen rather than linked: glibc's unwinder for thread exit and cancellation.
    for library in Path("/").glob("usr/lib/*-linux-gnu/libgcc_s.so.1"):
        copy(library, dest)
    tmp = dest / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    for name in MOUNT_POINTS:
        (dest / name).mkdir(exist_ok=True)
    dpkg_status(dest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="the new root (must not exist)")
    build(parser.parse_args().dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
