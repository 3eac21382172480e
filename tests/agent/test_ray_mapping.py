"""The ray backend without a Ray head: its requests, its reading of Ray's job states, and its
wrapper run directly, as a Ray worker would run it (the contract suite runs it under a real head).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from computility.agent.backends.base import Allocation, ExitRecord, TaskRun
from computility.agent.backends.ray import (
    SPEC_FILE,
    STARTED_FILE,
    VISIBILITY_VARS,
    WRAPPER_FILE,
    RayBackend,
    entrypoint,
    job_status,
    new_submission_id,
    prepare_rundir,
    submit_request,
    task_spec,
)
from computility.agent.rundir import make_rundir

MakeRun = Callable[..., TaskRun]


@pytest.fixture
def make_run(tmp_path: Path) -> MakeRun:
    def make(run: str, *, setup: str | None = None, timeout_s: float = 60.0,
             allocation: Allocation | None = None, key: str = "a1") -> TaskRun:
        rundir, workdir = make_rundir(tmp_path / "tasks", "site", key, run, setup, None)
        return TaskRun(key=key, attempt=1, task=7, rundir=rundir, workdir=workdir,
                       envs={"PATH": "/usr/bin:/bin", "SEED": "7"},
                       allocation=allocation or Allocation(cpus=2), timeout_s=timeout_s,
                       name="job")
    return make


# ------------------------------------------------------------------------------ requests


def test_submission_ids_are_unique_per_submit_and_name_the_attempt() -> None:
    ids = {new_submission_id("a12") for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("computility-a12-") for i in ids)


def test_the_entrypoint_quotes_odd_paths() -> None:
    rundir = Path("/tmp/a dir/it's")
    words = shlex.split(entrypoint("/opt/my python", rundir))
    assert words == ["exec", "/opt/my python", "-I", str(rundir / WRAPPER_FILE), str(rundir)]


def test_the_environment_travels_in_the_spec_not_in_the_request(make_run: MakeRun) -> None:
    run = make_run("true")
    body = submit_request(run, "sid", entrypoint("python3", run.rundir))
    assert "SEED" not in json.dumps(body) and "runtime_env" not in body
    spec = task_spec(run)
    assert spec["envs"] == dict(run.envs)
    assert spec["passthrough"] == list(VISIBILITY_VARS)


def test_a_cpu_task_asks_for_cpus_and_memory_only(make_run: MakeRun) -> None:
    run = make_run("true", allocation=Allocation(cpus=3, memory_bytes=2 << 30))
    body = submit_request(run, "sid", "cmd")
    assert body["entrypoint"] == "cmd" and body["submission_id"] == "sid"
    assert body["entrypoint_num_cpus"] == 3 and body["entrypoint_memory"] == 2 << 30
    assert "entrypoint_num_gpus" not in body and "entrypoint_resources" not in body
    assert all(isinstance(v, str) for v in body["metadata"].values())


def test_gpus_are_counted_and_typed(make_run: MakeRun) -> None:
    run = make_run("true", allocation=Allocation(cpus=1, accelerator="A100-80GB", accelerators=2))
    body = submit_request(run, "sid", "cmd")
    assert body["entrypoint_num_gpus"] == 2
    assert body["entrypoint_resources"] == {"accelerator_type:A100": 0.001}
    assert "entrypoint_memory" not in body


def test_other_accelerators_are_asked_as_their_resource(make_run: MakeRun) -> None:
    run = make_run("true", allocation=Allocation(cpus=1, accelerator="ASCEND-910B", accelerators=4))
    body = submit_request(run, "sid", "cmd")
    assert "entrypoint_num_gpus" not in body
    assert body["entrypoint_resources"] == {"NPU": 4.0, "accelerator_type:Ascend910B": 0.001}


def test_an_uncatalogued_gpu_is_counted_without_a_type(make_run: MakeRun) -> None:
    run = make_run("true", allocation=Allocation(cpus=1, accelerator="RTX-4090", accelerators=1))
    body = submit_request(run, "sid", "cmd")
    assert body["entrypoint_num_gpus"] == 1 and "entrypoint_resources" not in body


# ------------------------------------------------------------------------- Ray's states


def info(status: str, **more: Any) -> dict[str, Any]:
    return {"status": status, "start_time": 1_000_000, "end_time": 1_004_500, **more}


@pytest.mark.parametrize(("job", "started", "phase"), [
    (None, False, "gone"),
    (None, True, "gone"),
    (info("PENDING", end_time=None), False, "queued"),
    (info("RUNNING", end_time=None), False, "running"),
    (info("RUNNING", end_time=None), True, "running"),
    (info("SUCCEEDED", driver_exit_code=0), True, "exited"),
    (info("SUCCEEDED", driver_exit_code=0), False, "exited"),
    (info("STOPPED"), True, "exited"),
    (info("STOPPED"), False, "exited"),
    (info("FAILED", error_type="JOB_SUPERVISOR_ACTOR_START_FAILURE"), False, "failed_to_start"),
    (info("FAILED", driver_exit_code=127, error_type="JOB_ENTRYPOINT_COMMAND_ERROR"), False,
     "failed_to_start"),
    (info("FAILED", driver_exit_code=3, error_type="JOB_ENTRYPOINT_COMMAND_ERROR"), True,
     "exited"),
])
def test_ray_states_map_to_phases(job: dict[str, Any] | None, started: bool, phase: str) -> None:
    assert job_status(job, started).phase == phase


def test_a_stopped_job_ended_by_signal_and_times_are_in_seconds() -> None:
    status = job_status(info("STOPPED"), True)
    assert (status.exit_code, status.signal) == (None, signal.SIGTERM)
    assert (status.started_at, status.ended_at) == (1000.0, 1004.5)


def test_a_failed_wrapper_reports_the_exit_code_or_the_signal() -> None:
    assert job_status(info("FAILED", driver_exit_code=3), True).exit_code == 3
    killed = job_status(info("FAILED", driver_exit_code=137), True)
    assert (killed.exit_code, killed.signal) == (None, 9)
    assert job_status(info("FAILED", message="boom"), False).reason == \
        "the entrypoint never started: boom"


# ------------------------------------------------------------ the backend over fake HTTP


@pytest.fixture
def fake_head() -> Iterator[tuple[RayBackend, list[httpx.Request], dict[str, Any]]]:
    seen: list[httpx.Request] = []
    jobs: dict[str, Any] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        parts = request.url.path.rstrip("/").split("/")
        if request.method == "POST" and parts[-1] == "jobs":
            sid = json.loads(request.content)["submission_id"]
            jobs[sid] = info("PENDING")
            return httpx.Response(200, json={"submission_id": sid})
        sid = parts[3]
        if sid not in jobs:
            return httpx.Response(404, text="no such job")
        if request.method == "POST" and parts[-1] == "stop":
            return httpx.Response(200, json={"stopped": True})
        if request.method == "DELETE":
            del jobs[sid]
            return httpx.Response(200, json={"deleted": True})
        return httpx.Response(200, json=jobs[sid])

    backend = RayBackend(address="http://head:8265")
    backend._http = httpx.Client(base_url="http://head:8265",
                                 transport=httpx.MockTransport(handle))
    yield backend, seen, jobs
    backend.close()


def test_submit_prepares_the_rundir_and_polls_ray_until_a_record_exists(
    fake_head: tuple[RayBackend, list[httpx.Request], dict[str, Any]], make_run: MakeRun
) -> None:
    backend, seen, jobs = fake_head
    run = make_run("echo hi")
    handle = backend.submit(run)
    assert handle in jobs and (run.rundir / WRAPPER_FILE).exists()
    assert (run.rundir / SPEC_FILE).stat().st_mode & 0o077 == 0
    assert backend.poll(handle, run).phase == "queued"
    ExitRecord(exit_code=0, started_at=1.0, ended_at=2.0).write(run.rundir)
    asked = len(seen)
    status = backend.poll(handle, run)
    assert (status.phase, status.exit_code, status.usage.wall_s) == ("exited", 0, 1.0)
    assert len(seen) == asked  # the record answers without asking Ray
    backend.release(handle, run)
    assert handle not in jobs
    assert backend.poll(handle, make_run("true", key="other")).phase == "gone"


def test_cancelling_a_pending_job_takes_its_spec_so_it_never_runs(
    fake_head: tuple[RayBackend, list[httpx.Request], dict[str, Any]], make_run: MakeRun
) -> None:
    backend, seen, _ = fake_head
    run = make_run("echo hi")
    handle = backend.submit(run)
    backend.cancel(handle, run)
    assert any(r.url.path.endswith("/stop") for r in seen)
    assert not (run.rundir / SPEC_FILE).exists()
    status = backend.poll(handle, run)
    assert (status.phase, status.signal) == ("exited", signal.SIGTERM)


def test_a_head_that_does_not_answer_is_an_error_not_a_lost_task(make_run: MakeRun) -> None:
    from computility.agent.backends.base import BackendError

    backend = RayBackend(address="http://127.0.0.1:9", request_timeout_s=2)
    with pytest.raises(BackendError):
        backend.poll("computility-a1-00000000", make_run("true"))
    backend.close()


# --------------------------------------------------------------- the wrapper, run directly


def start_wrapper(run: TaskRun) -> subprocess.Popen[bytes]:
    prepare_rundir(run)
    noisy = {**os.environ, "AGENT_SECRET": "must-not-leak", "RAY_ADDRESS": "x"}
    return subprocess.Popen(shlex.split(entrypoint(sys.executable, run.rundir))[1:], env=noisy)


def test_the_wrapper_runs_setup_then_run_with_exactly_the_environment(make_run: MakeRun) -> None:
    run = make_run('echo "seed=$SEED secret=${AGENT_SECRET:-none}"; pwd; env | sort | cut -d= -f1',
                  setup="exit 0")
    assert start_wrapper(run).wait(30) == 0
    out = (run.rundir / "stdout").read_text().splitlines()
    assert out[0] == "seed=7 secret=none" and out[1] == str(run.workdir)
    assert set(out[2:]) <= {"PATH", "SEED", "PWD", "OLDPWD", "SHLVL", "_"}
    record = ExitRecord.read(run.rundir)
    assert record is not None and record.exit_code == 0 and record.cpu_s is not None
    assert not (run.rundir / SPEC_FILE).exists()


def test_the_wrapper_stops_the_task_at_its_timeout(make_run: MakeRun) -> None:
    run = make_run("sleep 30", timeout_s=0.5)
    t0 = time.monotonic()
    assert start_wrapper(run).wait(30) != 0
    assert time.monotonic() - t0 < 5
    record = ExitRecord.read(run.rundir)
    assert record is not None and record.timed_out and record.signal == signal.SIGTERM


def test_sigterm_to_the_wrapper_ends_the_whole_tree(make_run: MakeRun) -> None:
    marker = f"cu-wrap-{time.monotonic_ns()}"
    sleeper = f"{sys.executable} -c 'import time; time.sleep(60)'"
    run = make_run(f"setsid {sleeper} {marker}-g & exec {sleeper} {marker}-m")
    wrapper = start_wrapper(run)
    deadline = time.monotonic() + 20
    while len(with_marker(marker)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    wrapper.send_signal(signal.SIGTERM)
    wrapper.wait(10)
    assert with_marker(marker) == []
    record = ExitRecord.read(run.rundir)
    assert record is not None and record.reason == "cancelled" and not record.timed_out
    assert json.loads((run.rundir / STARTED_FILE).read_text())["pid"] == wrapper.pid


def test_a_wrapper_whose_spec_was_taken_runs_nothing(make_run: MakeRun) -> None:
    run = make_run("echo ran")
    prepare_rundir(run)
    (run.rundir / SPEC_FILE).unlink()
    command = shlex.split(entrypoint(sys.executable, run.rundir))[1:]
    assert subprocess.run(command, capture_output=True, check=False).returncode != 0
    assert not (run.rundir / "stdout").exists() and ExitRecord.read(run.rundir) is None


def with_marker(marker: str) -> list[int]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(
                    marker in part for part in (p.info["cmdline"] or [])):
                found.append(p.pid)
        except psutil.Error:
            continue
    return found
