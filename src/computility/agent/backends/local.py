"""Tasks as local processes, each under its own supervisor (`computility.agent.supervisor`).

One supervisor is kept started and waiting (``--standby``), so a task starts with a write to a
pipe, not an interpreter's start-up. The handle is ``"<supervisor pid>:<its start time>"``, so a
restarted agent tells its own supervisor from an unrelated process that reused the pid.
Everything a later poll needs is on disk: the supervisor's ``status.json`` once the task has
ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import psutil

from computility.agent.backends.base import (
    Backend,
    BackendError,
    Capabilities,
    ExitRecord,
    Status,
    TaskRun,
)
from computility.agent.supervisor import LAUNCH_FILE, memory_mode


class LocalBackend(Backend):
    name = "local"

    def __init__(self, run_as: tuple[int, int] | list[int] | None = None, **_: Any) -> None:
        """`run_as` (uid, gid): who tasks run as (the agent chooses it when it runs as root)."""
        self.run_as = tuple(run_as) if run_as is not None else None
        self._memory_mode: str | None = None
        self._lock = threading.Lock()
        self._standby: subprocess.Popen[bytes] | None = None
        self._closed = False

    def capabilities(self) -> Capabilities:
        if self._memory_mode is None:
            self._memory_mode = memory_mode()
        return Capabilities(
            pins_cpus=True, limits_memory=self._memory_mode, accelerators=True,
            measures=("wall_s", "cpu_s", "max_rss_bytes"),
            notes=("memory: cgroup v2 leaf per task" if self._memory_mode == "cgroup-v2" else
                   "memory: RLIMIT_DATA ceiling plus a resident-memory watchdog per task",))

    def submit(self, run: TaskRun) -> str:
        orders = {
            "key": run.key, "workdir": str(run.workdir), "env": dict(run.envs),
            "timeout_s": run.timeout_s, "memory_bytes": run.allocation.memory_bytes,
            "cpu_ids": list(run.allocation.cpu_ids),
            "uid": self.run_as[0] if self.run_as else None,
            "gid": self.run_as[1] if self.run_as else None,
        }
        launch = run.rundir / LAUNCH_FILE
        fd = os.open(launch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(orders, f)
        proc = self._take_standby()
        try:
            assert proc.stdin is not None
            proc.stdin.write(f"{run.rundir}\n".encode())
            proc.stdin.close()
        except (OSError, ValueError):  # the standby died: start one for this task alone
            proc = self._spawn()
            assert proc.stdin is not None
            proc.stdin.write(f"{run.rundir}\n".encode())
            proc.stdin.close()
        threading.Thread(target=self._refill, name="standby-supervisor", daemon=True).start()
        # Reaped by a thread of its own so no zombie stays behind while the agent lives on.
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
        try:
            created = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            created = 0.0
        return f"{proc.pid}:{created:.3f}"

    def _spawn(self) -> subprocess.Popen[bytes]:
        # The supervisor starts with SIGTERM blocked (the mask is inherited) and unblocks it once
        # its handler is in place, so a cancel in its first milliseconds is held, not fatal.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "computility.agent.supervisor", "--standby"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True, env=_supervisor_env())
        except OSError as e:
            raise BackendError(f"could not start a supervisor: {e}") from e
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _take_standby(self) -> subprocess.Popen[bytes]:
        with self._lock:
            proc, self._standby = self._standby, None
        if proc is None or proc.poll() is not None:
            proc = self._spawn()
        return proc

    def _refill(self) -> None:
        with self._lock:
            if self._standby is not None or self._closed:
                return
        fresh = self._spawn()
        with self._lock:
            if self._standby is None and not self._closed:
                self._standby, fresh = fresh, None  # type: ignore[assignment]
        if fresh is not None:
            self._dismiss(fresh)

    @staticmethod
    def _dismiss(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.close()  # end of input: a standby supervisor exits
        threading.Thread(target=proc.wait, daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            proc, self._standby = self._standby, None
        if proc is not None:
            self._dismiss(proc)

    def poll(self, handle: str, run: TaskRun) -> Status:
        record = ExitRecord.read(run.rundir)
        if record is not None:
            if record.exit_code is None and record.signal is None:
                return Status("failed_to_start", reason=record.reason)
            return record.status()
        supervisor = _supervisor(handle)
        if supervisor is not None:
            return Status("running")
        # Ended between the two reads?
        record = ExitRecord.read(run.rundir)
        if record is not None:
            return self.poll(handle, run)
        return Status("gone", reason="the task's supervisor is gone and left no status")

    def cancel(self, handle: str, run: TaskRun) -> None:
        supervisor = _supervisor(handle)
        if supervisor is not None:
            with contextlib.suppress(psutil.Error):
                supervisor.send_signal(signal.SIGTERM)


def _supervisor(handle: str) -> psutil.Process | None:
    pid_text, _, created_text = handle.partition(":")
    try:
        pid, created = int(pid_text), float(created_text or 0)
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (ValueError, psutil.Error):
        return None


def _supervisor_env() -> dict[str, str]:
    """The supervisor needs to import computility: the agent's interpreter path, nothing secret."""
    keep = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ}
