#!/usr/bin/env bash
# Lint, layer contract, the core + operator test suite (local and inline runtimes), doctests.
set -euo pipefail
export OREMDA_REQUIRE_DATA=1  # real-data tests fail instead of skipping when the data is missing
ruff check .
lint-imports
python -m pytest -q -p no:cacheprovider
python -m pytest -q -p no:cacheprovider --doctest-modules oremda_lab   # docstring examples run
