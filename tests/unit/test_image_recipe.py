"""The two recipes of the operator's image install the same packages and cut the same things.

The Containerfile is how Docker and Podman users build the image; hack/image/build.sh (`make
image`) builds it here, without Docker. Both must install the project's wheel plus exactly the
pins in hack/image/requirements.lock, offline, into /opt/acmebridge, as user 65532 with the same
entrypoint, environment and ports, and both must end with hack/image/slim.py, which copies what
the operator runs into the image's root; the lock must satisfy pyproject.toml.
tests/node/test_image.py checks the image `make image` built: the lock, and the cuts.
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = (ROOT / "Containerfile").read_text()
BUILD = (ROOT / "hack" / "image" / "build.sh").read_text()
LOCK = ROOT / "hack" / "image" / "requirements.lock"
sys.path.insert(0, str(ROOT / "hack" / "image"))
import slim  # noqa: E402  (hack/image is no package)


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
    # slim.py compiles the bytecode that stays, hash-checked; pip's would be thrown away.
    assert "--no-compile" in args
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


def _final_stage(containerfile: str) -> str:
    return containerfile[containerfile.rindex("\nFROM ") :]


def test_both_recipes_end_with_slim_and_ship_only_its_root() -> None:
    build = _flat(BUILD)
    runtime = _flat(CONTAINERFILE[: CONTAINERFILE.rindex("\nFROM ")])
    final = _final_stage(CONTAINERFILE)
    # The Containerfile: slim.py runs last in the runtime stage; the image is its root alone.
    assert "source=hack/image/slim.py,target=/slim.py" in runtime
    assert runtime.rstrip().endswith("/opt/acmebridge/bin/python /slim.py /slim")
    assert final.startswith("\nFROM scratch\n") and "COPY --from=runtime /slim /" in final
    # make image: the same script, with the same Python, after the same steps; oci.py writes
    # the new root only.
    assert 'cp hack/image/slim.py "$rootfs/wheels/slim.py"' in build
    assert "in_root /opt/acmebridge/bin/python /wheels/slim.py /slim" in build
    assert build.index("useradd") < build.index("slim.py /slim")
    assert "image_root=$rootfs/slim" in build and '--rootfs "$image_root"' in build


def _containerfile_env(stage: str) -> dict[str, str]:
    words = [w for line in re.findall(r"^ENV (.*)$", _flat(stage), re.M) for w in shlex.split(line)]
    return dict(word.split("=", 1) for word in words)


def test_both_images_have_the_same_environment_and_ports() -> None:
    final = _final_stage(CONTAINERFILE)
    match = re.search(r"IMAGE_ENV=\(([^)]*)\)", BUILD)
    assert match is not None, "no IMAGE_ENV in build.sh"
    built = dict(word.split("=", 1) for word in shlex.split(match.group(1)))
    assert _containerfile_env(final) == built
    exposed = set(re.search(r"^EXPOSE (.*)$", final, re.M).group(1).split())  # type: ignore[union-attr]
    assert {f"{port}/tcp" for port in exposed} == set(re.findall(r"--port (\S+)", BUILD))


@pytest.mark.parametrize(
    ("name", "cut"),
    [
        pytest.param("readline.cpython-311-x86_64-linux-gnu.so", True, id="readline: a terminal"),
        pytest.param("_curses.cpython-311-x86_64-linux-gnu.so", True, id="curses: a terminal"),
        pytest.param("_sqlite3.cpython-311-x86_64-linux-gnu.so", True, id="sqlite: unused"),
        pytest.param("_testcapi.cpython-311-x86_64-linux-gnu.so", True, id="CPython's tests"),
        pytest.param("nis.cpython-311-x86_64-linux-gnu.so", True, id="NIS and its Kerberos"),
        pytest.param("_ssl.cpython-311-x86_64-linux-gnu.so", False, id="ssl stays"),
        pytest.param("_ctypes.cpython-311-x86_64-linux-gnu.so", False, id="ctypes stays (cffi)"),
        pytest.param("_decimal.cpython-311-x86_64-linux-gnu.so", False, id="decimal stays"),
        pytest.param("_asyncio.cpython-311-x86_64-linux-gnu.so", False, id="asyncio stays"),
    ],
)
def test_slim_cuts_only_extension_modules_the_operator_never_loads(name: str, cut: bool) -> None:
    assert bool(slim.UNUSED_EXTENSIONS.match(name)) is cut


def test_slim_copies_a_symlink_chain_and_the_libraries_it_loads(tmp_path: Path) -> None:
    """Against this machine's Debian: a usr-merged /lib, python3 -> python3.11, libc."""
    dest = tmp_path / "root"
    dest.mkdir()
    python = Path("/usr/bin/python3")
    slim.copy(python, dest)
    assert (dest / "usr/bin/python3").is_symlink()
    assert (dest / "usr/bin" / Path(python.resolve()).name).is_file()
    libraries = slim.shared_libraries([python.resolve()])
    assert any(lib.name == "libc.so.6" for lib in libraries)
    for library in libraries:
        slim.copy(library, dest)
    libc = next(lib for lib in libraries if lib.name == "libc.so.6")
    # /lib is a link to usr/lib on this Debian: the copy keeps the link and writes the real path.
    assert (dest / "lib").is_symlink() == Path("/lib").is_symlink()
    assert (dest / libc.resolve().relative_to("/")).is_file()


# Run in a fresh interpreter: the operator's imports and its Kubernetes calls (a kubeconfig read,
# reads and writes answered by a local server, a 404, a closed port), then the list of
# loaded modules that slim.py removes from the image.
_LAZY_PROBE = """
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status = 404 if self.path.endswith("/missing") else 200
        found = {"items": []}
        body = json.dumps({"kind": "Status", "reason": "NotFound"} if status == 404 else found)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
config = sys.argv[1]
open(config, "w").write(json.dumps({
    "apiVersion": "v1", "kind": "Config", "current-context": "c",
    "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
}))
import os
os.environ["KUBECONFIG"] = config
import acmebridge.__main__, acmebridge.cli, acmebridge.handlers.operator, acmebridge.handlers.mtls
from acmebridge.adapters.kube import Kube, KubeError, api_client, core_path
kube = Kube(api_client())
assert kube.get(core_path("secrets", "ns", "missing")) is None
kube.list(core_path("secrets", "ns"), label_selector="a=b")
kube.create(core_path("secrets", "ns"), {"metadata": {"name": "x"}})
kube.merge_patch(core_path("secrets", "ns", "x"), {"metadata": {"labels": {"a": "b"}}})
kube.replace(core_path("secrets", "ns", "x"), {"metadata": {"name": "x"}})
kube.delete(core_path("secrets", "ns", "x"))
import argparse
acmebridge.cli._kube(argparse.Namespace(kubeconfig=config, context=None))
server.shutdown()
server.server_close()
try:
    Kube(api_client()).get(core_path("secrets", "ns", "x"))
except KubeError:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith(
    tuple(f"{p.replace('/', '.')}." for p in %r)))))
"""


def test_the_operator_loads_none_of_the_client_modules_the_image_leaves_out(
    tmp_path: Path,
) -> None:
    import json
    import subprocess

    script = _LAZY_PROBE % (slim.LAZY_UNUSED,)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "kubeconfig")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    kept = {f"kubernetes.client.models.{name.removesuffix('.py')}" for name in slim.LAZY_KEPT}
    assert set(loaded) - kept == set()
