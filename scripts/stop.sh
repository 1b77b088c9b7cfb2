#!/usr/bin/env bash
# Stop the background services that scripts/setup.sh started, by pid file.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${PANBINDER_STATE:-$ROOT/.state}
# the build engine first (it pushes to the registry), with its bridge and iptables rules
if [ -x "$STATE/venv/bin/panbinder" ]; then
  (cd "$ROOT" && PANBINDER_STATE=$STATE "$STATE/venv/bin/panbinder" build-engine stop)
elif [ -f "$STATE/build-engine/dockerd.pid" ]; then
  kill "$(cat "$STATE/build-engine/dockerd.pid")" 2>/dev/null && echo "stopped the build engine"
fi
for name in registry dockerd; do
  f=$STATE/run/$name.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    echo "stopped $name ($pid)"
  fi
  rm -f "$f"
done
