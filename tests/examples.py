"""The manifest files under examples/: everything but the Helm values files in examples/helm/,
which tests/chart checks as chart input."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def manifest_files() -> list[Path]:
    return [p for p in sorted(EXAMPLES.rglob("*.yaml")) if p.parent.name != "helm"]
