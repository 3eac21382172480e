"""``computility up --workers N``: N processes answering on one port, each a replica of the plane.

One Python process runs its request handlers under one interpreter lock, so on a machine with
cores to spare it saturates one core long before the database is busy: under
`benchmarks/load.py` on PostgreSQL (300 requests/s on 2 cores), one process falls behind
without bound while two answer every request for 10 minutes with a p99 of 172 ms. Each worker
binds the port with ``SO_REUSEPORT`` and the kernel spreads new connections over them.

Each worker is a full replica, as in the operator guide's "PostgreSQL and several replicas": the
leader alone schedules, any replica serves the API and the agents, and a key revoked through one
stops working on the others within the key cache's few seconds. So several workers need
PostgreSQL; on SQLite one process is the only writer and stays one.

The process started (the first worker) bootstraps the database, writes the profile and runs the
local site. Once it answers it starts the others (``up --worker``: no local site, no spawning),
restarts one that exits, and stops them when it stops; a worker whose first worker dies, even by
SIGKILL, is stopped by the kernel (``PR_SET_PDEATHSIG``), so no orphan keeps the port.

The workers count their events (requests, submissions, scheduling) into one directory the first
makes (`shared_metrics`), so that ``/metrics`` on whichever worker a scrape reaches serves the
whole service's counts.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

from computility.domain.errors import UsageError
from computility.server.observability.metrics import (
    keep_metrics_in_process,
    share_metrics,
    shared_metrics_dir,
    worker_gone,
)

log = logging.getLogger("computility.up")

RESTART_AFTER_S = 1.0
"""A worker that exits is started again after this pause, doubled each time it exits again
soon after starting (up to `RESTART_AT_MOST_S`): one that keeps failing is retried less and
less often, not in a tight loop."""
RESTART_AT_MOST_S = 60.0
STEADY_S = 60.0
"""A worker that ran this long had started well: if it exits, the pause starts over."""
STOP_WAIT_S = 15.0


def check_workers(workers: int, db_url: str | None) -> None:
    """Refuse a worker count the database cannot take, before anything starts."""
    if workers < 1:
        raise UsageError(f"--workers: expected at least 1, got {workers}")
    if workers > 1 and not (db_url or "").startswith("postgresql"):
        raise UsageError("--workers: more than one worker needs PostgreSQL (--db "
                         "postgresql+psycopg://...): SQLite has one writer, one process")


def shared_port_socket(host: str, port: int, first: bool) -> socket.socket:
    """A listening socket on (host, port) that this service's other workers bind too
    (``SO_REUSEPORT``), each then receiving a share of the new connections.

    The `first` checks the port is free before sharing it: another service of the same user
    binding it with ``SO_REUSEPORT`` too would otherwise be given a share of the connections,
    where any other service is refused the port."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise UsageError(f"--host: cannot resolve '{host}' ({error})") from None

    def bound(reuse_port: bool) -> socket.socket:
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(address)
        except OSError as error:
            sock.close()
            raise UsageError(f"--port: cannot listen on {host}:{port} ({error.strerror})"
                             ) from None
        return sock

    if first:
        bound(reuse_port=False).close()
    sock = bound(reuse_port=True)
    sock.listen(2048)
    return sock


@contextlib.contextmanager
def shared_metrics(workers: int, worker: bool) -> Iterator[None]:
    """While the service runs, its workers count their events into one directory: a fresh one
    the first makes (and removes when it stops: counts live as long as the service; a first
    killed outright leaves it in the temporary directory), inherited by the others through the
    environment."""
    if worker:
        path = shared_metrics_dir()
        if path is not None:
            share_metrics(path)
        yield
        return
    if workers == 1:
        keep_metrics_in_process()
        yield
        return
    made = tempfile.mkdtemp(prefix="computility-metrics-")
    share_metrics(made)
    try:
        yield
    finally:
        shutil.rmtree(made, ignore_errors=True)


