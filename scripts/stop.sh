#!/usr/bin/env bash
# Stop a running `panbinder serve` (and whatever it left), then the background services that
# scripts/setup.sh started, by pid file. A pid is only signalled when its command line names the
# expected program: pids are reused.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${PANBINDER_STATE:-$ROOT/.state}

runs() {  # pid, text: does the process's command line contain text?
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}
stop_pid() {  # name, pid file, text its command line contains, seconds before SIGKILL
  local name=$1 f=$2 text=$3 wait=$4 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && runs "$pid" "$text"; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 $((wait * 5))); do runs "$pid" "$text" || break; sleep 0.2; done
    if runs "$pid" "$text"; then kill -9 "$pid" 2>/dev/null; echo "killed $name ($pid)"; else echo "stopped $name ($pid)"; fi
  fi
  rm -f "$f"
}
# the portal stops its Hub (servers, culler, proxy) and builds itself, within about a minute
stop_pid "panbinder serve" "$STATE/run/portal.pid" "panbinder" 75
stop_pid JupyterHub "$STATE/run/jupyterhub.pid" "panbinder.launcher.hub_app" 45
stop_pid configurable-http-proxy "$STATE/run/proxy.pid" "configurable-http-proxy" 5
stop_pid idle-culler "$STATE/run/culler.pid" "jupyterhub_idle_culler" 5
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
