#!/usr/bin/env bash
# Before the benchmarks: show what still uses the CPU after the tests, and stop the services only
# the tests need (the Ray head, Slurm's queue), so the timed figures measure Computility, not
# leftovers competing for the machine's cores.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

busy() {
  echo "quiesce: load average $(cut -d' ' -f1-3 /proc/loadavg); busiest processes over 3 s:"
  top -bn2 -d3 -w 200 | awk '/^top -/{n++} n==2' | sed -n '7,17p'
}

busy
echo "quiesce: processes started by the tests that are still alive:"
ps -eo pid,ppid,etimes,pcpu,rss,args --sort=-pcpu \
  | grep -E 'computility|pytest|uvicorn|chromium|sbatch|slurmstepd|sleep|python' \
  | grep -v -E 'grep|ci-quiesce' | cut -c1-220 | head -30 || true
if command -v squeue >/dev/null 2>&1; then
  echo "quiesce: Slurm queue: $(squeue -h 2>/dev/null | wc -l) job(s); cancelling them"
  scancel --user "$(id -un)" 2>/dev/null || true
fi
if [[ -x .venv-ray/bin/ray ]]; then
  echo "quiesce: stopping the Ray head (the benchmarks do not use it)"
  .venv-ray/bin/ray stop --force >/dev/null 2>&1 || true
fi
sleep 2
busy
