#!/usr/bin/env bash
# The main job on a fresh machine: install oremda-lab into a virtual environment
# (.venv in the repository: Debian's and Ubuntu's python3 refuse `pip install` outside
# one, PEP 668), fetch the real example data (once), and run the atomic-lattice
# analysis of a real MoS2 STEM image on the embedded local runtime. Display PNGs and
# the run record land in out/lattice/. PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv || {
    echo "main.sh: cannot create a virtual environment; on Debian/Ubuntu: sudo apt install python3-venv" >&2
    exit 1
  }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
data=$(.venv/bin/oremda-lab examples)
.venv/bin/oremda-lab run pipelines/lattice_analysis.json --data "$data" --out out/lattice --record out/lattice/record.json
