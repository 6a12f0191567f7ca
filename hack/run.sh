#!/usr/bin/env bash
# `make run`: the operator against $KUBECONFIG, with RUN_ARGS passed on.
#
# Against the lab (.lab/env exists and $KUBECONFIG is unset or the lab's), it also gets the lab's
# settings, so that a Certificate applied by hand in the lab is issued as in `make demo`: the
# HTTP-01 self check resolves through the lab's DNS and connects to the port Pebble validates
# on, DNS-01 checks the lab's BIND, and the cluster-resource namespace that ClusterIssuers keep
# their account keys in exists (the Helm chart creates it in a real cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
if [[ -f .lab/env ]]; then
  lab_kubeconfig=$(sed -n 's/^KUBECONFIG=//p' .lab/env | tr -d "'\"")
  if [[ -z ${KUBECONFIG:-} || ${KUBECONFIG:-} == "$lab_kubeconfig" ]]; then
    set -a; . .lab/env; set +a
    echo ">> running against the lab ($KUBECONFIG), with the lab's settings" >&2
    "$LAB_BIN/kubectl" get namespace acmebridge >/dev/null 2>&1 \
      || "$LAB_BIN/kubectl" create namespace acmebridge >/dev/null
    args+=(--self-check-nameserver "$LAB_DNS_SERVER" --http01-self-check-port "$LAB_HTTP01_PORT")
    [[ -n ${BIND_ADDR:-} ]] && args+=(--dns01-nameservers "$BIND_ADDR")
  fi
fi
# shellcheck disable=SC2086 # RUN_ARGS is a list of flags, split on purpose
exec .venv/bin/acmebridge run "${args[@]}" ${RUN_ARGS:-}
