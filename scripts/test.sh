#!/usr/bin/env bash
# The test command (README quickstart, and what .ci/run runs): set up, lint, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "[test] ruff"
.venv/bin/ruff check src tests workflow/scripts
.venv/bin/ruff format --check src tests workflow/scripts
echo "[test] snakefmt"
.venv/bin/snakefmt --check Snakefile rules/
echo "[test] pytest"
exec .venv/bin/python -m pytest -ra "$@"
