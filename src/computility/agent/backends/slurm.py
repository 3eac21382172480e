"""Tasks as Slurm batch jobs, driven through Slurm's own commands (sbatch, squeue, scancel).

Each attempt is one batch job whose script is a small POSIX-sh wrapper written into the run
directory (`WRAPPER_FILE`). The wrapper, not Slurm, is the source of truth for how the task ended:
Slurm's ``--time`` counts whole minutes, its job environment holds the user's login environment
and ``SLURM_*`` variables, and its exit codes are lost once the controller purges the job. So the
wrapper runs ``task.sh`` under ``env -i`` with exactly the task's variables (`ENV_FILE`, removed
once read), stops it at its timeout, kills the whole process tree on timeout or cancel (freeze,
then kill, by walking /proc: that works under proctrack/linuxproc too) and writes ``status.json``.
`poll` prefers that file and asks Slurm only while the job is in flight or when the wrapper never
got to write it. The handle is the job id, so a fresh backend object adopts running jobs.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from computility.agent.backends.base import (
    SCRIPT_FILE,
    STATUS_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    Backend,
    BackendError,
    Capabilities,
    ExitRecord,
    Status,
    TaskRun,
    Usage,
)

WRAPPER_FILE = "slurm-job.sh"
ENV_FILE = ".slurm-env"
STARTED_FILE = ".slurm-started"  # touched by the wrapper: the job script did run
NO_LIMIT = "100000000"  # seconds the watchdog sleeps for a task without a timeout
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"})
RUNNING = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED",
                     "RESIZING", "SIGNALING", "STAGE_OUT"})
START_FAILURES = frozenset({"NODE_FAIL", "BOOT_FAIL", "LAUNCH_FAILED", "REVOKED"})

_WRAPPER = r"""#!/bin/sh
# One Computility task attempt as a Slurm batch job (computility.agent.backends.slurm): runs
# task.sh with exactly the task's environment, stops it at its timeout, kills its whole process
# tree on timeout or cancel, and records how it ended in status.json.
# Where python3 exists, become a child subreaper (kept across exec): what the task orphans, even
# in a new session, stays below this script, to be killed with the rest.
if [ -z "$CU_REAPER" ] && command -v python3 >/dev/null 2>&1; then
  CU_REAPER=1 exec python3 -c 'import ctypes, os, sys
try: ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
except Exception: pass
os.execv("/bin/sh", ["/bin/sh", *sys.argv[1:]])' "$0" "$@"
fi
rundir=@RUNDIR@
limit=@LIMIT@
gpus=
@GPUS@
timed_out=false cancelled=
trap 'timed_out=true' USR1
trap 'cancelled=true' TERM
# Descendants of this script (pids), leaving out the subtree of $1 (the watchdog).
tree() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root=$$ -v skip="$1" '
    { pid = $1; s = $0; sub(/^.*\) /, "", s); split(s, f, " "); kids[f[2]] = kids[f[2]] " " pid }
    END { n = split(kids[root], q, " ")
          for (i = 1; i <= n; i++) { if (q[i] == skip) continue; print q[i]
            m = split(kids[q[i]], c, " "); for (j = 1; j <= m; j++) q[++n] = c[j] } }'
}
# Stop the tree until no new process shows up (a stopped parent cannot fork, and its children
# stay its children); $seen collects them all, so none escapes by being orphaned later.
freeze() {
  for _ in 1 2 3 4 5 6 7 8; do
    new=
    for p in $(tree "$me"); do
      case $seen in *" $p "*) ;; *) new="$new $p" seen="$seen$p " ;; esac
    done
    [ -n "$new" ] || return 0
    kill -STOP $new 2>/dev/null
  done
}
# As the local supervisor does: TERM, a second's grace, then KILL for whatever is left.
stop_tree() {
  busy=1 seen=" "
  freeze
  kill -TERM $seen 2>/dev/null
  kill -CONT $seen 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8; do
    [ -n "$(tree "$me")" ] || break
    sleep 0.1
  done
  freeze
  kill -KILL $seen 2>/dev/null
}
# Timeout and cancel (Slurm sends TERM to every process of the job) end in stop_tree; USR2 from
# this script means the task ended by itself: what it left running is killed.
watchdog() {
  me=$(exec /bin/sh -c 'echo $PPID') busy=
  trap 'stop_tree; exit 0' TERM
  trap '[ -n "$busy" ] || { kill "$!"; busy=1 seen=" "; freeze; kill -KILL $seen; exit 0; }' USR2
  sleep "$limit" &
  if wait "$!"; then kill -USR1 $$; fi
  stop_tree
}
# This shell's own notices ("Killed") go to a log, not into the task's stderr (fd 3).
exec 3>&2 2>>"$rundir/.slurm-wrapper.log"
: >"$rundir/@STARTED@"
watchdog 3>&- & wd=$!
started=$(date +%s.%N)
env -i /bin/sh -c '. "$1" || exit 125; rm -f "$1"; eval "$3"; exec /bin/sh "$2"' \
  sh "$rundir/@ENV@" "$rundir/@SCRIPT@" "$gpus" 2>&3 3>&-
