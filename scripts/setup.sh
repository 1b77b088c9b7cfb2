#!/usr/bin/env bash
# Install and start everything panbinder needs on one Debian 12 machine, as root.
# Idempotent: each step checks whether it is already done and skips it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${PANBINDER_STATE:-$ROOT/.state}
VENV=$STATE/venv
REGISTRY_ADDR=${PANBINDER_REGISTRY_ADDR:-127.0.0.1:5000}
# The number after "bookworm-" changes whenever the base image's contents change (2: Node.js and
# npm), so an existing machine makes the new one; builder/buildpacks/settings.py BASE_IMAGE matches.
BASE_IMAGE=${PANBINDER_BASE_IMAGE:-panbinder-base:bookworm-2}
CHP_VERSION=4.6.3
export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}

mkdir -p "$STATE/logs" "$STATE/run" "$STATE/registry"
say() { printf '[setup] %s\n' "$*"; }

# -- Debian packages -----------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
[ -x /usr/bin/docker ] || need+=(docker.io)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v ip >/dev/null || need+=(iproute2)       # the build engine's bridge
command -v iptables >/dev/null || need+=(iptables)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v git >/dev/null || need+=(git)
command -v curl >/dev/null || need+=(curl)
# the engine decompresses image layers with unpigz when it finds it (pulls, restores from an
# archive): a restore's load took 2.3 s instead of 4.6 s
command -v unpigz >/dev/null || need+=(pigz)
command -v npm >/dev/null || need+=(npm)
command -v node >/dev/null || need+=(nodejs)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# the test suite drives Debian's chromium (browser tests); `make serve` does not need it
if [ "${1:-}" = "--test" ]; then command -v chromium >/dev/null || need+=(chromium); fi
# the catalogue tests run on PostgreSQL too: a throwaway server per session (tests/postgres.py)
if [ "${1:-}" = "--test" ]; then compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql); fi
# the Slurm back-end: a one-node cluster for its tests, podman in the jobs
if [ "${1:-}" = "--test" ] || [ "${PANBINDER_BACKEND:-}" = "slurm" ]; then
  for p in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge podman:podman \
    newuidmap:uidmap; do
    command -v "${p%%:*}" >/dev/null || need+=("${p#*:}")
  done
fi
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >"$STATE/logs/apt.log"
fi

# -- the unprivileged user HDF5 previews run as (PreviewSandbox.user) --------------------------
if ! getent passwd panbinder-preview >/dev/null; then
  say "creating the system user panbinder-preview (no home, no login shell) for previews"
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin panbinder-preview
fi

# -- the user Slurm jobs run as (PanbinderSlurmSpawner.job_user): rootless podman, overlay storage
if { [ "${1:-}" = "--test" ] || [ "${PANBINDER_BACKEND:-}" = "slurm" ]; } && ! getent passwd panbinder-job >/dev/null; then
  say "creating the system user panbinder-job (rootless podman in Slurm jobs)"
  useradd --system --user-group --create-home --home-dir /var/lib/panbinder-job \
    --shell /bin/sh panbinder-job
  usermod --add-subuids 400000-465535 --add-subgids 400000-465535 panbinder-job
  install -d -o panbinder-job -g panbinder-job /var/lib/panbinder-job/.config/containers
  # the kernel's own overlay for rootless users (Linux 5.13+): fuse-overlayfs needs /dev/fuse,
  # which unprivileged users cannot open on every machine
  printf '[storage]\ndriver = "overlay"\n' >/var/lib/panbinder-job/.config/containers/storage.conf
  chown -R panbinder-job: /var/lib/panbinder-job/.config
fi

# -- background daemons, started by pid file ------------------------------------------------------
start_daemon() {  # name, readiness command, command...
  local name=$1 ready=$2; shift 2
  if eval "$ready" >/dev/null 2>&1; then return 0; fi
  say "starting $name"
  setsid sh -c "echo \$\$ > '$STATE/run/$name.pid'; exec \"\$@\"" "$name" "$@" \
    >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  for _ in $(seq 1 150); do
    if eval "$ready" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  say "$name did not start; its log follows"; tail -n 30 "$STATE/logs/$name.log"; exit 1
}

start_daemon dockerd "/usr/bin/docker version" dockerd --host=unix:///var/run/docker.sock

cat >"$STATE/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $STATE/registry}
  delete: {enabled: true}
http:
  addr: $REGISTRY_ADDR
YML
start_daemon registry "curl -sf http://$REGISTRY_ADDR/v2/" docker-registry serve "$STATE/registry.yml"

# -- offline base image --------------------------------------------------------------------
if ! /usr/bin/docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  mirror=${PANBINDER_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n1)}
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)
  say "making base image $BASE_IMAGE with debootstrap from $mirror"
  rootfs=$STATE/rootfs
  rm -rf "$rootfs"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,locales,less,unzip,gettext-base,tini \
    bookworm "$rootfs" "$mirror" >"$STATE/logs/debootstrap.log" 2>&1
  # Node.js and npm for postBuild (JupyterLab extensions, npm install --global). debootstrap's own
  # resolver cannot install npm (its hundreds of node-* packages need apt's), so apt does it.
  chroot "$rootfs" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm' \
    >>"$STATE/logs/debootstrap.log" 2>&1
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | /usr/bin/docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
# -- configurable-http-proxy, pinned, inside the state directory --------------------------------------
if [ ! -x "$STATE/node/bin/configurable-http-proxy" ]; then
  say "installing configurable-http-proxy $CHP_VERSION"
  npm install --silent --global --prefix "$STATE/node" "configurable-http-proxy@$CHP_VERSION" >"$STATE/logs/npm.log" 2>&1
fi

# -- virtualenv from the hashed locks: the runtime lock always, the development lock for tests ----
# Each lock is installed once per content (a stamp in the venv records what it holds), so a second
# run skips pip entirely.
install_lock() {  # stamp name, lock file, files whose change means reinstalling
  local name=$1 lock=$2; shift 2
  local stamp; stamp=$(cat "$lock" "$@" | sha256sum | cut -c1-16)
  if [ "$(cat "$VENV/.panbinder-$name" 2>/dev/null)" = "$stamp" ]; then return 0; fi
  say "installing $(basename "$lock") into the virtualenv"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --require-hashes --no-deps -r "$lock" 2>>"$STATE/logs/pip.log"
  echo "$stamp" >"$VENV/.panbinder-$name"
}
install_lock runtime "$ROOT/requirements.lock"
if [ "$(cat "$VENV/.panbinder-editable" 2>/dev/null)" != "$(sha256sum <"$ROOT/pyproject.toml")" ]; then
  rm -rf "$ROOT"/*.egg-info  # stale metadata there would shadow the installed entry points
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT" 2>>"$STATE/logs/pip.log"
  sha256sum <"$ROOT/pyproject.toml" >"$VENV/.panbinder-editable"
fi
if [ "${1:-}" = "--test" ]; then install_lock dev "$ROOT/requirements-dev.lock" "$ROOT/requirements.lock"; fi

# -- the build engine: a dockerd of its own that runs every build (builder/build_engine.py) --------
# own socket, data root and bridge; the base image is copied from the engine above. Idempotent.
if ! (cd "$ROOT" && PANBINDER_STATE=$STATE "$VENV/bin/panbinder" build-engine start) >>"$STATE/logs/build-engine.log" 2>&1; then
  say "the build engine did not start; its log follows"
  tail -n 30 "$STATE/logs/build-engine.log"
  exit 1
fi

say "ready (state in $STATE)"
