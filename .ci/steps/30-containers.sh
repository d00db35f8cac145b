#!/usr/bin/env bash
# Containers: install Docker, Podman, debootstrap and docker-registry; start both engines by pid; build
# every operator image (base root filesystem and dependency layers from
# ~/.cache/oremda-lab/images when saved by an earlier run, else built and saved); run the
# container suite; stop the engines by pid whatever happens. Budget: 20 min on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
state="$(mktemp -d /run/oremda-ci.XXXXXX)"
# The engine's images live on disk (not under /run, a tmpfs), fresh for every run.
export OREMDA_DOCKER_DATA="$(mktemp -d /var/tmp/oremda-ci-docker.XXXXXX)"

stop_all() {
  # Containers of this run are removed by the tests; the engines are stopped by pid only.
  bash "${here}/containers/stop-daemon.sh" "${state}/podman/podman.pid" || true
  bash "${here}/containers/stop-daemon.sh" "${state}/docker/dockerd.pid" || true
  rm -rf "${state}" "${OREMDA_DOCKER_DATA}"
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
bash "${here}/containers/start-podman.sh" "${state}/podman"
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

left=$(docker ps -aq --filter label=oremda.session | wc -l)
if [ "${left}" != "0" ]; then
  echo "containers left behind: ${left}" >&2
  exit 1
fi
