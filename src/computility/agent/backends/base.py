"""What every execution backend offers the agent, and the files they share with it.

An agent turns each lease into a `TaskRun`: a run directory it prepared (the task's working
directory with the unpacked ``workdir``, and ``task.sh``, which runs ``setup`` then ``run``) and
the allocation the task may use. A backend starts it (`submit`, returning a handle the agent
persists), reports on it (`poll`), stops it (`cancel`), returns what it printed (`output`) and
forgets it (`release`). Handles are strings so that a restarted agent can re-adopt what the
previous one started: `poll` on a handle from an earlier agent process must work.

Backends write the task's stdout and stderr where `output` can read them and, when they can, the
exit status to ``status.json`` in the run directory (the wrapper's or supervisor's record, see
`ExitRecord`), so the outcome survives the agent and even the backend's own bookkeeping.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

Phase = Literal["queued", "running", "exited", "failed_to_start", "gone"]
"""queued: accepted, not started; running; exited: ran and ended (any exit code or signal);
failed_to_start: never ran (infrastructure's fault, re-placed for free); gone: the backend knows
nothing of the handle (and no status file says how it ended)."""

STATUS_FILE = "status.json"
STDOUT_FILE = "stdout"
STDERR_FILE = "stderr"
SCRIPT_FILE = "task.sh"


@dataclass(frozen=True)
class Allocation:
    """What the task may use on the site: counts always, concrete ids where the backend pins."""

    cpus: int
    memory_bytes: int | None = None
    accelerator: str | None = None  # catalogue device id, None for a CPU-only task
    accelerators: int = 0
    cpu_ids: tuple[int, ...] = ()  # cores to pin to (local backend); empty: no pinning
    device_ids: tuple[str, ...] = ()  # e.g. GPU indices for CUDA_VISIBLE_DEVICES


@dataclass(frozen=True)
class TaskRun:
    """One attempt as a backend sees it."""

    key: str  # unique per attempt on this agent, safe as a file or job name: "a123"
    attempt: int
    task: int
    rundir: Path  # holds task.sh, stdout, stderr, status.json; `workdir` inside it
    workdir: Path
    envs: Mapping[str, str]  # the complete environment of the task
    allocation: Allocation
    timeout_s: float
    name: str = ""


@dataclass(frozen=True)
class Usage:
    """Measured use of one attempt; None where this backend cannot measure it."""

    wall_s: float | None = None
    cpu_s: float | None = None
    max_rss_bytes: int | None = None
    device_s: float | None = None
    energy_j: float | None = None


@dataclass(frozen=True)
class Status:
    phase: Phase
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    out_of_memory: bool = False
    started_at: float | None = None
    ended_at: float | None = None
    usage: Usage = field(default_factory=Usage)
    reason: str | None = None

    @property
    def done(self) -> bool:
        return self.phase in ("exited", "failed_to_start", "gone")


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do and what it found to offer."""

    pins_cpus: bool = False  # sets the task's CPU affinity to `Allocation.cpu_ids`
    limits_memory: str = "none"  # "cgroup-v2", "rlimit-data", "scheduler" or "none"
    accelerators: bool = False
    measures: tuple[str, ...] = ()  # fields of `Usage` it fills
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExitRecord:
    """``status.json``: written once, atomically, by whatever waited for the task."""

    exit_code: int | None
    signal: int | None = None
    timed_out: bool = False
    out_of_memory: bool = False
    started_at: float | None = None
    ended_at: float | None = None
    cpu_s: float | None = None
    max_rss_bytes: int | None = None
    reason: str | None = None

    def write(self, rundir: Path) -> None:
        tmp = rundir / f".{STATUS_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(tmp, rundir / STATUS_FILE)

    @staticmethod
    def read(rundir: Path) -> ExitRecord | None:
        try:
            raw = json.loads((rundir / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        names = ExitRecord.__dataclass_fields__
        return ExitRecord(**{k: v for k, v in raw.items() if k in names})

    def status(self) -> Status:
        wall = (self.ended_at - self.started_at
                if self.started_at is not None and self.ended_at is not None else None)
        return Status("exited", exit_code=self.exit_code, signal=self.signal,
                      timed_out=self.timed_out, out_of_memory=self.out_of_memory,
                      started_at=self.started_at, ended_at=self.ended_at,
                      usage=Usage(wall_s=wall, cpu_s=self.cpu_s,
                                  max_rss_bytes=self.max_rss_bytes),
                      reason=self.reason)


def read_tail(path: Path, limit: int) -> bytes:
    """Up to `limit` bytes of `path` (its start; the agent uploads whole files up to a cap)."""
    try:
        with path.open("rb") as f:
            return f.read(limit)
    except OSError:
        return b""


class Backend(ABC):
    """One way of running tasks. Implementations register in `computility.agent.backends`."""

    name: ClassVar[str]

    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abstractmethod
    def submit(self, run: TaskRun) -> str:
        """Start `run`; returns the handle. Raises `BackendError` if it cannot be started."""

    @abstractmethod
    def poll(self, handle: str, run: TaskRun) -> Status: ...

    @abstractmethod
    def cancel(self, handle: str, run: TaskRun) -> None:
        """Stop the task and everything it started; `poll` then reports it exited by signal."""

    def output(self, handle: str, run: TaskRun, stream: str, limit: int) -> bytes:
        """What the task printed on `stream` ("stdout" or "stderr") so far, up to `limit` bytes."""
        return read_tail(run.rundir / (STDOUT_FILE if stream == "stdout" else STDERR_FILE), limit)

    def release(self, handle: str, run: TaskRun) -> None:
        """Forget a finished task (backend-side records; the agent removes the run directory)."""

    def close(self) -> None:
        """Release connections and helpers when the agent stops."""


class BackendError(Exception):
    """A backend could not do what was asked; the message says why, for the task's reason."""


def now() -> float:
    return time.time()
