#!/usr/bin/env bash
# Stop a daemon by the pid in PIDFILE: TERM, wait up to 20 s, then KILL.
set -uo pipefail
pidfile="$1"
[ -f "${pidfile}" ] || exit 0
pid="$(cat "${pidfile}")"
if kill -0 "${pid}" 2>/dev/null; then
  kill -TERM "${pid}"
  for _ in $(seq 1 100); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "${pid}" 2>/dev/null && kill -KILL "${pid}"
fi
rm -f "${pidfile}"
