"""Every execution backend keeps the same promises to the agent (local, slurm and ray, for real).

A promise here is what the agent relies on: how a task ended (exit code, signal, timeout) and what
it printed reach the agent; the task sees exactly the environment it was given and runs in its
work directory after its setup; a cancel stops the whole process tree within 2 s; and a handle
outlives the backend object, so a restarted agent can adopt its tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from computility.agent.backends import Backend, make_backend
from computility.agent.backends.base import Status, TaskRun
from computility.testing.processes import processes_with

NewRun = Callable[..., TaskRun]


def wait_done(backend: Backend, handle: str, run: TaskRun, timeout: float = 90.0) -> Status:
    deadline = time.monotonic() + timeout
    while True:
        status = backend.poll(handle, run)
        if status.done:
            return status
        assert time.monotonic() < deadline, f"still {status.phase} after {timeout} s"
        time.sleep(0.1)


def wait_running(backend: Backend, handle: str, run: TaskRun, marker: str) -> None:
    deadline = time.monotonic() + 90
    while not processes_with(marker):
        status = backend.poll(handle, run)
        assert not status.done, f"ended before it ran: {status}"
        assert time.monotonic() < deadline, "never started"
        time.sleep(0.1)


def test_a_task_that_succeeds_reports_exit_zero_and_its_output(
    backend: Backend, new_run: NewRun
) -> None:
    run = new_run("echo hello")
    handle = backend.submit(run)
    status = wait_done(backend, handle, run)
    assert (status.phase, status.exit_code, status.signal) == ("exited", 0, None)
    assert backend.output(handle, run, "stdout", 1 << 20) == b"hello\n"


def test_a_failing_task_reports_its_exit_code(backend: Backend, new_run: NewRun) -> None:
    run = new_run("exit 3")
    status = wait_done(backend, backend.submit(run), run)
    assert (status.phase, status.exit_code) == ("exited", 3)


def test_stdout_and_stderr_are_kept_apart(backend: Backend, new_run: NewRun) -> None:
    run = new_run("echo to-out; echo to-err >&2")
    handle = backend.submit(run)
    wait_done(backend, handle, run)
    assert backend.output(handle, run, "stdout", 1 << 20) == b"to-out\n"
    assert b"to-err\n" in backend.output(handle, run, "stderr", 1 << 20)


def test_the_task_sees_exactly_its_environment(
    backend: Backend, new_run: NewRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_SECRET", "must-not-leak")
    run = new_run('echo "seed=$SEED secret=${AGENT_SECRET:-none}"', envs={"SEED": "7"})
    handle = backend.submit(run)
    wait_done(backend, handle, run)
    assert backend.output(handle, run, "stdout", 1 << 20) == b"seed=7 secret=none\n"


def test_setup_runs_first_in_the_work_directory(backend: Backend, new_run: NewRun) -> None:
    run = new_run("cat made-by-setup input.txt; pwd", setup="echo from-setup > made-by-setup",
                  files={"input.txt": "uploaded\n"})
    handle = backend.submit(run)
    status = wait_done(backend, handle, run)
    assert status.exit_code == 0
    out = backend.output(handle, run, "stdout", 1 << 20).decode()
    assert out.splitlines()[:2] == ["from-setup", "uploaded"]
    assert out.splitlines()[2].endswith(str(run.workdir.relative_to(run.workdir.parent.parent)))


def test_a_failing_setup_fails_the_task_without_running_it(
    backend: Backend, new_run: NewRun
) -> None:
    run = new_run("echo ran", setup="exit 5")
    handle = backend.submit(run)
    status = wait_done(backend, handle, run)
    assert status.exit_code == 5
    assert backend.output(handle, run, "stdout", 1 << 20) == b""


def test_cancel_stops_the_whole_process_tree_within_two_seconds(
    backend: Backend, new_run: NewRun
) -> None:
    marker = f"cu-tree-{time.monotonic_ns()}"
    # A child, a grandchild in its own session (escapes the process group) and the shell itself.
    sleeper = "python3 -c 'import time; time.sleep(300)'"
    run = new_run(f"{sleeper} {marker}-c & setsid {sleeper} {marker}-g & "
                  f"exec {sleeper} {marker}-m")
    handle = backend.submit(run)
    wait_running(backend, handle, run, f"{marker}-m")
    t0 = time.monotonic()
    backend.cancel(handle, run)
    while processes_with(marker):
        assert time.monotonic() - t0 < 2.0, [p.info["cmdline"] for p in processes_with(marker)]
        time.sleep(0.05)
    status = wait_done(backend, handle, run, timeout=30)
    assert status.phase == "exited"
    assert status.exit_code != 0 or status.signal is not None


def test_a_task_past_its_timeout_is_stopped_and_says_so(
    backend: Backend, new_run: NewRun
) -> None:
    run = new_run("sleep 120", timeout_s=2)
    t0 = time.monotonic()
    status = wait_done(backend, backend.submit(run), run, timeout=120)
    assert status.timed_out, status
    assert time.monotonic() - t0 < 90


def test_a_new_backend_object_adopts_a_running_task(
    backend: Backend, new_run: NewRun
) -> None:
    run = new_run("sleep 2; echo adopted")
    handle = backend.submit(run)
    fresh = make_backend(backend.name, {})
    try:
        status = wait_done(fresh, handle, run)
        assert (status.phase, status.exit_code) == ("exited", 0)
        assert fresh.output(handle, run, "stdout", 1 << 20) == b"adopted\n"
    finally:
        fresh.close()


def test_an_unknown_handle_is_gone(backend: Backend, new_run: NewRun) -> None:
    run = new_run("true")
    assert backend.poll("999999999", run).phase == "gone"


def test_wall_time_is_measured(backend: Backend, new_run: NewRun) -> None:
    run = new_run("sleep 1")
    status = wait_done(backend, backend.submit(run), run)
    assert status.usage.wall_s is not None and 0.9 <= status.usage.wall_s < 30
