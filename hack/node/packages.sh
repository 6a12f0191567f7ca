#!/usr/bin/env bash
# Installs the Debian packages the lab's real node (make lab-up NODE=1, make node-up) and the
# Docker-less image build (make image) need, and says which ones it installs. Packages already
# present are left alone; nothing is upgraded.
#
#   hack/node/packages.sh node     containerd, runc, CNI plugins, iptables, conntrack, nftables
#   hack/node/packages.sh image    debootstrap (the image's Debian root filesystem)
set -euo pipefail

declare -A WANTED=(
  [node]="containerd runc containernetworking-plugins iptables conntrack nftables"
  [image]="debootstrap"
)
what=${1:?usage: $0 node|image}
[[ -n ${WANTED[$what]:-} ]] || { echo "unknown set $what (node|image)" >&2; exit 2; }

missing=()
for pkg in ${WANTED[$what]}; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo ">> the lab's node needs these Debian packages: ${missing[*]}" >&2
  echo "   install them as root: apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo ">> installing Debian packages for the lab's $what: ${missing[*]} (apt-get, once per machine)"
t0=$SECONDS
# Their services (containerd) must not start on their own: the lab starts containerd itself,
# with its own configuration and state under .lab/node. policy-rc.d is Debian's switch for that.
policy=/usr/sbin/policy-rc.d
made_policy=
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  made_policy=1
fi
cleanup() { [[ -z $made_policy ]] || rm -f "$policy"; }
trap cleanup EXIT
log=$(mktemp /tmp/acmebridge-apt.XXXXXX.log)
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  echo ">> apt-get failed installing ${missing[*]}; its output ($log):" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
rm -f "$log"
echo "   installed in $((SECONDS - t0))s"
