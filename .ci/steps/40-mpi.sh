#!/usr/bin/env bash
# MPI tier: a real MPI (MPICH from PyPI runs as root as is), mpi4py, the abTEM simulator
# for the 4D-STEM test data and LiberTEM as the peer; then the MPI and 4D-STEM tests
# (1, 2, 3 and 4 ranks on one machine, plus ranks that act as if on another node), and the
# MPI column of the fault matrix, and partial results of a node run in blocks on the ranks.
set -euo pipefail
python -m pip install -q mpi4py mpich abtem libertem
command -v mpiexec >/dev/null || { echo "mpiexec not on PATH after pip install mpich" >&2; exit 1; }
python -m pytest -m mpi tests/runtime/test_mpi.py tests/runtime/test_fault_matrix.py tests/operators/test_4dstem.py \
  tests/engine/test_partial_displays.py -q -p no:cacheprovider
