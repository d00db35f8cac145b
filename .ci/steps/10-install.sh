#!/usr/bin/env bash
# Install the package with every extra the test tiers use.
set -euo pipefail
python -m pip install -q -e ".[test,docker,mpi,lab]"
