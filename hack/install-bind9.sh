#!/usr/bin/env bash
# Installs BIND 9 from Debian's packages when `named` is missing: the lab runs it as its own
# process, the authoritative server for the DNS-01 test zone (tests/lab/labbind.py).
#
# The package's own service is never started: the lab starts named itself on loopback, on its
# own port, with its own configuration under .lab/bind. Debian's policy-rc.d hook keeps
# maintainer scripts from starting services; when the machine has none, one is put in place for
# the install and removed afterwards.
set -euo pipefail

named=${NAMED:-/usr/sbin/named}
if [[ -x $named ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "BIND 9 ($named) is missing and there is no apt-get here: install BIND 9.18+ yourself" >&2
  exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "BIND 9 ($named) is missing: run 'sudo apt-get install bind9' (the lab needs it)" >&2
  exit 1
fi

echo ">> installing BIND 9 (Debian package bind9) for the lab's DNS-01 tests"
began=$SECONDS
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# Put here by acmebridge hack/install-bind9.sh for one install.\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends bind9 >/tmp/acmebridge-bind9-install.log 2>&1; then
  # A machine whose package lists were never fetched has no candidate for bind9 yet.
  apt-get update -q >>/tmp/acmebridge-bind9-install.log 2>&1
  apt-get install -y -q --no-install-recommends bind9 >>/tmp/acmebridge-bind9-install.log 2>&1 || {
    tail -20 /tmp/acmebridge-bind9-install.log >&2
    exit 1
  }
fi
echo ">> BIND 9 installed in $((SECONDS - began))s: $($named -v)"
