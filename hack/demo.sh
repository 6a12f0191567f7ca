#!/usr/bin/env bash
# `make demo`: with the lab up, run the operator, apply examples/, wait for the certificate and
# print what was issued. The operator is stopped at the end; the lab keeps running
# (`make lab-down` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; . .lab/env; set +a
export PATH="$PWD/.venv/bin:$LAB_BIN:$PATH" PYTHONPATH="$PWD/operator:$PWD"
PEBBLE_TLS_CA_B64=$(base64 -w0 < "$PEBBLE_TLS_CA")
PEBBLE_ROOT_B64=$(base64 -w0 < "$PEBBLE_ROOT")
export PEBBLE_TLS_CA_B64 PEBBLE_ROOT_B64

log=.lab/logs/demo-operator.log
echo ">> starting the operator (log: $log)"
RUN_ARGS="--metrics-port 0" hack/run.sh >"$log" 2>&1 &
op=$!
trap 'kill $op 2>/dev/null || true; wait $op 2>/dev/null || true' EXIT

echo ">> applying examples/ (placeholders filled from .lab/env)"
for f in examples/*.yaml; do
  python3 -c 'import os,sys; sys.stdout.write(os.path.expandvars(sys.stdin.read()))' <"$f" \
    | kubectl apply -f -
done

start=$(date +%s%N)
echo ">> waiting for Certificate demo/web to become Ready"
if ! kubectl -n demo wait --for=condition=Ready certificate/web --timeout=180s; then
  kubectl -n demo describe certificate web
  echo "operator log tail:"; tail -n 40 "$log"
  exit 1
fi
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
printf '>> Ready after %d.%03ds\n\n' $((ms / 1000)) $((ms % 1000))
kubectl -n demo get issuer,certificate
echo
acmebridge inspect secret -n demo web-tls || true
echo
echo "The lab is still running: 'make lab-down' stops it; 'make run' runs the operator again."
