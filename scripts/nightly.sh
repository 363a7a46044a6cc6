#!/usr/bin/env bash
# Nightly regeneration of every course table on the cluster (see src/inferlab/nightly.py):
# `all` on the Slurm profile with --keep-going, then nights/<date>/ keeps that night's Parquet and a
# report of what ran, what failed (typed), what was unchanged, and every metric's change against the
# previous night and against the course's published numbers, with the tolerances used.
#
# scrontab -e   (Slurm's cron; runs on a node of the partition named, here a CPU one):
#   #SCRON --partition=cpu --time=12:00:00 --job-name=inferlab-nightly
#   0 1 * * * cd /shared/inferlab && scripts/nightly.sh >> logs/nightly.log 2>&1
# or crontab on a login node:
#   0 1 * * * cd /shared/inferlab && scripts/nightly.sh >> logs/nightly.log 2>&1
#
# Arguments are passed on: scripts/nightly.sh --profile profiles/local --configfile config/config.yaml
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=src exec .venv/bin/python -m inferlab.nightly run "$@"