def restart_pause(last: float | None, lived_s: float) -> float:
    """How long to wait before starting an exited worker again, given the pause before its
    last start (None: it never exited before) and how long it then ran."""
    if last is None or lived_s >= STEADY_S:
        return RESTART_AFTER_S
    return min(2 * last, RESTART_AT_MOST_S)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not glibc: workers outlive a killed first worker
        return None


PR_SET_PDEATHSIG = 1


def _die_with_parent(libc: ctypes.CDLL | None) -> Callable[[], None]:
    """What the child runs before `exec`: SIGTERM to it when the thread that started it ends
    (libc loaded beforehand, so the forked child only makes the one call)."""
    def run() -> None:
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return run


class Workers:
    """The other workers of a first worker: started, restarted when they exit, stopped."""

    def __init__(self, count: int, argv: list[str]) -> None:
        self.count, self.argv = count, argv
        """`argv`: the ``up`` arguments every other worker runs with (``--worker`` added)."""
        self.procs: list[subprocess.Popen[bytes]] = []
        self._born: list[float] = []
        self._pause: list[float | None] = [None] * (count - 1)
        self._due: dict[int, float] = {}
        """Workers (by index) that exited, and when each is to be started again."""
        self._stopping = threading.Event()
        self._ready: Callable[[], bool] = lambda: True
        self._lock = threading.Lock()
        self._pdeathsig = _die_with_parent(_libc())
        self._thread = threading.Thread(target=self._watch, name="workers", daemon=True)

    def _spawn(self, n: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if env.get("COMPUTILITY_REPLICA"):  # a replica's name is its own
            env["COMPUTILITY_REPLICA"] += f"/worker-{n}"
        # A session of its own: a Ctrl-C at the terminal reaches the first only, which stops the
        # others in order rather than watching them exit and starting them again.
        return subprocess.Popen([sys.executable, "-m", "computility", "up", *self.argv,
                                 "--worker"], env=env, preexec_fn=self._pdeathsig,
                                start_new_session=True)

    def start(self, ready: Callable[[], bool]) -> Workers:
        """Start the others once `ready()` (the first answers: the database is bootstrapped)."""
        self._ready = ready
        self._thread.start()
        return self

    def _watch(self) -> None:
        # One long-lived thread spawns every worker: the kernel's parent-death signal follows
        # the thread that forked, not the process.
        while not self._ready():
            if self._stopping.wait(0.05):
                return
        with self._lock:
            if self._stopping.is_set():
                return
            self.procs = [self._spawn(n) for n in range(1, self.count)]
            self._born = [time.monotonic()] * len(self.procs)
        log.info("started %d more workers (pids %s)", self.count - 1,
                 ", ".join(str(p.pid) for p in self.procs))
        while not self._stopping.wait(0.5):
            with self._lock:
                for i, proc in enumerate(self.procs):
                    if self._stopping.is_set():
                        break
                    self._tend(i, proc, time.monotonic())

    def _tend(self, i: int, proc: subprocess.Popen[bytes], now: float) -> None:
        """Start worker `i` again if its pause is over, or notice that it exited."""
        due = self._due.get(i)
        if due is not None:
            if now >= due:
                del self._due[i]
                self.procs[i], self._born[i] = self._spawn(i + 1), now
            return
        code = proc.poll()
        if code is None:
            return
        worker_gone(proc.pid)
        pause = self._pause[i] = restart_pause(self._pause[i], now - self._born[i])
        log.error("worker %d exited with %d; starting it again in %.0f s", proc.pid, code, pause)
        self._due[i] = now + pause

    def stopping(self) -> None:
        """The first is stopping: start no worker again from now on."""
        self._stopping.set()

    def stop(self) -> None:
        """SIGTERM to each (a graceful stop, as for the first), SIGKILL to any still there."""
        self._stopping.set()
        with self._lock:
            procs = list(self.procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + STOP_WAIT_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
