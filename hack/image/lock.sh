#!/usr/bin/env bash
# Writes hack/image/requirements.lock: every package the operator's image installs besides
# acmebridge itself, each pinned to one version, resolved from pyproject.toml for CPython 3.11 on
# Linux (the image's Python). Both image recipes install exactly this list: the Containerfile
# (Docker, Podman) and hack/image/build.sh (make image, no Docker). Run it after changing the
# dependencies in pyproject.toml; tests/unit/test_image_recipe.py checks the two agree.
set -euo pipefail
cd "$(dirname "$0")/../.."
report=$(mktemp)
trap 'rm -f "$report"' EXIT
# This machine's CPython 3.11 on x86_64 Linux resolves what the image's would.
python3 -m pip install --quiet --dry-run --ignore-installed --report "$report" . >/dev/null
python3 - "$report" >hack/image/requirements.lock <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print("# The image's Python packages besides acmebridge, pinned; written by hack/image/lock.sh.")
for item in sorted(report["install"], key=lambda i: i["metadata"]["name"].lower()):
    meta = item["metadata"]
    if meta["name"].lower() != "acmebridge":
        print(f"{meta['name']}=={meta['version']}")
PY
echo ">> wrote hack/image/requirements.lock ($(grep -vc '^#' hack/image/requirements.lock) packages)"
