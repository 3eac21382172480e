"""Tasks as Ray jobs, submitted over the Ray Jobs REST API with httpx (the agent never imports ray).

Each attempt is one job whose entrypoint is a small wrapper (`WRAPPER`, stdlib Python, written into
the run directory at submit) because Ray alone cannot keep our promises: a job's entrypoint
inherits the raylet's environment plus Ray's own variables, Ray has no timeout, its stop reaches
only the processes it sees when it stops, and its logs mix stdout and stderr. The wrapper
- starts ``/bin/sh task.sh`` in the work directory with exactly the task's environment (read from
  a 0600 spec file it then deletes, so no secret shows in Ray's job table or in ``ps``), plus the
  device-visibility variables Ray set for the job's accelerators (`VISIBILITY_VARS`);
- becomes a child subreaper, so a grandchild that called setsid stays its descendant;
- on SIGTERM (`cancel`, or Ray's stop) or at the timeout sends SIGTERM to the whole tree and
  SIGKILL to what is left after `GRACE_S`; kills whatever the task left behind when it ends;
- writes stdout, stderr and ``status.json`` (`ExitRecord`, atomically) into the run directory.

So the run directory must be on a filesystem shared by the agent and the Ray workers (true for a
head on the agent's host, otherwise NFS or similar at the same path), writable by the user Ray's
workers run as, and the workers need a Python 3 as ``python3`` on PATH (option ``python``). Jobs
submitted here are kept by the head only; what survives it is ``status.json``, which `poll`
prefers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

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
    read_tail,
)

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
WRAPPER_FILE = ".ray-wrapper.py"
SPEC_FILE = ".ray-spec.json"
STARTED_FILE = ".ray-started.json"  # the wrapper's pid and host: it ran, and whom cancel signals
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
GRACE_S = 1.0  # SIGTERM to SIGKILL, as the local supervisor
VISIBILITY_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
                   "ASCEND_RT_VISIBLE_DEVICES", "NEURON_RT_VISIBLE_CORES", "TPU_VISIBLE_CHIPS",
                   "ONEAPI_DEVICE_SELECTOR", "HABANA_VISIBLE_MODULES")
# Catalogue id -> the accelerator type Ray detects on a node (resource "accelerator_type:<type>").
ACCELERATOR_TYPES: dict[str, str] = {
    "K80": "K80", "P100-16GB": "P100", "T4": "T4", "V100-16GB": "V100", "V100-32GB": "V100",
    "A10": "A10", "A100-40GB": "A100", "A100-80GB": "A100", "H100-SXM": "H100",
    "H200-SXM": "H200", "L40S": "L40S", "ASCEND-910B": "Ascend910B",
}
# Catalogue id -> the Ray resource its count is asked as, where that is not GPUs.
ACCELERATOR_RESOURCES: dict[str, str] = {"ASCEND-910B": "NPU"}

WRAPPER = r'''
import ctypes, json, os, resource, signal, socket, sys, time
rundir = sys.argv[1]
def path(name): return os.path.join(rundir, name)
def descendants():
    kids = {}
    for name in os.listdir("/proc"):
        if not (name.isascii() and name.isdigit()): continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f: stat = f.read()
            kids.setdefault(int(stat[stat.rindex(b")") + 2:].split()[1]), []).append(int(name))
        except (ValueError, OSError): continue
    found, todo = [], [os.getpid()]
    while todo:
        for pid in kids.get(todo.pop(), ()): found.append(pid); todo.append(pid)
    return found
def reap(main, box):
    while True:
        try: pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError: return
        if pid == 0: return
        if pid == main: box.append(raw)
def signal_tree(sig):
    for pid in descendants():
        try: os.kill(pid, sig)
        except OSError: pass
def record(**fields):
    tmp = path(".%s.%d" % (STATUS_FILE, os.getpid()))
    with open(tmp, "w") as f: json.dump(fields, f)
    os.replace(tmp, path(STATUS_FILE))
stop = []
for s in (signal.SIGTERM, signal.SIGINT): signal.signal(s, lambda n, _f: stop.append(n))
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_SETMASK, [])  # Ray blocks SIGINT in its processes
try:  # whoever unlinks the spec first owns the attempt: this wrapper, or a cancel before it
    with open(path(SPEC_FILE)) as f: spec = json.load(f)
    os.unlink(path(SPEC_FILE))
except FileNotFoundError:
    sys.exit("cancelled before it started")
env = dict(spec["envs"])
env.update((k, os.environ[k]) for k in spec["passthrough"] if k in os.environ)
try: ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
except Exception: pass
with open(path(STARTED_FILE), "w") as f:
    json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
started = time.time()
def child():
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(s, signal.SIG_DFL)
    os.chdir(spec["workdir"])
    null = os.open(os.devnull, os.O_RDONLY); os.dup2(null, 0)
    for fd, name in ((1, STDOUT_FILE), (2, STDERR_FILE)):
        os.dup2(os.open(path(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.execve("/bin/sh", ["/bin/sh", path(SCRIPT_FILE)], env)
err_r, err_w = os.pipe()
main = os.fork()
if main == 0:
    os.close(err_r)
    try: child()
    except BaseException as e: os.write(err_w, str(e).encode()[:500])
    os._exit(127)
os.close(err_w)
box, failure = [], b""
while True:  # the pipe closes at exec (it is CLOEXEC) or carries the reason it failed
    chunk = os.read(err_r, 512)
    if not chunk: break
    failure += chunk
if failure:
    reap(main, box)
    record(exit_code=None, signal=None, reason="could not start the task: " + failure.decode())
    sys.exit(0)
deadline, timed_out, killing = started + float(spec["timeout_s"]), False, None
while not box:
    reap(main, box)
    now = time.time()
    if box: break
    if killing is None and (stop or now >= deadline):
        timed_out, killing = not stop, now
        signal_tree(signal.SIGTERM)
    elif killing is not None and now - killing >= GRACE_S:
        signal_tree(signal.SIGKILL)
    time.sleep(0.02 if killing is not None else 0.05)
ended = time.time()
for _ in range(500):  # what the task left behind goes with it
    signal_tree(signal.SIGKILL); reap(main, box)
    if not descendants(): break
    time.sleep(0.01)
used = resource.getrusage(resource.RUSAGE_CHILDREN)
raw = box[0]
code = os.WEXITSTATUS(raw) if os.WIFEXITED(raw) else None
sig = os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else None
why = ("timed out after %g s" % float(spec["timeout_s"]) if timed_out
       else "cancelled" if stop else None)
record(exit_code=code, signal=sig, timed_out=timed_out, out_of_memory=False, started_at=started,
       ended_at=ended, cpu_s=used.ru_utime + used.ru_stime, max_rss_bytes=used.ru_maxrss * 1024,
       reason=why)
sys.exit(code if code is not None else 128 + (sig or 0))
'''


def wrapper_source() -> str:
    """The wrapper with this module's file names and grace period filled in."""
    consts = {"STATUS_FILE": STATUS_FILE, "SPEC_FILE": SPEC_FILE, "STARTED_FILE": STARTED_FILE,
              "STDOUT_FILE": STDOUT_FILE, "STDERR_FILE": STDERR_FILE,
              "SCRIPT_FILE": SCRIPT_FILE, "GRACE_S": GRACE_S}
    head = "".join(f"{k} = {v!r}\n" for k, v in consts.items())
    return f"# Written by computility's ray backend; see its module docstring.\n{head}{WRAPPER}"


