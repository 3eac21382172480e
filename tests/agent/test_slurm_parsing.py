"""The Slurm backend's pure parts, on recorded Slurm output: no cluster needed.

States and exit codes map to the agent's phases, allocations to sbatch flags, ``scontrol`` and
``squeue`` answers to job records, ``scontrol show node`` to pools; and the job wrapper itself, run
by plain /bin/sh, records exit codes and timeouts and hands the task exactly its environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from computility.agent.backends.base import Allocation, BackendError, ExitRecord, TaskRun
from computility.agent.backends.slurm import (
    ENV_FILE,
    NO_LIMIT,
    WRAPPER_FILE,
    JobInfo,
    env_file,
    gres_device,
    job_status,
    parse_nodes,
    parse_scontrol_job,
    parse_squeue_json,
    sbatch_args,
    wrapper_script,
)
from computility.agent.rundir import make_rundir

SCONTROL_FAILED = (
    "JobId=1 JobName=test1 UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 "
    "Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) "
    "Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=UNLIMITED "
    "TimeMin=N/A SubmitTime=2026-11-28T12:15:32 EligibleTime=2026-11-28T12:15:32 "
    "AccrueTime=2026-11-28T12:15:32 StartTime=2026-11-28T12:15:33 EndTime=2026-11-28T12:15:35 "
    "Deadline=N/A SuspendTime=None SecsPreSuspend=0 Partition=main AllocNode:Sid=localhost:7162 "
    "NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 CPUs/Task=1 TRES=cpu=1,mem=1G,node=1 "
    "Command=/tmp/sx/j.sh WorkDir=/tmp/sx StdErr=/tmp/sx/err StdIn=/dev/null StdOut=/tmp/sx/out "
    "Power= \n"
)
SCONTROL_CANCELLED = SCONTROL_FAILED.replace("JobState=FAILED", "JobState=CANCELLED").replace(
    "ExitCode=3:0", "ExitCode=0:15").replace("Reason=NonZeroExitCode", "Reason=None")
SCONTROL_PENDING = SCONTROL_FAILED.replace("JobState=FAILED", "JobState=PENDING").replace(
    "Reason=NonZeroExitCode", "Reason=launch_failed_requeued_held").replace(
    "StartTime=2026-11-28T12:15:33", "StartTime=Unknown")

SCONTROL_NODES = """\
NodeName=c1 Arch=x86_64 CoresPerSocket=32 CPUAlloc=0 CPUEfctv=64 CPUTot=64 Gres=(null) \
State=IDLE Partitions=main,all RealMemory=256000
NodeName=c2 Arch=x86_64 CoresPerSocket=32 CPUAlloc=8 CPUEfctv=64 CPUTot=64 Gres=(null) \
State=MIXED Partitions=main,all
NodeName=c3 Arch=x86_64 CoresPerSocket=32 CPUAlloc=0 CPUEfctv=64 CPUTot=64 Gres=(null) \
State=IDLE+DRAIN Partitions=main,all
NodeName=g1 Arch=x86_64 CoresPerSocket=16 CPUAlloc=0 CPUTot=32 \
Gres=gpu:a100:4(S:0-1),gpu:h200:2 State=IDLE Partitions=gpu,all
NodeName=g2 Arch=x86_64 CoresPerSocket=16 CPUAlloc=0 CPUTot=32 Gres=gpu:a100:4(S:0-1) \
State=DOWN* Partitions=gpu,all
NodeName=g3 Arch=aarch64 CoresPerSocket=16 CPUAlloc=0 CPUEfctv=48 CPUTot=48 Gres=gpu:2 \
State=ALLOCATED Partitions=gpu,all
"""


def squeue_json(*jobs: dict[str, object]) -> str:
    return json.dumps({"meta": {"plugin": {"type": "openapi/v0.0.38"}}, "errors": [],
                       "jobs": list(jobs)})


def make_run(tmp_path: Path, *, cpus: int = 1, memory_bytes: int | None = None,
             accelerators: int = 0, timeout_s: float = 120.0, run: str = "true",
             envs: dict[str, str] | None = None) -> TaskRun:
    rundir, workdir = make_rundir(tmp_path, "s", "a1", run, None, None)
    return TaskRun(key="a1", attempt=1, task=7, rundir=rundir, workdir=workdir,
                   envs=envs or {"PATH": "/usr/bin:/bin"},
                   allocation=Allocation(cpus=cpus, memory_bytes=memory_bytes,
                                         accelerator="A100-80GB" if accelerators else None,
                                         accelerators=accelerators),
                   timeout_s=timeout_s)


# --- sbatch arguments, env file, wrapper -------------------------------------------------------

def test_sbatch_args_map_the_allocation(tmp_path: Path) -> None:
    run = make_run(tmp_path, cpus=4, memory_bytes=3 * 2**30 + 1, accelerators=2, timeout_s=61)
    args = sbatch_args(run, partition="gpu", account="lab", gpu_type="a100", extra=["--qos=x"])
    assert args[:4] == ["sbatch", "--parsable", "--job-name=a1", "--export=NONE"]
    assert f"--output={run.rundir / 'stdout'}" in args
    assert f"--error={run.rundir / 'stderr'}" in args
    assert f"--chdir={run.workdir}" in args
    for flag in ("--cpus-per-task=4", "--mem=3073M", "--gres=gpu:a100:2", "--time=3",
                 "--partition=gpu", "--account=lab", "--qos=x", "--no-requeue"):
        assert flag in args
    assert args[-1] == str(run.rundir / WRAPPER_FILE)


def test_sbatch_args_leave_out_what_was_not_asked(tmp_path: Path) -> None:
    args = sbatch_args(make_run(tmp_path, timeout_s=float("inf")))
    assert not [a for a in args if a.startswith(("--mem", "--gres", "--time", "--partition"))]
    untyped = sbatch_args(make_run(tmp_path, accelerators=1, timeout_s=2))
    assert "--gres=gpu:1" in untyped and "--time=2" in untyped


def test_env_file_quotes_values_and_refuses_odd_names() -> None:
    text = env_file({"A": "it's $HOME", "B": "two\nlines"})
    assert text.splitlines()[0] == "export A='it'\"'\"'s $HOME'"
    with pytest.raises(BackendError, match="shell identifiers"):
        env_file({"NOT-A-NAME": "x"})


def test_wrapper_carries_the_limit_and_gpu_visibility_only_when_asked(tmp_path: Path) -> None:
    plain = wrapper_script(make_run(tmp_path, timeout_s=2))
    assert "limit=2\n" in plain and "CUDA_VISIBLE_DEVICES" not in plain
    assert "@" not in plain.replace("$@", "")  # every placeholder filled
    assert "limit=2.5\n" in wrapper_script(make_run(tmp_path, timeout_s=2.5))
    assert f"limit={NO_LIMIT}\n" in wrapper_script(make_run(tmp_path, timeout_s=0))
    assert "CUDA_VISIBLE_DEVICES" in wrapper_script(make_run(tmp_path, accelerators=1))


# --- job records --------------------------------------------------------------------------------

def test_scontrol_text_gives_state_exit_code_and_times() -> None:
    info = parse_scontrol_job(SCONTROL_FAILED)
    assert info is not None
    assert (info.state, info.reason, info.exit_code, info.signal) == (
        "FAILED", "NonZeroExitCode", 3, None)
    assert info.started_at is not None and info.ended_at == info.started_at + 2
    cancelled = parse_scontrol_job(SCONTROL_CANCELLED)
    assert cancelled is not None and (cancelled.exit_code, cancelled.signal) == (None, 15)
    pending = parse_scontrol_job(SCONTROL_PENDING)
    assert pending is not None and pending.started_at is None
    assert parse_scontrol_job("") is None


def test_squeue_json_of_22_05_decodes_raw_wait_statuses_and_filters_by_id() -> None:
    text = squeue_json(
        {"job_id": 1, "job_state": "FAILED", "exit_code": 768, "state_reason": "NonZeroExitCode",
         "start_time": 1795868133, "end_time": 1795868135},
        {"job_id": 2, "job_state": "COMPLETING", "exit_code": 15, "state_reason": "None",
         "start_time": 1795868139, "end_time": 1795868140})
    info, foreign = parse_squeue_json(text, "1")
    assert foreign and info is not None
    assert (info.state, info.exit_code, info.signal, info.started_at) == (
        "FAILED", 3, None, 1795868133.0)
    info, _ = parse_squeue_json(text, "2")
    assert info is not None and (info.state, info.exit_code, info.signal) == (
        "COMPLETING", None, 15)
    assert parse_squeue_json(text, "999999999") == (None, True)


def test_squeue_json_of_newer_data_parsers() -> None:
    job = {"job_id": 5, "job_state": ["CANCELLED", "COMPLETING"], "state_reason": "None",
           "exit_code": {"status": ["SIGNALED"], "return_code": {"set": True, "number": 0},
                         "signal": {"id": {"set": True, "number": 9}, "name": "KILL"}},
           "start_time": {"set": True, "infinite": False, "number": 100},
           "end_time": {"set": True, "infinite": False, "number": 0}}
    info, foreign = parse_squeue_json(squeue_json(job), "5")
    assert not foreign and info is not None
    assert (info.state, info.flags, info.signal, info.exit_code) == (
        "CANCELLED", ("COMPLETING",), 9, None)
    assert (info.started_at, info.ended_at) == (100.0, None)


# --- states -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("info", "started", "phase"), [
    (JobInfo("PENDING", reason="Resources"), False, "queued"),
    (JobInfo("REQUEUE_HOLD"), False, "queued"),
    (JobInfo("PENDING", reason="launch_failed_requeued_held"), False, "failed_to_start"),
    (JobInfo("CONFIGURING"), False, "running"),
    (JobInfo("RUNNING", started_at=1.0), True, "running"),
    (JobInfo("COMPLETING"), True, "running"),
    (JobInfo("CANCELLED", flags=("COMPLETING",)), True, "running"),
    (JobInfo("NODE_FAIL"), True, "failed_to_start"),
    (JobInfo("BOOT_FAIL"), False, "failed_to_start"),
    (JobInfo("FAILED", exit_code=1), False, "failed_to_start"),
    (JobInfo("COMPLETED", exit_code=0), True, "exited"),
])
def test_states_map_to_phases(info: JobInfo, started: bool, phase: str) -> None:
    assert job_status(info, started).phase == phase


def test_ended_jobs_keep_their_exit_code_signal_and_cause() -> None:
    failed = job_status(JobInfo("FAILED", exit_code=3, started_at=10.0, ended_at=12.5), True)
    assert (failed.phase, failed.exit_code, failed.signal, failed.usage.wall_s) == (
        "exited", 3, None, 2.5)
    killed = job_status(JobInfo("CANCELLED", exit_code=0, signal=9), True)
    assert (killed.exit_code, killed.signal) == (None, 9)
    cancelled = job_status(JobInfo("CANCELLED"), True)
    assert cancelled.signal == 15
    assert job_status(JobInfo("DEADLINE"), False).timed_out


def test_a_job_cancelled_before_it_started_did_not_run_and_is_not_the_tasks_failure() -> None:
    """Whoever cancelled it while it waited (the cluster's operator, or the agent for a user who
    cancelled), the task never ran: placed again at no charge (or ended cancelled, if its user
    asked), never failed and billed for its time in the queue (seen under tests/chaos, where
    another job of the machine ran `scancel --user` over a queued task)."""
    before = job_status(JobInfo("CANCELLED"), False)
    assert before.phase == "failed_to_start"
    assert before.reason == "slurm: job CANCELLED before it started"
    assert job_status(JobInfo("TIMEOUT", signal=15), True).timed_out
    assert job_status(JobInfo("OUT_OF_MEMORY", exit_code=0, signal=9), True).out_of_memory


# --- pools --------------------------------------------------------------------------------------

def test_nodes_make_pools_per_shape_leaving_out_down_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("computility.agent.hardware.cpu_device", lambda: "XEON-8380")
    pools = {p["id"]: p for p in parse_nodes(SCONTROL_NODES)}
    assert pools["cpu-64"] == {"id": "cpu-64", "device": "XEON-8380", "count": 128,
                               "devices_per_node": 64}  # c3 is drained
    assert pools["cpu-32"]["count"] == 32  # g2 is down
    assert pools["cpu-48"]["device"] == "KUNPENG-920"
    assert pools["a100"] == {"id": "a100", "device": "a100", "count": 4, "devices_per_node": 4}
    assert pools["h200"]["device"] == "H200-SXM"  # the catalogue's only H200
    assert pools["gpu"] == {"id": "gpu", "device": "gpu", "count": 2, "devices_per_node": 2}
    assert [gres_device(k) for k in ("a10", "rtx4090", "h100_sxm", "mi300x")] == [
        "A10", "RTX-4090", "H100-SXM", "MI300X"]
    main = parse_nodes(SCONTROL_NODES, partition="main")
    assert main == [{"id": "cpu", "device": "XEON-8380", "count": 128, "devices_per_node": 64}]


# --- the wrapper, run by /bin/sh without Slurm --------------------------------------------------

def run_wrapper(run: TaskRun, *, reaper: bool = True) -> ExitRecord:
    """Run the wrapper as Slurm would; ``reaper=False``: as on a node without python3."""
    (run.rundir / ENV_FILE).write_text(env_file(run.envs), encoding="utf-8")
    (run.rundir / WRAPPER_FILE).write_text(wrapper_script(run), encoding="utf-8")
    with (run.rundir / "stdout").open("wb") as out, (run.rundir / "stderr").open("wb") as err:
        subprocess.run(["/bin/sh", str(run.rundir / WRAPPER_FILE)], cwd=run.workdir, stdout=out,
                       stderr=err, timeout=30, env={"LEAK": "yes", "PATH": "/usr/bin:/bin",
                                                    **({} if reaper else {"CU_REAPER": "no"})},
                       check=False)
    record = ExitRecord.read(run.rundir)
    assert record is not None
    return record


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the wrapper reads /proc")
def test_wrapper_records_the_exit_code_and_passes_exactly_the_environment(
    tmp_path: Path,
) -> None:
    run = make_run(tmp_path, run='echo "x=$X leak=${LEAK:-none}"; exit 3',
                   envs={"PATH": "/usr/bin:/bin", "X": "a b"})
    record = run_wrapper(run)
    assert (record.exit_code, record.signal, record.timed_out) == (3, None, False)
    assert (run.rundir / "stdout").read_text() == "x=a b leak=none\n"
    assert (run.rundir / "stderr").read_text() == ""
    assert not (run.rundir / ENV_FILE).exists()  # read once, then removed
    assert record.started_at is not None and record.ended_at is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the wrapper reads /proc")
@pytest.mark.parametrize("reaper", [True, False])
def test_wrapper_stops_the_whole_tree_at_the_timeout(tmp_path: Path, reaper: bool) -> None:
    # A child that shrugs off TERM and a grandchild in its own session: gone all the same.
    stubborn = "sh -c 'trap \"\" TERM; sleep 3172; sleep 3173'"
    run = make_run(tmp_path, run=f"sleep 3171 & setsid {stubborn} & sleep 3174", timeout_s=0.5)
    t0 = time.monotonic()
    record = run_wrapper(run, reaper=reaper)
    assert time.monotonic() - t0 < 10
    assert (record.timed_out, record.signal, record.exit_code) == (True, 15, None)
    assert record.reason == "timed out after 0.5 s"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
    assert not [line for line in ps.stdout.splitlines() if line.startswith("sleep 317")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the wrapper reads /proc")
def test_wrapper_kills_what_the_task_left_running(tmp_path: Path) -> None:
    run = make_run(tmp_path, run="setsid sleep 3175 & echo bye")
    record = run_wrapper(run)
    assert (record.exit_code, (run.rundir / "stdout").read_text()) == (0, "bye\n")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
    assert "sleep 3175" not in ps.stdout.splitlines()
