#!/usr/bin/env bash
# Run pytest inside a private network namespace (only loopback up) where the kernel allows it,
# so nothing a test starts (DDS, tile server, gpsd) can reach another host.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
cmd=(bash scripts/ros_env.sh "$PY" -m pytest "$@")
if command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
    echo "run_pytest: running inside 'unshare -n' (loopback only)"
    exec unshare -n bash -c 'ip link set lo up 2>/dev/null || true; exec "$@"' _ "${cmd[@]}"
fi
echo "run_pytest: WARNING: cannot create a network namespace here; running with" \
     "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST only" >&2
exec "${cmd[@]}"
