"""The small process that owns one local task: ``python -m computility.agent.supervisor RUNDIR``.

The agent starts one supervisor per task in a session of its own, so the task outlives the agent
(a restarted agent re-adopts it by the supervisor's pid and start time) and its outcome is never
lost: the supervisor waits for the task and writes ``status.json`` (`ExitRecord`) atomically.

It reads its orders from ``RUNDIR/launch.json`` (written by the agent, mode 600) and
- becomes a child subreaper, so whatever the task starts, even in a new session, stays its
  descendant and can be found and killed;
- starts ``/bin/sh task.sh`` in a new process group, as the task's user, with exactly the task's
  environment, pinned to its cores, with its memory limit (cgroup v2 where writable, else
  RLIMIT_DATA as a hard ceiling) and a watchdog on the tree's resident memory that kills the task
  once it exceeds the limit, so that an over-limit task is killed and reported as such;
- on SIGTERM (cancel) or at the timeout, sends SIGTERM to the whole tree, then SIGKILL to what is
  left after `GRACE_S`;
- after the task ends kills anything it left behind, reaps everything and records CPU-seconds
  and peak memory from the kernel's accounting of its children.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from computility.agent.backends.base import (
    SCRIPT_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    ExitRecord,
)

LAUNCH_FILE = "launch.json"
GRACE_S = 1.0
WATCH_S = 0.1
PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _descendants() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _signal_tree(sig: int) -> None:
    for p in _descendants():
        try:
            p.send_signal(sig)
        except psutil.Error:
            continue


def _tree_rss() -> int:
    total = 0
    for p in _descendants():
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Cgroup:
    """A cgroup v2 leaf for the task, when this host lets us make one (else `None` from `make`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def make(name: str, memory_bytes: int) -> Cgroup | None:
        root = Path("/sys/fs/cgroup")
        try:
            if "memory" not in (root / "cgroup.controllers").read_text().split():
                return None
            own = Path("/proc/self/cgroup").read_text().strip().splitlines()[-1].split("::", 1)
            parent = root / own[1].lstrip("/") if len(own) == 2 else root
            if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                return None
            path = parent / name
            path.mkdir(exist_ok=True)
            (path / "memory.max").write_text(str(memory_bytes))
            (path / "memory.swap.max").write_text("0")
            return Cgroup(path)
        except OSError:
            return None

    def join(self) -> None:
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_killed(self) -> bool:
        try:
            for line in (self.path / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / "cgroup.kill").write_text("1")
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


def memory_mode() -> str:
    """Which memory limit local tasks get here: "cgroup-v2" or "rlimit-data" (and the watchdog)."""
    probe = Cgroup.make(f"computility-probe-{os.getpid()}", 1 << 40)
    if probe is None:
        return "rlimit-data"
    probe.remove()
    return "cgroup-v2"


def supervise(rundir: Path) -> int:
    orders: dict[str, Any] = json.loads((rundir / LAUNCH_FILE).read_text(encoding="utf-8"))
    (rundir / LAUNCH_FILE).unlink()
    _become_subreaper()
    stop = {"signal": 0}

    def on_term(signum: int, _frame: Any) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # The backend started us with these blocked; a cancel sent meanwhile is delivered now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

    memory: int | None = orders.get("memory_bytes")
    cpus: list[int] = orders.get("cpu_ids") or []
    user: int | None = orders.get("uid")
    group: int | None = orders.get("gid")
    cgroup = Cgroup.make(f"computility-{orders['key']}", memory) if memory else None

    def prepare_child() -> None:
        if cgroup is not None:
            cgroup.join()
        elif memory:
            ceiling = memory + memory // 4 + (64 << 20)
            resource.setrlimit(resource.RLIMIT_DATA, (ceiling, ceiling))
        if cpus:
            os.sched_setaffinity(0, cpus)
        os.umask(0o022)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    workdir = Path(orders["workdir"])
    started = time.time()
    if stop["signal"]:
        ExitRecord(exit_code=None, signal=stop["signal"], started_at=started, ended_at=started,
                   reason="cancelled before it started").write(rundir)
        return 0
    with (rundir / STDOUT_FILE).open("wb") as out, (rundir / STDERR_FILE).open("wb") as err:
        if user is not None:
            os.chown(rundir / STDOUT_FILE, user, group or user)
            os.chown(rundir / STDERR_FILE, user, group or user)
        try:
            child = subprocess.Popen(
                ["/bin/sh", str(rundir / SCRIPT_FILE)], cwd=workdir, env=orders["env"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                preexec_fn=prepare_child, user=user, group=group,
                extra_groups=[] if user is not None else None, close_fds=True)
        except OSError as e:
            ExitRecord(exit_code=None, reason=f"could not start the task: {e}").write(rundir)
            return 1
    deadline = started + float(orders["timeout_s"])
    try:  # wakes the moment the task exits, not at the next tick
        exit_fd: int | None = os.pidfd_open(child.pid)
    except (AttributeError, OSError):
        exit_fd = None
    timed_out = out_of_memory = False
    killing_since: float | None = None
    status: int | None = None
    while status is None:
        pid, raw, _ = os.wait4(child.pid, os.WNOHANG)
        if pid == child.pid:
            status = raw
            break
        now = time.time()
        if killing_since is None:
            if stop["signal"]:
                killing_since = now
            elif now >= deadline:
                timed_out, killing_since = True, now
            elif memory and cgroup is None and _tree_rss() > memory:
                out_of_memory, killing_since = True, now
                _signal_tree(signal.SIGKILL)
            if killing_since is not None and not out_of_memory:
                _signal_tree(signal.SIGTERM)
        elif now - killing_since >= GRACE_S:
            _signal_tree(signal.SIGKILL)
        tick = 0.02 if killing_since is not None else WATCH_S
        if exit_fd is not None:
            select.select([exit_fd], [], [], tick)
        else:
            time.sleep(tick)
    ended = time.time()
    # Whatever the task left running goes with it.
    _signal_tree(signal.SIGKILL)
    for _ in range(100):
        _reap()
        if not _descendants():
            break
        time.sleep(0.01)
    if cgroup is not None:
        out_of_memory = out_of_memory or cgroup.oom_killed()
        cgroup.remove()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = os.waitstatus_to_exitcode(status)
    reason = None
    if timed_out:
        reason = f"timed out after {orders['timeout_s']:g} s"
    elif out_of_memory:
        reason = f"killed: over its memory limit of {memory} bytes"
    elif stop["signal"]:
        reason = "cancelled"
    ExitRecord(
        exit_code=code if code >= 0 else None, signal=-code if code < 0 else None,
        timed_out=timed_out, out_of_memory=out_of_memory, started_at=started, ended_at=ended,
        cpu_s=used.ru_utime + used.ru_stime, max_rss_bytes=used.ru_maxrss * 1024,
        reason=reason).write(rundir)
    return 0


def standby() -> int:
    """Wait, already started, for the run directory of the next task on stdin (one line).

    The local backend keeps one supervisor waiting like this, so that starting a task costs a
    write to a pipe instead of an interpreter's start-up (tens of milliseconds). End of input
    (the agent stopped) ends it.
    """
    line = sys.stdin.readline().strip()
    if not line:
        return 0
    rundir = Path(line)
    log = os.open(rundir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 2)
    os.close(log)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return supervise(rundir)


def main() -> None:
    if sys.argv[1:] == ["--standby"]:
        sys.exit(standby())
    if len(sys.argv) != 2:
        print("usage: python -m computility.agent.supervisor RUNDIR | --standby",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(supervise(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
