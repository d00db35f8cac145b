#!/usr/bin/env bash
# Widget: build the front end and run its unit tests, then the browser tier: every
# browser test runs in a real JupyterLab 4 and in a real Notebook 7 (one server each per
# session, started and stopped by pid inside tests/browser/lab.py) driven by Debian's
# Chromium through Playwright (never `playwright install`: no browser downloads here).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
npm ci --no-audit --no-fund
npm run build
npm test
python -m pip install -q playwright notebook  # notebook: the Notebook 7 half of the browser tier
python -m pytest -m browser tests/browser -q -p no:cacheprovider
