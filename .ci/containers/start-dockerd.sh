#!/usr/bin/env bash
# Start a private Docker engine for the container tests; prints its pid.
# Usage: start-dockerd.sh [STATE_DIR]   (socket: $STATE_DIR/docker.sock)
# Stop it with stop-daemon.sh STATE_DIR/dockerd.pid (by pid, never by name).
set -euo pipefail
state="${1:-/run/oremda-docker}"
mkdir -p "${state}"
sock="unix://${state}/docker.sock"
/usr/sbin/dockerd \
  --data-root "${OREMDA_DOCKER_DATA:-/var/lib/oremda-docker}" \
  --exec-root "${state}/exec" \
  --pidfile "${state}/dockerd.pid" \
  -H "${sock}" \
  --storage-driver=overlay2 \
  >"${state}/dockerd.log" 2>&1 &
echo $! >"${state}/dockerd.launcher.pid"
for _ in $(seq 1 100); do
  if DOCKER_HOST="${sock}" docker version >/dev/null 2>&1; then
    echo "dockerd up at ${sock} (pid $(cat "${state}/dockerd.pid"))" >&2
    exit 0
  fi
  sleep 0.2
done
echo "dockerd did not start; log:" >&2
tail -30 "${state}/dockerd.log" >&2
exit 1
