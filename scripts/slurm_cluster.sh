#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine: Debian's slurm-wlm and munge (installed if
# missing), slurmctld and slurmd as root, one partition holding this node's cores. It has no
# accounting database: headcoop notices jobs that leave the queue without a result itself.
# Exits 0 once `sinfo` shows the node idle (or already did), 3 with a line saying why where it
# cannot (not root, no apt-get, the daemons do not come up): callers treat 3 as a skip.
set -uo pipefail

skip() { echo "slurm: cannot start a cluster here: $*"; exit 3; }

[ "$(id -u)" = 0 ] || skip "needs root"
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || skip "slurm-wlm and munge are missing and there is no apt-get"
  echo "slurm: installing Debian's slurm-wlm and munge"
  { apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1; }; } ||
    skip "apt-get could not install slurm-wlm and munge"
fi
if sinfo -h -o %t 2>/dev/null | grep -q idle; then
  echo "slurm: a cluster is already up"
  exit 0
fi

host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
[ -s /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || skip "no munge key"
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 0700 /etc/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged || skip "munged does not start"

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=headcoop
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmctld >/dev/null || slurmctld || skip "slurmctld does not start ($(tail -n 3 /var/log/slurm/slurmctld.log 2>/dev/null))"
pgrep -x slurmd >/dev/null || slurmd || skip "slurmd does not start ($(tail -n 3 /var/log/slurm/slurmd.log 2>/dev/null))"
for _ in $(seq 60); do
  if sinfo -h -o %t 2>/dev/null | grep -q idle; then
    echo "slurm: one node ($host, $cpus cores) up"
    exit 0
  fi
  scontrol update nodename="$host" state=resume >/dev/null 2>&1
  sleep 1
done
skip "the node did not become idle: $(sinfo -h 2>&1 | head -n 1)"
