#!/usr/bin/env bash
# The main job on a fresh machine: install oremda-lab, fetch the real example data
# (once), and run the atomic-lattice analysis of a real MoS2 STEM image on the
# embedded local runtime. Display PNGs and the run record land in out/lattice/.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e .
data=$(oremda-lab examples)
oremda-lab run pipelines/lattice_analysis.json --data "$data" --out out/lattice --record out/lattice/record.json
