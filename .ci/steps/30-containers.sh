#!/usr/bin/env bash
# Containers: install Docker, Podman, debootstrap and docker-registry; start both engines by pid; build
# every operator image (base root filesystem and dependency layers from
# ~/.cache/oremda-lab/images when saved by an earlier run, else built and saved); run the
# container suite; stop the engines by pid whatever happens. Budget: 20 min on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
state="$(mktemp -d /run/oremda-ci.XXXXXX)"
# The engines' images live on disk (not under /run, a tmpfs), fresh for every run: images the
# tests build must not pile up across runs (thousands made Podman's image listing time out).
export OREMDA_DOCKER_DATA="$(mktemp -d /var/tmp/oremda-ci-docker.XXXXXX)"
podman_data="$(mktemp -d /var/tmp/oremda-ci-podman.XXXXXX)"
# One store for Podman's service and its command line (the MPI runtime's `podman run`).
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' \
  "${podman_data}" "${podman_data}" >"${podman_data}/storage.conf"
export CONTAINERS_STORAGE_CONF="${podman_data}/storage.conf"

stop_all() {
  # Containers of this run are removed by the tests; the engines are stopped by pid only.
  bash "${here}/containers/stop-daemon.sh" "${state}/podman/podman.pid" || true
  bash "${here}/containers/stop-daemon.sh" "${state}/docker/dockerd.pid" || true
  # After an exec, Podman's conmon waits 5 min (its exit delay), then cleans up in the store
  # and so would make it again: stop this store's conmons (by pid) before removing it.
  pgrep -f "conmon .*${podman_data}/" | xargs -r kill -KILL || true
  # Podman leaves its store's overlay mounted after the service stops.
  findmnt -rn -o TARGET | grep "^${podman_data}/" | sort -r | xargs -r -n1 umount -l || true
  rm -rf "${state}" "${OREMDA_DOCKER_DATA}" "${podman_data}"
}
trap stop_all EXIT

export DEBIAN_FRONTEND=noninteractive
# docker-registry: the real OCI registry the push/pull tests start (by pid) on localhost.
if ! command -v dockerd >/dev/null || ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null \
   || ! command -v docker-registry >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq docker.io podman debootstrap docker-registry >/dev/null
fi
python -m pip install -q "docker>=7"

bash "${here}/containers/start-dockerd.sh" "${state}/docker"
# TMPDIR: where Podman stages image uploads (it leaves some behind).
mkdir -p "${podman_data}/tmp"
TMPDIR="${podman_data}/tmp" bash "${here}/containers/start-podman.sh" "${state}/podman"
export DOCKER_HOST="unix://${state}/docker/docker.sock"
export OREMDA_PODMAN_HOST="unix://${state}/podman/podman.sock"
export OREMDA_REQUIRE_ENGINES=1  # a missing engine fails the step instead of skipping tests

start=$(date +%s)
python -m oremda_lab.images.build                   # Docker: base, one deps layer per lock, every operator
echo "docker images built in $(( $(date +%s) - start )) s"
docker system df | sed -n 2p                        # their size on disk (layers counted once)
python -m oremda_lab.images.build --engine podman --from-docker  # Podman: the same images (and ids), copied
echo "images built and copied in $(( $(date +%s) - start )) s"

# test_mixed_stacks: py4DSTEM (numpy<2), HyperSpy and LiberTEM images give the local run's outputs.
# test_partial: an operator without an image, and a failed pull, fail only their node.
python -m pytest -m "docker or podman" tests/runtime tests/images tests/operators/test_mixed_stacks.py \
  tests/engine/test_partial.py -q -p no:cacheprovider -rs --timeout 900

for host in "${DOCKER_HOST}" "${OREMDA_PODMAN_HOST}"; do
  left=$(docker -H "${host}" ps -aq --filter label=oremda.session | wc -l)
  if [ "${left}" != "0" ]; then
    echo "containers left behind at ${host}: ${left}" >&2
    exit 1
  fi
done
