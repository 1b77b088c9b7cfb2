#!/usr/bin/env bash
# Stop the background services that scripts/setup.sh started, by pid file.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${PANBINDER_STATE:-$ROOT/.state}
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
