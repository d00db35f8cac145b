#!/usr/bin/env bash
# Install the package with every extra the test tiers use, into the repository's virtual
# environment .venv (a system python3 refuses `pip install` outside one, PEP 668).
# .ci/run puts .venv/bin first on PATH, so every step's python, pytest, ruff use it.
# PYTHON picks the interpreter the venv is made from (default python3).
set -euo pipefail
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "${python}" -c "import ensurepip, venv" 2>/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  "${python}" -m venv .venv
fi
.venv/bin/python -m pip install -q -e ".[test,docker,mpi,lab]"
# An editable install skips setup.py's data_files: enable the Jupyter server extension
# (oremda_lab.widget.server: the kernel websocket without Nagle delays) as a wheel install would.
install -D -m 644 jupyter-config/jupyter_server_config.d/oremda_lab.json .venv/etc/jupyter/jupyter_server_config.d/oremda_lab.json
# abTEM simulates the 4D-STEM test scan (tests/operators/test_4dstem.py, cached) that the core
# tier's operator tests share with the MPI tier; without it they would cache a synthetic stand-in.
.venv/bin/python -m pip install -q abtem
