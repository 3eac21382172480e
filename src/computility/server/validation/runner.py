"""The runner: starts queued validation runs in worker processes, follows them, stops them.

Each replica runs at most `MAX_RUNNING` simulations at once (each takes a CPU core for
minutes); the rest wait in the table, oldest first, for whichever replica has a free slot. A run
is one child process (``python -m computility.sim.worker``) in its own process group: its JSON
lines (progress, then the result or an error) are read by a thread of this runner, which writes
them to the run's row, so the worker needs no database access and the service no simulator.

Cancelling kills the worker's process group at once (SIGKILL: a replay has nothing to save). A
cancel made on another replica is seen here within `POLL_S` and kills the worker too. A graceful
stop kills this replica's workers and puts their runs back in the queue, to start over; a crash
leaves them ``running``, and the next start fails them (`runs.fail_orphans`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from computility.server.auth import Identity
from computility.server.plane import ControlPlane
from computility.server.validation import runs
from computility.server.validation.choices import uploads_dir, worker_command

log = logging.getLogger("computility.validation")

MAX_RUNNING = 2
"""Simulations at once per replica; the rest are queued."""
POLL_S = 1.0
"""How often the runner looks for queued runs and for cancels made elsewhere."""
WORKER_DIED = "the simulation worker stopped unexpectedly"
NO_ANSWER = "the simulation worker gave no result"
WORKER_FAILED = "the simulation failed unexpectedly; the service log has the details"
"""The worker's own message for a failure that is not the input's fault (its traceback is on
stderr, which the service's log receives)."""


@dataclass
class _Child:
    run_id: int
    proc: subprocess.Popen[str]
    shown_as: tuple[str, str] | None  # (stored path, name the operator gave it)
    killed: bool = False

    @property
    def upload(self) -> Path | None:
        """The uploaded trace this run reads, deleted when the run ends."""
        return Path(self.shown_as[0]) if self.shown_as is not None else None


def worker_request(row: dict[str, Any], data_dir: Path) -> tuple[dict[str, Any],
                                                                 tuple[str, str] | None]:
    """The worker's ``run`` request for a claimed row, and the upload's (path, shown name)."""
    options = dict(row["options"] or {})
    trace, shown = str(options.get("trace") or ""), None
    if options.get("upload"):
        path = uploads_dir(data_dir) / str(options["upload"])
        trace = str(path)
        shown = (trace, str(options.get("upload_name") or "trace"))
    request = {"command": "run", "trace": trace, "synthetic": options.get("synthetic"),
               "fmt": options.get("fmt") or "auto", "limit": options.get("limit"),
               "network": row["network"], "policies": list(row["policies"]),
               "queue": options.get("queue") or "easy", "seed": options.get("seed") or 0}
    return request, shown


class ValidationRunner:
    """One per control plane process; `start` on startup, `stop` on shutdown."""

    def __init__(self, plane: ControlPlane, slots: int = MAX_RUNNING) -> None:
        self.plane = plane
        self.slots = slots
        self._children: dict[int, _Child] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        failed = runs.fail_orphans(self.plane)
        if failed:
            log.warning("validation runs %s were running when the service stopped: failed",
                        failed)
        self._thread = threading.Thread(target=self._loop, name="validation-runner",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            children = list(self._children.values())
        try:
            runs.requeue(self.plane, [c.run_id for c in children])
        except Exception:
            log.exception("could not requeue the validation runs of this replica")
        for child in children:
            self._kill(child)

    def wake(self) -> None:
        """A run was queued: look now rather than at the next poll."""
        self._wake.set()

    def running_here(self) -> list[int]:
        """The runs whose worker is alive in this replica."""
        with self._lock:
            return self._live()

    def _live(self) -> list[int]:
        return sorted(i for i, c in self._children.items() if not c.killed)

    # ------------------------------------------------------------------ cancel

    def cancel(self, run_id: int, who: Identity | None = None) -> bool:
        """Cancel a queued or running run; its worker, if here, is killed before this returns.
        `who`: the operator asking, for the audit log."""
        changed = runs.cancel(self.plane, run_id, who)
        with self._lock:
            child = self._children.get(run_id)
        if child is not None:
            self._kill(child)
        return changed

    def _kill(self, child: _Child) -> None:
        child.killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        try:
            child.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("validation worker %s did not exit after SIGKILL", child.proc.pid)

    # ------------------------------------------------------------------ dispatching

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._kill_cancelled()
                while not self._stopping.is_set() and self._start_one():
                    pass
            except Exception:
                log.exception("validation runner cycle failed")
            self._wake.wait(POLL_S)
            self._wake.clear()

    def _start_one(self) -> bool:
        """Claim and start the oldest queued run if a slot is free; whether one was started.

        Claim and start happen under the lock, so a cancel that comes between them finds the
        worker registered and kills it before returning.
        """
        with self._lock:
            if len(self._live()) >= self.slots:
                return False
            row = runs.claim_next(self.plane)
            if row is None:
                return False
            self._spawn(row)
            return True

    def _kill_cancelled(self) -> None:
        """Kill workers whose run was cancelled (or otherwise ended) by another replica."""
        mine = self.running_here()
        states = runs.states_of(self.plane, mine)
        for run_id in mine:
            if states.get(run_id, runs.CANCELLED) != runs.RUNNING:
                with self._lock:
                    child = self._children.get(run_id)
                if child is not None:
                    self._kill(child)

    def _spawn(self, row: dict[str, Any]) -> None:
        """Start the worker of a claimed run (called with the lock held)."""
        run_id = int(row["id"])
        request, shown = worker_request(row, self.plane.settings.data_dir)
        try:
            proc = subprocess.Popen(worker_command(), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, start_new_session=True,
                                    close_fds=True)
        except OSError as error:
            log.error("cannot start a validation worker: %s", error)
            runs.finish(self.plane, run_id, runs.FAILED, message=WORKER_DIED)
            return
        child = _Child(run_id, proc, shown)
        self._children[run_id] = child  # the caller holds the lock
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(request))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        if not runs.set_running(self.plane, run_id, pid=proc.pid):
            self._kill(child)  # cancelled between the claim and the start
        threading.Thread(target=self._follow, args=(child,), name=f"validation-{run_id}",
                         daemon=True).start()

    def _follow(self, child: _Child) -> None:
        """Copy the worker's progress to the row, then its result or error; always reap it."""
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        assert child.proc.stdout is not None
        try:
            for line in child.proc.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                event = message.get("event")
                if event == "progress" and not child.killed:
                    still = runs.set_running(self.plane, child.run_id,
                                             progress=float(message["progress"]),
                                             message=str(message.get("message") or ""))
                    if not still:
                        self._kill(child)
                elif event == "result":
                    result = message.get("result")
                elif event == "error":
                    error = message
        except Exception:
            log.exception("following validation run %s failed", child.run_id)
        code = child.proc.wait()
        with self._lock:
            self._children.pop(child.run_id, None)
        try:
            self._record(child, code, result, error)
        except Exception:
            log.exception("could not record the end of validation run %s", child.run_id)
        self._wake.set()

    def _record(self, child: _Child, code: int, result: dict[str, Any] | None,
                error: dict[str, Any] | None) -> None:
        if self._stopping.is_set():
            return  # requeued by `stop`: it runs again, on its upload if it has one
        if child.upload is not None:
            child.upload.unlink(missing_ok=True)  # the run has ended: its trace is not needed
        if child.killed:
            return  # cancelled (the row says so already)
        if result is not None and code == 0:
            runs.finish(self.plane, child.run_id, runs.DONE, result=result)
            return
        if error is not None:
            message = str(error.get("message") or NO_ANSWER)
            if child.shown_as is not None:
                message = message.replace(*child.shown_as)
        else:
            log.error("validation worker of run %s exited with code %s and no answer",
                      child.run_id, code)
            message = WORKER_DIED
        runs.finish(self.plane, child.run_id, runs.FAILED, message=message)