rc=$?
ended=$(date +%s.%N)
kill -USR2 "$wd" 2>/dev/null
while kill -0 "$wd" 2>/dev/null; do wait "$wd"; done
code=$rc sig=null
if [ "$rc" -gt 128 ] && [ "$rc" -le 192 ]; then code=null sig=$((rc - 128)); fi
reason=null
if [ "$timed_out" = true ]; then reason="\"timed out after $limit s\""
elif [ -n "$cancelled" ]; then reason='"cancelled"'; fi
times >"$rundir/.slurm-times"
cpu=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
  printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$rundir/.slurm-times")
rm -f "$rundir/.slurm-times"
printf '{"exit_code": %s, "signal": %s, "timed_out": %s, "out_of_memory": false, %s}\n' \
  "$code" "$sig" "$timed_out" "\"started_at\": $started, \"ended_at\": $ended, \
\"cpu_s\": ${cpu:-null}, \"max_rss_bytes\": null, \"reason\": $reason" \
  >"$rundir/.status.json.$$" && mv -f "$rundir/.status.json.$$" "$rundir/@STATUS@"
exit "$rc"
"""

_GPU_LINES = """\
for v in CUDA_VISIBLE_DEVICES ROCR_VISIBLE_DEVICES; do
  eval "[ -z \\"\\${$v+x}\\" ] || gpus=\\"\\$gpus export $v='\\$$v';\\""
done
"""


def wrapper_script(run: TaskRun) -> str:
    """The batch script for `run`; GPU visibility set by Slurm is passed on when GPUs are asked."""
    limit = (f"{run.timeout_s:.3f}".rstrip("0").rstrip(".")
             if math.isfinite(run.timeout_s) and run.timeout_s > 0 else NO_LIMIT)
    values = {"@RUNDIR@": shlex.quote(str(run.rundir)), "@LIMIT@": limit,
              "@GPUS@": _GPU_LINES if run.allocation.accelerators > 0 else "",
              "@STARTED@": STARTED_FILE, "@ENV@": ENV_FILE, "@SCRIPT@": SCRIPT_FILE,
              "@STATUS@": STATUS_FILE}
    text = _WRAPPER
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def env_file(envs: Mapping[str, str]) -> str:
    """The task's variables as sh ``export`` lines (sourced under ``env -i``, so nothing else)."""
    bad = [k for k in envs if not _NAME.fullmatch(k)]
    if bad:
        raise BackendError(f"slurm: environment names must be shell identifiers, got {bad[:3]}")
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in envs.items())


