#!/usr/bin/env bash
# Bring up a single-node Slurm for tests (as root; Debian 12's slurm-wlm 22.05 + munge):
# munged, slurmctld, slurmd; one partition per course GPU (h200, h100, a100, l40s) plus `cpu`;
# 2 typed fake GPUs per kind (gres gpu:<kind>, character devices with /dev/null's numbers).
# Idempotent: what already runs is left alone. Records the PIDs it started in $STATE/started so
# scripts/slurm-down.sh stops exactly those. No accounting (slurmdbd): status is polled with squeue,
# so MinJobAge keeps finished jobs visible.
# Process tracking as on a real cluster: proctrack/cgroup (a job's processes stay in its cgroup, so
# the end of a step kills every one of them, reparented or not) where this kernel offers it (cgroup
# v1 with the freezer controller mounted, or a cgroup v2 hierarchy); proctrack/linuxproc only where
# it does not (it follows parent links: a process whose parent exits escapes the step's kill).
# INFERLAB_SLURM_PROCTRACK=cgroup|linuxproc forces one. Changing it needs slurm-down.sh first.
set -euo pipefail
STATE=${INFERLAB_SLURM_STATE:-/var/lib/inferlab-slurm}
STARTED=${INFERLAB_SLURM_STARTED:-$STATE/started}  # the daemons this bring-up started (slurm-down stops those)
CPUS=${INFERLAB_SLURM_CPUS:-4}        # advertised cores (config_overrides lets 2 real cores host 2 jobs)
MEM=${INFERLAB_SLURM_MEM_MB:-16000}   # advertised memory (MB)
[ "$(id -u)" = 0 ] || { echo "slurm-up: needs root" >&2; exit 2; }

# which cgroup hierarchy Slurm 22.05's proctrack/cgroup can use here: v2 (/sys/fs/cgroup is cgroup2),
# v1 (a freezer controller mounted at /sys/fs/cgroup/freezer), else none
cgroup_version() {
  if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then echo v2
  elif [ "$(stat -fc %T /sys/fs/cgroup/freezer 2>/dev/null)" = cgroupfs ]; then echo v1
  else echo none; fi
}
CGV=$(cgroup_version)
PROCTRACK=${INFERLAB_SLURM_PROCTRACK:-$([ "$CGV" = none ] && echo linuxproc || echo cgroup)}
if [ "$PROCTRACK" = cgroup ] && [ "$CGV" = none ]; then
  echo "slurm-up: proctrack/cgroup asked for, but no cgroup v2 or v1 freezer hierarchy here" >&2; exit 4
fi
[ "$PROCTRACK" = linuxproc ] && echo "[slurm-up] proctrack/linuxproc: a job's process whose parent exits escapes the step's kill" >&2

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  echo "[slurm-up] installing munge + slurm (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq munge slurm-client slurmctld slurmd >/dev/null
fi

HOST=$(hostname -s)
mkdir -p "$STATE/dev" /run/munge /run/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /etc/slurm
touch "$STARTED"
chown munge:munge /run/munge /etc/munge 2>/dev/null || true
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi

gres_lines=""
i=0
for kind in h200 h100 a100 l40s; do
  for _ in 1 2; do
    [ -e "$STATE/dev/gpu$i" ] || mknod -m 666 "$STATE/dev/gpu$i" c 1 3
    i=$((i + 1))
  done
  gres_lines+="NodeName=$HOST Name=gpu Type=$kind File=$STATE/dev/gpu[$((i - 2))-$((i - 1))]"$'\n'
done

conf=$(cat <<CONF
# managed by inferlab scripts/slurm-up.sh (test cluster)
ClusterName=inferlab
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/$PROCTRACK
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
CommunicationParameters=NoInAddrAny
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=10
MpiDefault=none
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM Gres=gpu:h200:2,gpu:h100:2,gpu:a100:2,gpu:l40s:2 Features=h200,h100,a100,l40s State=UNKNOWN
PartitionName=h200 Nodes=$HOST MaxTime=INFINITE State=UP
PartitionName=h100 Nodes=$HOST MaxTime=INFINITE State=UP
PartitionName=a100 Nodes=$HOST MaxTime=INFINITE State=UP
PartitionName=l40s Nodes=$HOST MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=$HOST MaxTime=INFINITE State=UP Default=YES
CONF
)
if [ -f /etc/slurm/slurm.conf ] && ! grep -q "managed by inferlab" /etc/slurm/slurm.conf; then
  echo "slurm-up: /etc/slurm/slurm.conf exists and is not ours; refusing to touch it" >&2; exit 3
fi
printf '%s\n' "$conf" > /etc/slurm/slurm.conf
printf 'AutoDetect=off\n%s' "$gres_lines" > /etc/slurm/gres.conf
# cgroup.conf: only process tracking (the job's cgroup holds its processes); nothing constrained
# (cores, memory and the fake GPU devices stay as task/none leaves them)
printf '%s\n' "# managed by inferlab scripts/slurm-up.sh (test cluster)" \
  "CgroupPlugin=$([ "$CGV" = v2 ] && echo cgroup/v2 || echo cgroup/v1)" "CgroupMountpoint=/sys/fs/cgroup" \
  ConstrainCores=no ConstrainRAMSpace=no ConstrainSwapSpace=no ConstrainDevices=no > /etc/slurm/cgroup.conf

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if alive /run/slurm/slurmd.pid; then  # already up: say so if it tracks processes otherwise than asked
  running=$(scontrol show config 2>/dev/null | awk '$1 == "ProctrackType" {print $3}')
  [ -z "$running" ] || [ "$running" = "proctrack/$PROCTRACK" ] \
    || echo "[slurm-up] running with $running, not proctrack/$PROCTRACK: scripts/slurm-down.sh, then slurm-up.sh" >&2
fi
started() { echo "$1 $(cat "$2")" >> "$STARTED"; }

if ! alive /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid 2>/dev/null \
    || runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do alive /run/munge/munged.pid && break; sleep 0.1; done
  started munged /run/munge/munged.pid
fi
if ! alive /run/slurm/slurmctld.pid; then
  slurmctld
  for _ in $(seq 50); do alive /run/slurm/slurmctld.pid && break; sleep 0.1; done
  started slurmctld /run/slurm/slurmctld.pid
fi
if ! alive /run/slurm/slurmd.pid; then
  slurmd
  for _ in $(seq 50); do alive /run/slurm/slurmd.pid && break; sleep 0.1; done
  started slurmd /run/slurm/slurmd.pid
fi

for _ in $(seq 60); do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1 || true)
  case "$state" in
    idle*|mixed*|allocated*) echo "[slurm-up] node $HOST $state; partitions: $(sinfo -h -o %P | tr '\n' ' ')"; exit 0 ;;
    down*|drain*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
  esac
  sleep 0.5
done
echo "slurm-up: node $HOST not ready (state: ${state:-none}); see /var/log/slurm/" >&2
exit 1
