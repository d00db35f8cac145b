#!/usr/bin/env bash
# HPC tier: a real one-node Slurm cluster (Debian's slurm-wlm + munge, started and stopped by
# pid inside tests/hpc/slurm.py) running pipelines with the MPI runtime's srun launcher in
# salloc and sbatch allocations, and JupyterHub (batchspawner, configurable-http-proxy)
# spawning the user's server as a Slurm job, driven by Debian's Chromium through Playwright.
# Runs after the browser step, whose front-end build the editor serves (built here if absent).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
missing=()
command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ] || missing+=(slurm-wlm)
command -v munged >/dev/null || [ -x /usr/sbin/munged ] || missing+=(munge)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v configurable-http-proxy >/dev/null || npm install -g --no-audit --no-fund configurable-http-proxy
python -m pip install -q mpi4py mpich jupyterhub batchspawner playwright
[ -f oremda_lab/widget/static/editor.js ] || { npm ci --no-audit --no-fund && npm run build; }
OREMDA_REQUIRE_ENGINES=1 python -m pytest -m "mpi" tests/hpc -q -p no:cacheprovider
