#!/usr/bin/env bash
# Runs pytest from the project venv. pytest exits 5 when it collected no test: that is a failure
# here (a suite that silently ran nothing must not pass), said plainly.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests for: $*" >&2
  exit 1
fi
exit "$rc"
