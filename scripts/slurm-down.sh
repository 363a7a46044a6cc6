#!/usr/bin/env bash
# Stop the test Slurm that scripts/slurm-up.sh started: cancel its jobs, then TERM exactly the
# daemons it recorded (slurmd, slurmctld, munged), newest first, and wait for each to exit.
# Idempotent; never touches processes it did not start.
set -euo pipefail
STATE=${INFERLAB_SLURM_STATE:-/var/lib/inferlab-slurm}
STARTED=${INFERLAB_SLURM_STARTED:-$STATE/started}  # the daemons this bring-up started (slurm-down stops those)
[ -s "$STARTED" ] || { echo "[slurm-down] nothing recorded as started"; exit 0; }
if command -v scancel >/dev/null && grep -q "slurmctld" "$STARTED"; then
  scancel --cluster=inferlab --full --quiet --user="$(id -un)" 2>/dev/null || scancel -u "$(id -un)" 2>/dev/null || true
fi
tac "$STARTED" | while read -r name pid; do
  [ -n "${pid:-}" ] || continue
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  # Debian installs the daemons as /usr/sbin/slurmctld-wlm and slurmd-wlm: match the name with or
  # without that suffix (and still only the pid this bring-up recorded)
  case "$exe" in
    *"/$name"|*"/$name-wlm") kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
      echo "[slurm-down] stopped $name ($pid)"
      if [ "$name" = slurmd ]; then touch "$STARTED.slurmd-stopped"; fi ;;
    *) echo "[slurm-down] $name ($pid) no longer running" ;;
  esac
done
# the cgroups slurmd made for proctrack/cgroup (scripts/slurm-up.sh): empty once its jobs are gone;
# rmdir removes only empty ones, so a cgroup that still holds a process stays (and says so)
# (only when this script stopped slurmd: a slurmd still running keeps its own)
for top in /sys/fs/cgroup/*/"slurm_$(hostname -s)" /sys/fs/cgroup/"slurm_$(hostname -s)"; do
  [ -f "$STARTED.slurmd-stopped" ] && [ -d "$top" ] || continue
  find "$top" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  if [ -d "$top" ]; then echo "[slurm-down] $top not empty: $(cat "$top"/cgroup.procs | wc -l) processes" >&2; fi
done
rm -f "$STARTED.slurmd-stopped"
: > "$STARTED"
