#!/usr/bin/env bash
# Builds the lab's pinned binaries (kube-apiserver, kube-controller-manager, kubectl,
# kube-scheduler, kubelet, kube-proxy, etcd, Pebble, pebble-challtestsrv, helm, step-ca, step, stepca-eab, lego) into
# .lab/bin.
#
# A cold build of the Kubernetes binaries takes minutes on a small machine, so finished builds are
# kept per machine in ${XDG_CACHE_HOME:-~/.cache}/acmebridge/lab-bin/<stamp>/ and only copied into
# .lab/bin afterwards: a fresh clone on the same machine (which is what CI does) reuses them. The
# stamp hashes every pin (hack/tools/go.mod and go.sum, the package lists below), the build flags
# and the Go toolchain, so a binary is rebuilt exactly when one of those changes. GOMODCACHE and
# GOCACHE stay at their defaults, so even a rebuild reuses downloaded modules and compiled packages.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.lab/bin
tools=$root/hack/tools

# Kubernetes and etcd come from the wrapper module in hack/tools: k8s.io/kubernetes maps its
# staging modules with ./staging replaces that `go install pkg@version` cannot honour.
# name=package, built with `go build` inside hack/tools.
WRAPPED=(
  "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver"
  "kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager"
  "kubectl=k8s.io/kubernetes/cmd/kubectl"
  # The lab's real node (make lab-up NODE=1): kube-scheduler places Pods on it, kubelet runs
  # them, kube-proxy makes ClusterIP Services work; all at the apiserver's version.
  "kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler"
  "kubelet=k8s.io/kubernetes/cmd/kubelet"
  "kube-proxy=k8s.io/kubernetes/cmd/kube-proxy"
  "etcd=go.etcd.io/etcd/server/v3"
)

# Everything else needs no replace directives: name=package@version, built with `go install`.
# Later binaries go here, for example:
#   "step-ca=github.com/smallstep/certificates/cmd/step-ca@v0.30.2"
#   "step=github.com/smallstep/cli/cmd/step@v0.30.6"
#   "helm=helm.sh/helm/v3/cmd/helm@v3.x.y"
INSTALLED=(
  "pebble=github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1"
  "pebble-challtestsrv=github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@v2.10.1"
  # helm renders, lints and installs the chart in tests/chart (newest 3.x on the Go proxy).
  "helm=helm.sh/helm/v3/cmd/helm@v3.22.0"
  # step-ca and step run the lab's "existing enterprise PKI" (tests/lab/labstepca.py).
  "step-ca=github.com/smallstep/certificates/cmd/step-ca@v0.30.2"
  "step=github.com/smallstep/cli/cmd/step@v0.30.6"
)

# Modules of their own under hack/ (their go.mod and go.sum pin them, so their dependencies never
# move the Kubernetes pins): name=directory[:package], built with `go build` there.
LOCAL=(
  # Stores ACME EAB keys in step-ca's database (open-source step-ca has no API for it).
  "stepca-eab=hack/stepca-eab"
  # The benchmark's baseline ACME client (bench/): the proxy serves v4.35.2 but lists no versions.
  "lego=hack/lego:github.com/go-acme/lego/v4/cmd/lego"
  # The real node's sandbox ("pause") container, wrapped in an image by tests/lab/labnode.py.
  "pause=hack/pause"
)

# The version the Kubernetes binaries report comes from the pin itself, so it cannot drift.
k8s_version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$tools/go.mod")
[[ $k8s_version =~ ^v([0-9]+)\.([0-9]+)\. ]] || {
  echo "cannot read the k8s.io/kubernetes pin from $tools/go.mod" >&2
  exit 1
}
KUBE_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version"
KUBE_LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=${BASH_REMATCH[1]}"
KUBE_LDFLAGS+=" -X k8s.io/component-base/version.gitMinor=${BASH_REMATCH[2]}"
# -pgo=off: the profile-guided build roughly doubles compile time for no benefit in tests.
KUBE_BUILD_FLAGS=(-pgo=off)
export CGO_ENABLED=0

