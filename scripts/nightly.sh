#!/usr/bin/env bash
# Nightly regeneration of every course table on the cluster (see src/inferlab/nightly.py):
# `all` on the Slurm profile with --keep-going, re-measuring the engine configurations that the
# re-measure policy of config/nightly.yaml picks (`remeasure`, default every configuration, passed
# as --forcerun <rule names>); then nights/<date>/ keeps that night's Parquet, its raw records
# (records/: cell.json, raw.json, _engine/configuration.json; read-only) and a report of what was
# measured tonight and what was carried over (with its age), what failed (typed), and every metric's
# change against the previous night (CHANGE only beyond the tolerance AND outside the noise: the two
# nights' 95% CIs apart) and against the course's published numbers, with the tolerances used.
#
# scrontab -e   (Slurm's cron; runs on a node of the partition named, here a CPU one):
#   #SCRON --partition=cpu --time=12:00:00 --job-name=inferlab-nightly
#   0 1 * * * cd /shared/inferlab && scripts/nightly.sh >> logs/nightly.log 2>&1
# or crontab on a login node:
#   0 1 * * * cd /shared/inferlab && scripts/nightly.sh >> logs/nightly.log 2>&1
#
# Arguments are passed on: scripts/nightly.sh --profile profiles/local --configfile config/config.yaml
# (--settings F: another re-measure policy and tolerances; -- ARGS: further snakemake arguments)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=src exec .venv/bin/python -m inferlab.nightly run "$@"