def new_submission_id(key: str) -> str:
    """Unique per submit: a resubmitted attempt must not collide with Ray's record of the last."""
    return f"computility-{key}-{secrets.token_hex(4)}"


def entrypoint(python: str, rundir: Path) -> str:
    """The job's shell command; `exec` so that Ray's stop signals the wrapper itself."""
    wrapper = shlex.quote(str(rundir / WRAPPER_FILE))
    return f"exec {shlex.quote(python)} -I {wrapper} {shlex.quote(str(rundir))}"


def task_spec(run: TaskRun) -> dict[str, Any]:
    return {"envs": dict(run.envs), "workdir": str(run.workdir.absolute()),
            "timeout_s": run.timeout_s, "passthrough": list(VISIBILITY_VARS)}


def prepare_rundir(run: TaskRun) -> None:
    """The wrapper and its spec (0600: the task's environment may hold secrets) in the run
    directory, and no outcome of an earlier submit of it."""
    rundir = run.rundir
    for stale in (STATUS_FILE, STARTED_FILE):
        (rundir / stale).unlink(missing_ok=True)
    (rundir / WRAPPER_FILE).write_text(wrapper_source(), encoding="utf-8")
    fd = os.open(rundir / SPEC_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(task_spec(run), f)


def submit_request(run: TaskRun, submission_id: str, command: str,
                   types: Mapping[str, str] = ACCELERATOR_TYPES,
                   resources: Mapping[str, str] = ACCELERATOR_RESOURCES) -> dict[str, Any]:
    """The POST /api/jobs/ body: the allocation as the entrypoint's Ray resources.

    Ray reserves these for scheduling only; it neither pins cores nor limits memory.
    """
    alloc = run.allocation
    body: dict[str, Any] = {
        "entrypoint": command, "submission_id": submission_id,
        "entrypoint_num_cpus": alloc.cpus,
        "metadata": {"computility_key": run.key, "task": str(run.task),
                     "attempt": str(run.attempt), "name": run.name},
    }
    if alloc.memory_bytes:
        body["entrypoint_memory"] = int(alloc.memory_bytes)
    extra: dict[str, float] = {}
    if alloc.accelerators > 0:
        device = alloc.accelerator or ""
        resource = resources.get(device, "GPU")
        if resource == "GPU":
            body["entrypoint_num_gpus"] = alloc.accelerators
        else:
            extra[resource] = float(alloc.accelerators)
        if device in types:
            extra[f"accelerator_type:{types[device]}"] = 0.001
    if extra:
        body["entrypoint_resources"] = extra
    return body


def job_status(info: Mapping[str, Any] | None, started: bool) -> Status:
    """A job's status as ours when no ``status.json`` says how it ended.

    `info` is GET /api/jobs/{id} (None: 404), `started` whether the wrapper left its mark. A job
    that ended without the wrapper's record either never ran (failed_to_start: Ray or the node
    could not start it) or lost its wrapper (exited, with what Ray knows).
    """
    if info is None:
        return Status("gone", reason="Ray knows no such job and no status.json says how it ended")
    state = str(info.get("status"))
    message = info.get("message") or None
    begun, ended = _seconds(info.get("start_time")), _seconds(info.get("end_time"))
    if state == "PENDING":
        return Status("queued", reason=message)
    if state not in TERMINAL:
        return Status("running", started_at=begun)
    code = info.get("driver_exit_code")
    if state == "STOPPED":
        return Status("exited", signal=int(signal.SIGTERM), started_at=begun, ended_at=ended,
                      reason="stopped by Ray" + ("" if started else " before it started"))
    if state == "SUCCEEDED":
        return Status("exited", exit_code=0, started_at=begun, ended_at=ended,
                      reason="no status.json: is the run directory shared with the Ray workers?")
    if not started:
        why = info.get("error_type") or "the entrypoint never started"
        return Status("failed_to_start", reason=f"{why}: {message}" if message else str(why))
    signum = code - 128 if isinstance(code, int) and 128 < code < 160 else None
    return Status("exited", exit_code=None if signum else code, signal=signum, started_at=begun,
                  ended_at=ended, reason=f"the wrapper left no status.json: {message}")


def _seconds(ms: object) -> float | None:
    return ms / 1000.0 if isinstance(ms, int | float) else None


class RayBackend(Backend):
    """Runs each attempt as one Ray job on the cluster whose dashboard is at `address`."""

    name = "ray"

    def __init__(self, address: str | None = None, python: str = "python3",
                 request_timeout_s: float = 10.0, cancel_wait_s: float = 5.0,
                 headers: Mapping[str, str] | None = None,
                 accelerator_types: Mapping[str, str] | None = None,
                 accelerator_resources: Mapping[str, str] | None = None) -> None:
        """`address`: the dashboard's URL (default $COMPUTILITY_RAY_ADDRESS, else a local head);
        `python`: the workers' interpreter for the wrapper; `headers`: e.g. an auth token;
        `accelerator_types`/`_resources`: additions to `ACCELERATOR_TYPES`/`_RESOURCES`."""
        self.address = (address or os.environ.get("COMPUTILITY_RAY_ADDRESS")
                        or DEFAULT_ADDRESS).rstrip("/")
        self.python = python
        self.cancel_wait_s = cancel_wait_s
        self.types = {**ACCELERATOR_TYPES, **(accelerator_types or {})}
        self.resources = {**ACCELERATOR_RESOURCES, **(accelerator_resources or {})}
        self._http = httpx.Client(base_url=self.address, timeout=request_timeout_s,
                                  headers=dict(headers or {}))

    def capabilities(self) -> Capabilities:
        return Capabilities(
            pins_cpus=False, limits_memory="scheduler", accelerators=True,
            measures=("wall_s", "cpu_s", "max_rss_bytes"),
            notes=(f"Ray Jobs API at {self.address}; run directories must be on a filesystem "
                   "shared with the Ray workers",
                   "cpus, memory and accelerators are Ray reservations, not enforced limits",
                   "tasks run as the user of the Ray workers"))

    def submit(self, run: TaskRun) -> str:
        rundir = run.rundir.absolute()
        if not (rundir / SCRIPT_FILE).is_file():
            raise BackendError(f"ray: no {SCRIPT_FILE} in {rundir}")
        prepare_rundir(run)
        sid = new_submission_id(run.key)
        body = submit_request(run, sid, entrypoint(self.python, rundir), self.types,
                              self.resources)
        try:
            resp = self._call("POST", "/api/jobs/", json=body)
            if resp.status_code != 200:
                raise BackendError(f"ray: the head refused job {sid}: HTTP {resp.status_code}: "
                                   f"{resp.text[:300]}")
        except BackendError:
            (rundir / SPEC_FILE).unlink(missing_ok=True)  # it holds the task's environment
            raise
        return sid

    def poll(self, handle: str, run: TaskRun) -> Status:
        record = ExitRecord.read(run.rundir)
        if record is None:
            info = self._job(handle)
            record = ExitRecord.read(run.rundir)  # it may have ended between the two reads
            if record is None:
                return job_status(info, (run.rundir / STARTED_FILE).exists())
        if record.exit_code is None and record.signal is None:
            return Status("failed_to_start", reason=record.reason)
        return record.status()

    def cancel(self, handle: str, run: TaskRun) -> None:
        """Ray's stop, and SIGTERM to the wrapper directly when it runs on this host (Ray's stop
        is asynchronous); then wait for the wrapper's record, so the tree is gone on return."""
        if ExitRecord.read(run.rundir) is not None:
            return
        failure: BackendError | None = None
        try:
            self._call("POST", f"/api/jobs/{handle}/stop")
        except BackendError as e:
            failure = e
        try:  # Ray cannot stop a job still waiting for resources: take its spec instead
            (run.rundir / SPEC_FILE).unlink()
        except FileNotFoundError:
            pass  # the wrapper has it: it runs, or ran
        else:
            ExitRecord(exit_code=None, signal=int(signal.SIGTERM),
                       reason="cancelled before it started").write(run.rundir)
            return
        signalled = self._signal_wrapper(run)
        if not signalled and failure is not None:
            raise failure
        deadline = time.monotonic() + self.cancel_wait_s
        next_ask = 0.0
        while time.monotonic() < deadline and not (run.rundir / STATUS_FILE).exists():
            # The wrapper may have taken its spec but not yet said where it runs.
            signalled = signalled or self._signal_wrapper(run)
            if time.monotonic() >= next_ask:
                next_ask = time.monotonic() + 0.5
                with contextlib.suppress(BackendError):
                    info = self._job(handle)
                    if info is None or info.get("status") in TERMINAL:
                        return
            time.sleep(0.02)

    def output(self, handle: str, run: TaskRun, stream: str, limit: int) -> bytes:
        """The wrapper's file; for stdout without one, Ray's log of the entrypoint instead."""
        path = run.rundir / (STDOUT_FILE if stream == "stdout" else STDERR_FILE)
        if path.exists() or stream != "stdout":
            return read_tail(path, limit)
        try:
            resp = self._call("GET", f"/api/jobs/{handle}/logs")
            logs = resp.json().get("logs", "") if resp.status_code == 200 else ""
        except (BackendError, ValueError):
            return b""
        return str(logs).encode()[:limit]

    def release(self, handle: str, run: TaskRun) -> None:
        """Delete the job's record from the head. Ray refuses (HTTP 500) until the job is
        terminal, which follows the wrapper's record within moments; a job cancelled while
        pending stays until Ray gives up starting it."""
        for _ in range(10):
            try:
                if self._call("DELETE", f"/api/jobs/{handle}").status_code in (200, 404):
                    return
                info = self._job(handle)
            except BackendError:
                return
            if info is None or info.get("status") == "PENDING":
                return
            time.sleep(0.2)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise BackendError(f"ray: {method} {self.address}{path}: {e}") from e

    def _job(self, handle: str) -> dict[str, Any] | None:
        resp = self._call("GET", f"/api/jobs/{handle}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise BackendError(f"ray: job {handle}: HTTP {resp.status_code}: {resp.text[:300]}")
        info: dict[str, Any] = resp.json()
        return info

    def _signal_wrapper(self, run: TaskRun) -> bool:
        """SIGTERM the wrapper if it runs on this host and is still the process it recorded."""
        try:
            mark = json.loads((run.rundir / STARTED_FILE).read_text(encoding="utf-8"))
            pid = int(mark["pid"])
            if mark.get("host") != socket.gethostname():
                return False
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(run.rundir.absolute() / WRAPPER_FILE).encode() not in cmdline:
                return False
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return True
