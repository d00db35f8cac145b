#!/usr/bin/env bash
# Lint, layer contract, and the core + operator test suite (local and inline runtimes).
set -euo pipefail
ruff check .
lint-imports
python -m pytest -q -p no:cacheprovider