def sbatch_args(run: TaskRun, *, partition: str | None = None, account: str | None = None,
                gpu_type: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The sbatch command line for `run` (the wrapper script path comes last)."""
    alloc = run.allocation
    args = ["sbatch", "--parsable", f"--job-name={run.key}", "--export=NONE", "--no-requeue",
            f"--output={run.rundir / STDOUT_FILE}", f"--error={run.rundir / STDERR_FILE}",
            f"--chdir={run.workdir}", "--nodes=1", "--ntasks=1",
            f"--cpus-per-task={max(1, alloc.cpus)}"]
    if alloc.memory_bytes is not None:
        args.append(f"--mem={max(1, math.ceil(alloc.memory_bytes / 2**20))}M")
    if alloc.accelerators > 0:
        args.append(f"--gres=gpu:{gpu_type}:{alloc.accelerators}" if gpu_type
                    else f"--gres=gpu:{alloc.accelerators}")
    if math.isfinite(run.timeout_s) and run.timeout_s > 0:
        # A backstop one minute past the wrapper's own, exact, limit.
        args.append(f"--time={math.ceil(run.timeout_s / 60) + 1}")
    if partition:
        args.append(f"--partition={partition}")
    if account:
        args.append(f"--account={account}")
    return [*args, *extra, str(run.rundir / WRAPPER_FILE)]


@dataclass(frozen=True)
class JobInfo:
    """What Slurm says of one job, from either squeue's JSON or ``scontrol show job``."""

    state: str
    flags: tuple[str, ...] = ()  # further states, e.g. COMPLETING alongside CANCELLED
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    started_at: float | None = None
    ended_at: float | None = None


def _number(value: Any) -> int | None:
    """A JSON number in either data-parser shape: ``5`` or ``{"set": true, "number": 5}``."""
    if isinstance(value, dict):
        return int(value["number"]) if value.get("set", True) and "number" in value else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _when(value: int | None) -> float | None:
    return float(value) if value else None


def parse_squeue_json(text: str, job_id: str) -> tuple[JobInfo | None, bool]:
    """The job `job_id` from ``squeue --json`` and whether other jobs came too (filter ignored)."""
    jobs = json.loads(text)["jobs"]
    found = [j for j in jobs if str(j.get("job_id")) == job_id]
    foreign = len(found) != len(jobs)
    if not found:
        return None, foreign
    job = found[0]
    raw = job.get("job_state")
    states = [str(s) for s in raw] if isinstance(raw, list) else [str(raw)]
    code: int | None
    sig: int | None
    exit_raw = job.get("exit_code")
    if isinstance(exit_raw, dict):  # data_parser v0.0.40+: return code and signal apart
        code = _number(exit_raw.get("return_code"))
        sig = _number((exit_raw.get("signal") or {}).get("id"))
    elif (status := _number(exit_raw)) is not None:  # v0.0.38/39: a raw wait status
        code, sig = (None, status & 0x7F) if status & 0x7F else (status >> 8 & 0xFF, None)
    else:
        code, sig = None, None
    info = JobInfo(state=states[0], flags=tuple(states[1:]),
                   reason=str(job.get("state_reason") or ""),
                   exit_code=code if not sig else None, signal=sig or None,
                   started_at=_when(_number(job.get("start_time"))),
                   ended_at=_when(_number(job.get("end_time"))))
    return info, foreign


def _text_time(value: str | None) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp() if value else None
    except ValueError:  # "Unknown", "None", "N/A"
        return None


def parse_scontrol_job(text: str) -> JobInfo | None:
    """The job in ``scontrol show job -o`` output (``Key=Value`` pairs), None if there is none."""
    fields = dict(re.findall(r"(?:^|\s)([A-Za-z:/]+)=(\S*)", text))
    if "JobState" not in fields:
        return None
    code, _, sig = fields.get("ExitCode", "").partition(":")
    signal = int(sig) if sig.isascii() and sig.isdigit() and int(sig) else None
    exit_code = int(code) if code.isdigit() and signal is None else None
    return JobInfo(state=fields["JobState"], reason=fields.get("Reason", ""),
                   exit_code=exit_code, signal=signal,
                   started_at=_text_time(fields.get("StartTime")),
                   ended_at=_text_time(fields.get("EndTime")))


def job_status(info: JobInfo, started: bool) -> Status:
    """A base `Status` from Slurm's view, for when the wrapper wrote no ``status.json``.

    `started`: the wrapper did run (its marker exists). A job that ended without it never ran,
    which is the infrastructure's fault: also when it was cancelled while it waited, whoever did it
    (the cluster's operator, or this agent for a user who cancelled: the service then ends the
    task cancelled). Reported as ended, it would fail the task and bill its wait in the queue.
    """
    state, reason = info.state.upper(), info.reason.replace("_", " ")
    if "launch failed" in reason.lower():
        return Status("failed_to_start", reason=f"slurm: {reason}")
    if state in QUEUED:
        return Status("queued", reason=reason or None)
    if state in RUNNING or "COMPLETING" in info.flags:
        return Status("running", started_at=info.started_at)
    if state in START_FAILURES:
        return Status("failed_to_start", reason=f"slurm: job {state}")
    wall = (info.ended_at - info.started_at if started and info.started_at is not None
            and info.ended_at is not None else None)
    common: dict[str, Any] = {"timed_out": state in ("TIMEOUT", "DEADLINE"),
                              "out_of_memory": state == "OUT_OF_MEMORY",
                              "usage": Usage(wall_s=wall)}
    if state == "CANCELLED" and not started:
        return Status("failed_to_start", reason="slurm: job CANCELLED before it started")
    if state == "DEADLINE" and not started:
        return Status("exited", signal=15, reason=f"slurm: {state} before it started", **common)
    if not started and state not in ("TIMEOUT", "OUT_OF_MEMORY"):
        return Status("failed_to_start", reason=f"slurm: job {state} and its script never ran")
    signal = info.signal or (15 if state == "CANCELLED" else None)
    return Status("exited", exit_code=None if signal else info.exit_code, signal=signal,
                  started_at=info.started_at, ended_at=info.ended_at,
                  reason=f"slurm: job {state} without a status file", **common)


def _slurm(args: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command; no ``SLURM_*`` of an enclosing job leaks into what sbatch asks for."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              env=env, check=False)
    except FileNotFoundError:
        raise BackendError(f"slurm: {args[0]} not found (is Slurm installed here?)") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"slurm: {args[0]} did not answer in {timeout:.0f} s") from None


def _invalid_job(proc: subprocess.CompletedProcess[str]) -> bool:
    return "invalid job id" in proc.stderr.lower()


class SlurmBackend(Backend):
    """Runs tasks as batch jobs of the Slurm cluster this machine submits to."""

    name: ClassVar[str] = "slurm"

    def __init__(self, partition: str | None = None, account: str | None = None,
                 gpu_types: Mapping[str, str] | None = None, extra_args: Sequence[str] = (),
                 use_json: bool | None = None, command_timeout_s: float = 30.0) -> None:
        """`gpu_types` maps catalogue accelerator ids to gres types (``A100-80GB: a100``);
        `extra_args` are more sbatch flags (``--qos=...``); `use_json` forces squeue's JSON on or
        off, None probes it on first use."""
        self.partition, self.account = partition, account
        self.gpu_types = dict(gpu_types or {})
        self.extra_args = tuple(extra_args)
        self.command_timeout_s = command_timeout_s
        self._json = use_json

    def capabilities(self) -> Capabilities:
        return Capabilities(
            limits_memory="scheduler", accelerators=True, measures=("wall_s", "cpu_s"),
            notes=("timeout enforced to the second by the job's wrapper; --time is a backstop",
                   "cpu_s counts the processes the task waited for"))

    def submit(self, run: TaskRun) -> str:
        run.rundir.mkdir(parents=True, exist_ok=True)
        for stale in (STARTED_FILE, STATUS_FILE):  # a resubmission in the same directory
            (run.rundir / stale).unlink(missing_ok=True)
        fd = os.open(run.rundir / ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(env_file(run.envs))
        script = run.rundir / WRAPPER_FILE
        script.write_text(wrapper_script(run), encoding="utf-8")
        script.chmod(0o700)
        gpu_type = self.gpu_types.get(run.allocation.accelerator or "")
        proc = _slurm(sbatch_args(run, partition=self.partition, account=self.account,
                                  gpu_type=gpu_type, extra=self.extra_args),
                      self.command_timeout_s)
        job_id = proc.stdout.strip().split(";")[0]
        if proc.returncode != 0 or not job_id.isdigit():
            raise BackendError(f"slurm: sbatch failed: {proc.stderr.strip()[:300]}")
        return job_id

    def _query(self, handle: str) -> JobInfo | None:
        """Slurm's record of the job, None when it knows no such job (any more)."""
        if self._json is not False:
            proc = _slurm(["squeue", "--json", f"--jobs={handle}"], self.command_timeout_s)
            if proc.returncode == 0:
                try:
                    info, foreign = parse_squeue_json(proc.stdout, handle)
                except (ValueError, KeyError, TypeError):
                    self._json = False
                else:
                    # Slurm 22.05 answers --json with every job: text is then the cheaper query.
                    self._json = False if foreign else self._json
                    return info
            elif _invalid_job(proc):
                return None
            else:
                self._json = False
        proc = _slurm(["scontrol", "show", "job", "-o", handle], self.command_timeout_s)
        if proc.returncode != 0:
            if _invalid_job(proc):
                return None
            raise BackendError(f"slurm: scontrol show job failed: {proc.stderr.strip()[:300]}")
        return parse_scontrol_job(proc.stdout)

    def poll(self, handle: str, run: TaskRun) -> Status:
        record = ExitRecord.read(run.rundir)
        if record is not None:
            return record.status()
        info = self._query(handle)
        record = ExitRecord.read(run.rundir)  # the wrapper may have finished meanwhile
        if record is not None:
            return record.status()
        if info is None:
            return Status("gone", reason=f"slurm: no job {handle} and no status file")
        return job_status(info, (run.rundir / STARTED_FILE).exists())

    def cancel(self, handle: str, run: TaskRun) -> None:
        """Slurm signals every process of the job; the wrapper then kills what is left."""
        proc = _slurm(["scancel", handle], self.command_timeout_s)
        err = proc.stderr.lower()
        if proc.returncode != 0 and not _invalid_job(proc) and "already" not in err:
            raise BackendError(f"slurm: scancel failed: {proc.stderr.strip()[:300]}")


_DOWN = ("DOWN", "DRAIN", "FAIL", "FUTURE", "NOT_RESPONDING", "POWERED_DOWN")


def gres_device(kind: str) -> str:
    """The catalogue id a gres type names (``h100_sxm`` or a family with one variant: ``h200``);
    else the type itself, so that the site refuses it by name rather than guessing (a100 != A10).
    """
    from computility.domain.devices import default_catalogue

    def squash(text: str) -> str:
        return re.sub(r"[^A-Z0-9]", "", text.upper())

    accelerators = [d.id for d in default_catalogue() if d.kind != "cpu"]
    exact = [d for d in accelerators if squash(d) == squash(kind)]
    family = [d for d in accelerators if squash(d.split("-")[0]) == squash(kind)]
    return exact[0] if exact else family[0] if len(family) == 1 else kind


def parse_nodes(text: str, partition: str | None = None) -> list[dict[str, Any]]:
    """Pools from ``scontrol show node -o`` output: cores per CPU node shape, GPUs per gres type.

    Nodes that are down or drained are left out; nodes of different sizes make separate pools
    (``cpu-64``, ``cpu-128``) so that every pool's count is a whole number of its nodes.
    """
    from computility.agent.hardware import cpu_device

    shapes: dict[tuple[str, str, int], int] = {}  # (kind, device, per node) -> total
    for line in text.splitlines():
        fields = dict(re.findall(r"(?:^|\s)([A-Za-z]+)=(\S*)", line))
        if "NodeName" not in fields or any(d in fields.get("State", "") for d in _DOWN):
            continue
        if partition and partition not in fields.get("Partitions", "").split(","):
            continue
        cpus = int(fields.get("CPUEfctv") or fields.get("CPUTot") or 0)
        arch = fields.get("Arch", "")
        device = "KUNPENG-920" if arch.startswith(("arm", "aarch64")) else cpu_device()
        if cpus:
            shapes[("cpu", device, cpus)] = shapes.get(("cpu", device, cpus), 0) + cpus
        for m in re.finditer(r"(?:^|,)gpu(?::([^:,(]+))?:(\d+)", fields.get("Gres", "")):
            kind = m.group(1) or "gpu"
            n = int(m.group(2))
            if n:
                key = (kind, gres_device(kind), n)
                shapes[key] = shapes.get(key, 0) + n
    kinds = [k for k, _, _ in shapes]
    pools = []
    for (kind, device, per_node), count in sorted(shapes.items()):
        base = re.sub(r"[^A-Za-z0-9_.-]", "-", kind.lower())
        pools.append({"id": base if kinds.count(kind) == 1 else f"{base}-{per_node}",
                      "device": device, "count": count, "devices_per_node": per_node})
    return pools


def discover_pools(partition: str | None = None) -> list[dict[str, Any]]:
    """The cluster's pools, as `parse_nodes` reads them from ``scontrol show node``."""
    proc = _slurm(["scontrol", "show", "node", "-o"])
    if proc.returncode != 0:
        raise BackendError(f"slurm: scontrol show node failed: {proc.stderr.strip()[:300]}")
    return parse_nodes(proc.stdout, partition)
