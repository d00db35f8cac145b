#!/usr/bin/env bash
# Serve Podman's Docker-compatible API for the container tests.
# Usage: start-podman.sh [STATE_DIR]   (socket: $STATE_DIR/podman.sock, pid in podman.pid)
set -euo pipefail
state="${1:-/run/oremda-podman}"
mkdir -p "${state}"
sock="unix://${state}/podman.sock"
podman system service --time=0 "${sock}" >"${state}/podman.log" 2>&1 &
echo $! >"${state}/podman.pid"
for _ in $(seq 1 100); do
  if [ -S "${state}/podman.sock" ] && curl -sf --unix-socket "${state}/podman.sock" http://d/_ping >/dev/null 2>&1; then
    echo "podman service up at ${sock} (pid $(cat "${state}/podman.pid"))" >&2
    exit 0
  fi
  sleep 0.2
done
echo "podman service did not start; log:" >&2
tail -30 "${state}/podman.log" >&2
exit 1
