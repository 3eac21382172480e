#!/usr/bin/env bash
# Make sure a single-node Slurm cluster answers on this machine (127.0.0.1), as the Slurm
# backend's contract tests expect. Idempotent: installs Debian's `slurm-wlm` and `munge` if they
# are missing, writes a munge key and a minimal /etc/slurm/slurm.conf if missing (or rewrites the
# config when it is ours and the machine changed), starts munged, slurmctld and slurmd as
# background daemons (no systemd here), and waits until the node is idle. Needs root.
#
# The cluster is for tests and CI, not production: SlurmUser=root, no accounting, no cgroups
# (proctrack/linuxproc, task/none), so the backend's wrapper does its own timeout and tree kill.
set -euo pipefail

t0=$(date +%s)
say() { echo >&2 "ensure-slurm: $*"; }
conf=/etc/slurm/slurm.conf
marker="# written by computility scripts/ensure-slurm.sh"
node=$(hostname -s)

node_state() { sinfo -h -n "$node" -o %t 2>/dev/null | head -n 1 || true; }
running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [[ $(id -u) != 0 ]]; then
  if [[ $(node_state) == idle || $(node_state) == mix ]]; then
    say "node $node is up"; exit 0
  fi
  say "not root: cannot install or start Slurm"; exit 1
fi

# --- packages -------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  say "installing Debian's slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# --- munge ----------------------------------------------------------------------------------
id munge >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin munge
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  say "writing a munge key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  rm -f /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 50); do
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

# --- slurm.conf -----------------------------------------------------------------------------
# `slurmd -C` reports this machine as Slurm sees it (CPUs, sockets, cores, RealMemory).
hw=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]* //')
cpus=$(sed -n 's/.*\bCPUs=\([0-9]*\).*/\1/p' <<<"$hw")
mem=$(sed -n 's/.*\bRealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
def_mem=$(( mem / cpus < 1024 ? mem / cpus : 1024 ))
wanted="$marker
ClusterName=computility
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
ReturnToService=2
KillWait=1
MinJobAge=30
InactiveLimit=0
Waittime=0
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP"
changed=no
if [[ ! -f $conf ]] || { head -n 1 "$conf" | grep -qxF "$marker" && [[ $(cat "$conf") != "$wanted" ]]; }; then
  say "writing $conf (node $node: $hw)"
  install -d /etc/slurm
  printf '%s\n' "$wanted" >"$conf.tmp"
  mv -f "$conf.tmp" "$conf"
  changed=yes
elif ! head -n 1 "$conf" | grep -qxF "$marker"; then
  say "keeping $conf (not written by this script)"
fi
install -d /var/spool/slurmd /var/spool/slurmctld /var/log/slurm

# --- daemons --------------------------------------------------------------------------------
if [[ $changed == yes ]]; then
  for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    if running "$pidfile"; then
      say "stopping $(basename "$pidfile" .pid) for the new config"
      kill "$(cat "$pidfile")"
      for _ in $(seq 1 50); do running "$pidfile" || break; sleep 0.1; done
    fi
  done
fi
if ! running /run/slurmctld.pid; then
  say "starting slurmctld"
  slurmctld
fi
for _ in $(seq 1 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
if ! running /run/slurmd.pid; then
  say "starting slurmd"
  slurmd
fi

# --- wait for the node ----------------------------------------------------------------------
state=""
for _ in $(seq 1 120); do
  state=$(node_state)
  case $state in
    idle|mix|alloc) break ;;
    down*|drain*|drng*|fail*)
      say "node $node is $state: resuming it"
      scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
if [[ $state != idle && $state != mix && $state != alloc ]]; then
  say "node $node did not come up (state: ${state:-none}); see /var/log/slurm/*.log"
  exit 1
fi
say "node $node is $state ($(sinfo -h -o '%P %c CPUs %m MB' | head -n 1)); took $(( $(date +%s) - t0 )) s"
