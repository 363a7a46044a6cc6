#!/usr/bin/env bash
# The test command (README quickstart, and what .ci/run runs): set up, lint, run every test.
# As root it also brings up the single-node test Slurm (scripts/slurm-up.sh) for tests/test_slurm.py
# and stops what it started afterwards; elsewhere those tests are skipped (say INFERLAB_SLURM=0 to
# skip them as root too).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "[test] ruff"
.venv/bin/ruff check src tests workflow/scripts benchmarks
.venv/bin/ruff format --check src tests workflow/scripts benchmarks
echo "[test] snakefmt"
.venv/bin/snakefmt --check Snakefile rules/
echo "[test] snakemake --lint"
.venv/bin/snakemake --lint
if [ "$(id -u)" = 0 ] && [ "${INFERLAB_SLURM:-1}" = 1 ]; then
  echo "[test] test Slurm up"
  # record what this run starts in its own file, so the teardown stops only that (a Slurm that was
  # already up, e.g. a developer's, is left running)
  export INFERLAB_SLURM_STARTED
  INFERLAB_SLURM_STARTED=$(mktemp)
  scripts/slurm-up.sh
  trap 'scripts/slurm-down.sh; rm -f "$INFERLAB_SLURM_STARTED"' EXIT
  export INFERLAB_REQUIRE_SLURM=1
fi
echo "[test] pytest"
.venv/bin/python -m pytest -ra --durations=25 "$@"
