"""The Helm chart as tests see it: the pinned helm binary, and the chart rendered with given values.

helm is one of the lab's pinned binaries (`make lab-bin` builds it into .lab/bin). Rendering
needs no cluster; the rendered documents come back as plain dicts, hooks included unless asked
otherwise, so tests can assert on them or apply them to the lab's API server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "acmebridge"
HOOK_ANNOTATION = "helm.sh/hook"
JSON = dict[str, Any]


def helm_binary() -> Path | None:
    """The lab's pinned helm, else $HELM, else helm on PATH; None when there is none."""
    pinned = ROOT / ".lab" / "bin" / "helm"
    if os.access(pinned, os.X_OK):
        return pinned
    for candidate in (os.environ.get("HELM"), shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its output."""


def run_helm(helm: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Runs helm and returns its stdout; ``env`` adds variables (KUBECONFIG for a cluster)."""
    # helm keeps caches, repositories and plugins under $HOME by default; none are needed here.
    scratch = Path(tempfile.gettempdir()) / "acmebridge-helm"
    dirs = {f"HELM_{d}_HOME": str(scratch / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}
    result = subprocess.run(
        [str(helm), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **dirs, **(env or {})},
    )
    if result.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _values_args(values: Mapping[str, Any] | None, tmp: Path) -> list[str]:
    if not values:
        return []
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return ["--values", str(path)]


def template_text(
    helm: Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "acmebridge",
    namespace: str = "acmebridge",
    values_files: Iterable[Path] = (),
    include_crds: bool = False,
) -> str:
    """`helm template` output for the chart."""
    with tempfile.TemporaryDirectory() as tmp:
        args = ["template", release, str(CHART), "--namespace", namespace]
        for f in values_files:
            args += ["--values", str(f)]
        args += _values_args(values, Path(tmp))
        if include_crds:
            args.append("--include-crds")
        return run_helm(helm, *args)


def render(helm: Path, values: Mapping[str, Any] | None = None, **kw: Any) -> list[JSON]:
    """The chart's rendered documents, in helm's order (empty documents dropped)."""
    return [d for d in yaml.safe_load_all(template_text(helm, values, **kw)) if d]


def lint(helm: Path, values: Mapping[str, Any] | None = None, **kw: Any) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["lint", "--strict", str(CHART), *_values_args(values, Path(tmp))]
        for f in kw.get("values_files", ()):
            args += ["--values", str(f)]
        return run_helm(helm, *args)


def is_hook(doc: Mapping[str, Any]) -> bool:
    return HOOK_ANNOTATION in ((doc.get("metadata") or {}).get("annotations") or {})


def of_kind(docs: Iterable[JSON], kind: str) -> list[JSON]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: Iterable[JSON], kind: str, name: str | None = None) -> JSON:
    """The only document of ``kind`` (and ``name``); fails listing what there is otherwise."""
    docs = list(docs)
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    if len(found) != 1:
        have = [f"{d.get('kind')}/{d['metadata']['name']}" for d in docs]
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)} in {have}")
    return found[0]


def workload(docs: Iterable[JSON]) -> JSON:
    """The operator's Deployment or StatefulSet."""
    found = [d for d in docs if d.get("kind") in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [d.get("kind") for d in found]
    return found[0]


def operator_container(docs: Iterable[JSON]) -> JSON:
    containers = workload(docs)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])
