#!/usr/bin/env bash
# make image: builds the operator's image without Docker and writes it as an OCI archive,
# dist/acmebridge-image.tar (image localhost/acmebridge:dev), then loads it into the lab's node
# when one runs.
#
# The recipe is the Containerfile's, step for step: a Debian 12 root filesystem with Python 3.11
# (debootstrap --variant=minbase instead of the python:3.11-slim base), a virtualenv at
# /opt/acmebridge holding the project's wheel and exactly the packages pinned in
# hack/image/requirements.lock (installed offline by the image's own pip, as the Containerfile
# does), the user 65532; then hack/image/slim.py copies what the operator runs into a fresh root
# (the Containerfile's `FROM scratch` stage): the virtualenv without pip, setuptools and
# kubernetes.aio, Python without its unused parts, the shared libraries they load. No shell, no
# package manager, no compiler, no caches. ENTRYPOINT acmebridge, CMD run.
#
# Per-machine cache under ${XDG_CACHE_HOME:-~/.cache}/acmebridge/image: the Debian base (keyed by
# its package list) and the dependency wheels (keyed by the lock), so a rebuild after a code change
# only adds the project's wheel to a copy of the base.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
NAME=${IMAGE_NAME:-localhost/acmebridge:dev}
OUT=${IMAGE_OUT:-$root/dist/acmebridge-image.tar}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-venv brings ensurepip, which the virtualenv's pip comes from (as in the Containerfile).
BASE_PACKAGES=python3,python3-venv
PYTHON_ENV=(PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1)
# The image's environment, as the Containerfile's final stage sets it.
IMAGE_ENV=(LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
  PATH=/opt/acmebridge/bin:/usr/local/bin:/usr/bin:/bin)
LOCK=hack/image/requirements.lock

fmt() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
[[ $(id -u) == 0 ]] || { echo "make image needs root (debootstrap, chroot)" >&2; exit 1; }
hack/node/packages.sh image

cache=${XDG_CACHE_HOME:-$HOME/.cache}/acmebridge/image
base_key=$(printf '%s\n' "$SUITE" "$BASE_PACKAGES" minbase | sha256sum | cut -c1-16)
wheels_key=$(cat "$LOCK" | sha256sum | cut -c1-16)
base=$cache/base-$base_key
wheels=$cache/wheels-$wheels_key
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
t_all=$SECONDS

if [[ ! -f $base/.complete ]]; then
  echo ">> image: debootstrap $SUITE minbase with $BASE_PACKAGES (once per machine)"
  t0=$SECONDS
  rm -rf "$base" "$base.partial"
  mkdir -p "$base.partial"
  if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$base.partial/rootfs" \
    "$MIRROR" >"$cache/debootstrap.log" 2>&1; then
    echo ">> debootstrap failed; the end of $cache/debootstrap.log:" >&2
    tail -n 20 "$cache/debootstrap.log" >&2
    exit 1
  fi
  touch "$base.partial/.complete"
  mv "$base.partial" "$base"
  echo "   base root filesystem in $(fmt $((SECONDS - t0)))"
fi
if [[ ! -f $wheels/.complete ]]; then
  echo ">> image: wheels of the $(grep -vc '^#' "$LOCK") locked dependencies (once per lock)"
  t0=$SECONDS
  rm -rf "$wheels"
  python3 -m pip wheel --quiet --wheel-dir "$wheels" --no-deps -r "$LOCK"
  touch "$wheels/.complete"
  echo "   wheels in $(fmt $((SECONDS - t0)))"
fi

work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
t0=$SECONDS
cp -a "$base/rootfs" "$work/rootfs"
rootfs=$work/rootfs
mkdir -p "$rootfs/wheels"
cp "$wheels"/*.whl "$LOCK" "$rootfs/wheels/"
# The project's wheel from a copy of what the Containerfile copies: building in the checkout
# would reuse its build/ folder, whose copies setuptools refreshes by modification time only
# (a file replaced by an older one stays stale there, and a stale operator is hard to see).
src=$work/src
mkdir -p "$src"
cp -a pyproject.toml README*.md operator "$src/"
python3 -m pip wheel --quiet --no-deps --wheel-dir "$rootfs/wheels" "$src" >/dev/null
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${PYTHON_ENV[@]}" chroot "$rootfs" "$@"; }
# The Containerfile's runtime stage, in the same order.
in_root python3 -m venv /opt/acmebridge
in_root /opt/acmebridge/bin/pip install --quiet --no-compile --no-index --find-links /wheels \
  -r /wheels/requirements.lock acmebridge
in_root useradd --system --uid 65532 --user-group --no-create-home \
  --home-dir /nonexistent --shell /usr/sbin/nologin acmebridge
# The Containerfile's last step: what the operator runs, copied into a fresh root (it compiles
# the bytecode; the root filesystem is read-only at run time).
cp hack/image/slim.py "$rootfs/wheels/slim.py"
in_root /opt/acmebridge/bin/python /wheels/slim.py /slim
image_root=$rootfs/slim
echo ">> image: root filesystem ready in $(fmt $((SECONDS - t0))); writing $NAME"
t0=$SECONDS
env_args=()
for kv in "${IMAGE_ENV[@]}"; do env_args+=(--env "$kv"); done
summary=$(python3 hack/image/oci.py --rootfs "$image_root" --name "$NAME" --out "$OUT" \
  --entrypoint '["acmebridge"]' --cmd '["run"]' --user 65532:65532 "${env_args[@]}" \
  --port 9402/tcp --port 8080/tcp --port 8089/tcp \
  --exclude /proc --exclude /sys --exclude /dev)
read -r size compressed < <(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print(s["layer_bytes"], s["compressed_bytes"])' "$summary")
echo ">> image: $NAME written to ${OUT#"$root"/} in $(fmt $((SECONDS - t0)))"
echo ">> image size: $((size / 1000000)) MB unpacked (the layer), $((compressed / 1000000)) MB compressed (target: <= 150 MB unpacked)"
mb() { du -s --apparent-size --block-size=1000000 "$@" | awk '{s += $1} END {print s}'; }
site=$image_root/opt/acmebridge/lib/python3.11/site-packages
echo "   files: $(mb "$image_root") MB: the kubernetes client $(mb "$site/kubernetes") MB," \
  "cryptography $(mb "$site/cryptography") MB, other Python packages" \
  "$(($(mb "$site") - $(mb "$site/kubernetes") - $(mb "$site/cryptography"))) MB," \
  "Python and its standard library $(mb "$image_root"/usr/lib/python3* "$image_root"/usr/bin) MB," \
  "shared libraries $(mb "$image_root"/usr/lib/*-linux-gnu) MB"
echo ">> image built in $(fmt $((SECONDS - t_all)))"
if [[ -f .lab/node/state.json ]]; then
  PYTHONPATH=$root python3 -m tests.lab.labnode load-image "$OUT"
fi