stamp=$(
  {
    cat "$tools/go.mod" "$tools/go.sum"
    printf '%s\n' "${WRAPPED[@]}" "${INSTALLED[@]}" "$KUBE_LDFLAGS" "${KUBE_BUILD_FLAGS[@]}"
    for entry in "${LOCAL[@]}"; do
      dir=${entry#*=} dir=${dir%%:*}
      cat "$root/$dir"/go.mod "$root/$dir"/go.sum "$root/$dir"/*.go
    done
    go env GOVERSION GOOS GOARCH CGO_ENABLED
  } | sha256sum | cut -c1-16
)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/acmebridge/lab-bin
cache=$cache_root/$stamp
names=()
for entry in "${WRAPPED[@]}" "${INSTALLED[@]}" "${LOCAL[@]}"; do names+=("${entry%%=*}"); done

installed_is_current() {
  [[ -f $out/.stamp && $(<"$out/.stamp") == "$stamp" ]] || return 1
  local name
  for name in "${names[@]}"; do [[ -x $out/$name ]] || return 1; done
}

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

build_into() {
  local dest=$1 total=$((${#WRAPPED[@]} + ${#INSTALLED[@]} + ${#LOCAL[@]})) n=0 entry name pkg t0
  for entry in "${WRAPPED[@]}"; do
    name=${entry%%=*} pkg=${entry#*=} n=$((n + 1)) t0=$SECONDS
    echo ">> [$n/$total] building $name ($pkg, pinned in hack/tools/go.mod)"
    (cd "$tools" && go build "${KUBE_BUILD_FLAGS[@]}" -ldflags "$KUBE_LDFLAGS" -o "$dest/$name" "$pkg")
    echo "   $name done in $(fmt_secs $((SECONDS - t0)))"
  done
  local gobin=$dest/.gobin
  for entry in "${INSTALLED[@]}"; do
    name=${entry%%=*} pkg=${entry#*=} n=$((n + 1)) t0=$SECONDS
    echo ">> [$n/$total] building $name ($pkg)"
    GOBIN=$gobin go install "$pkg"
    # go install names the binary after the package's last element (its parent for a /vN suffix).
    local base=${pkg%@*}
    base=${base##*/}
    [[ $base =~ ^v[0-9]+$ ]] && base=$(basename "$(dirname "${pkg%@*}")")
    mv "$gobin/$base" "$dest/$name"
    echo "   $name done in $(fmt_secs $((SECONDS - t0)))"
  done
  rmdir "$gobin"
  local dir
  for entry in "${LOCAL[@]}"; do
    name=${entry%%=*} dir=${entry#*=} n=$((n + 1)) t0=$SECONDS
    pkg=.
    [[ $dir == *:* ]] && pkg=${dir#*:} dir=${dir%%:*}
    echo ">> [$n/$total] building $name ($dir, pinned in its go.mod)"
    (cd "$root/$dir" && go build -o "$dest/$name" "$pkg")
    echo "   $name done in $(fmt_secs $((SECONDS - t0)))"
  done
}

# Keeps the two newest cache entries: enough to switch between two branches without rebuilding.
prune_cache() {
  local old
  ls -1dt "$cache_root"/*/ 2>/dev/null | tail -n +3 | while read -r old; do
    echo ">> removing old lab binaries ${old%/}"
    rm -rf "$old"
  done
}

ensure_cached() {
  [[ -f $cache/.complete ]] && return 0
  echo ">> no cached lab binaries for stamp $stamp: building (a cold build takes minutes)"
  local partial=$cache_root/.partial-$stamp-$$ t0=$SECONDS
  mkdir -p "$partial"
  # shellcheck disable=SC2064 # expand now: the local is gone when the trap fires
  trap "rm -rf '$partial'" EXIT
  build_into "$partial"
  touch "$partial/.complete"
  rm -rf "$cache"
  mv "$partial" "$cache"
  trap - EXIT
  echo ">> built all lab binaries in $(fmt_secs $((SECONDS - t0)))"
  prune_cache
}

install_from_cache() {
  mkdir -p "$out"
  local name
  for name in "${names[@]}"; do
    # Copy then rename: overwriting a running executable in place fails (ETXTBSY).
    cp "$cache/$name" "$out/.$name.new"
    mv -f "$out/.$name.new" "$out/$name"
  done
  echo "$stamp" >"$out/.stamp"
  echo ">> lab binaries installed in ${out#"$root"/} (stamp $stamp)"
}

if installed_is_current; then
  echo ">> lab binaries are up to date (stamp $stamp)"
  exit 0
fi
mkdir -p "$cache_root"
# One build at a time per machine: a second caller waits and then finds the cache filled.
exec 9>"$cache_root/.lock"
if command -v flock >/dev/null; then
  flock 9
fi
ensure_cached
install_from_cache
