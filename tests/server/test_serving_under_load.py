"""What keeps the service quick when hundreds of users poll it at once (`benchmarks/load.py`
measures the whole): a task's status is one indexed read, SQLite writers queue in the process
rather than in SQLite's busy handler, reads on SQLite skip the thread hop, scheduling cycles
keep to their share of the time, a few threads serve blocking handlers, an idle client
connection is kept longer than clients keep theirs, and a serving process's heap is tuned for a
long life."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event, insert, select

from computility.domain.errors import UsageError
from computility.server.app import open_database
from computility.server.db import schema as db
from computility.server.heap import ARENAS
from computility.server.plane import ControlPlane
from computility.server.scheduling import MAX_CYCLE_SHARE, cycle_period
from computility.server.settings import KEEP_ALIVE_S, Settings, from_environment
from computility.server.store.tasks import _GET
from computility.testing.controlplane import local_control_plane


def test_a_tasks_status_reads_its_bill_through_the_ledgers_task_index(tmp_path: Path) -> None:
    # Without the index each status read scanned the whole ledger: slower as the ledger grew.
    engine = open_database(Settings(data_dir=tmp_path))
    for (figures, tenant), statement in _GET.items():
        compiled = statement.compile(engine)
        params = {"task_id": 1, "tenant": "t"} if tenant else {"task_id": 1}
        with engine.connect() as conn:
            plan = " | ".join(str(row[-1]) for row in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.construct_params(params).values()),
            ))
        assert "SCAN" not in plan, plan
        if figures:
            assert "ix_ledger_task" in plan, plan


def _plane_without_busy_waiting(tmp_path: Path) -> ControlPlane:
    engine = open_database(Settings(data_dir=tmp_path))
    engine.dispose()

    @event.listens_for(engine, "connect")
    def _no_busy_wait(conn: object, _record: object) -> None:
        cur = conn.cursor()  # type: ignore[attr-defined]
        cur.execute("PRAGMA busy_timeout=0")  # a second writer would fail at once
        cur.close()

    return ControlPlane(engine, Settings(data_dir=tmp_path))


def test_sqlite_writers_in_one_process_queue_for_the_write_lock_instead_of_failing(
    tmp_path: Path,
) -> None:
    plane = _plane_without_busy_waiting(tmp_path)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with plane.write() as conn:
                conn.execute(insert(db.tenants).values(id=f"t{n}", created_at=0.0))
                time.sleep(0.01)  # hold the lock while the others arrive
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with plane.engine.connect() as conn:
        made = set(conn.execute(select(db.tenants.c.id)).scalars())
    assert {f"t{n}" for n in range(12)} <= made


def test_reads_run_on_the_event_loops_thread_on_sqlite(tmp_path: Path) -> None:
    # An in-process read takes less time than a hop to a worker thread and back.
    plane = ControlPlane(open_database(Settings(data_dir=tmp_path)), Settings(data_dir=tmp_path))
    threads: list[int] = []
    event.listen(plane.engine, "before_cursor_execute",
                 lambda *_: threads.append(threading.get_ident()))
    assert asyncio.run(plane.one(select(db.tenants.c.id), {})) is None
    assert threads and set(threads) == {threading.get_ident()}


def test_scheduling_cycles_keep_to_their_share_of_the_loops_time() -> None:
    # A cycle of 0.1 s is followed by the next no sooner than 0.3 s after it began...
    assert cycle_period(0.1, busy=False, gap=0.1) == pytest.approx(0.1 / MAX_CYCLE_SHARE)
    # ...a quick cycle after a quiet spell by the next almost at once...
    assert cycle_period(0.001, busy=False, gap=0.1) < 0.01
    # ...and in a burst of wake-ups by the gap at least.
    assert cycle_period(0.001, busy=True, gap=0.1) == 0.1


def test_request_threads_are_few_by_default_and_can_be_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = open_database(Settings(data_dir=tmp_path))
    assert Settings().threads_for(engine) == 4
    assert Settings(request_threads=2).threads_for(engine) == 2
    monkeypatch.setenv("COMPUTILITY_REQUEST_THREADS", "6")
    assert from_environment().threads_for(engine) == 6
    monkeypatch.setenv("COMPUTILITY_REQUEST_THREADS", "many")
    with pytest.raises(UsageError, match="COMPUTILITY_REQUEST_THREADS: expected a whole number"):
        from_environment()


def _get(sock: socket.socket, key: str) -> bytes:
    sock.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer " + key.encode() + b"\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\r\n")[0]


def test_an_idle_connection_is_kept_longer_than_clients_keep_theirs(tmp_path: Path) -> None:
    # httpx's clients drop idle connections after 5 s: a server that dropped them at 5 s too
    # would now and then close one just as a client sent a request on it (a reset request).
    assert KEEP_ALIVE_S > 15
    with local_control_plane(tmp_path / "data") as service:
        port = int(service.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            assert _get(sock, service.admin_key).startswith(b"HTTP/1.1 200")
            time.sleep(6)
            assert _get(sock, service.admin_key).startswith(b"HTTP/1.1 200")


ARENA_COUNT = """
import ctypes, gc, tempfile, threading
from computility.server.heap import tune_for_serving
assert gc.get_freeze_count() == 0
tune_for_serving()
frozen = gc.get_freeze_count()

def allocate():
    for _ in range(20000):
        [bytearray(200) for _ in range(50)]

threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
path = tempfile.mktemp()
out = ctypes.c_void_p(libc.fopen(path.encode(), b"w"))
libc.malloc_info(0, out)
libc.fclose(out)
print(frozen, open(path).read().count("<heap nr="))
"""


def test_a_serving_process_freezes_its_start_up_heap_and_caps_its_arenas() -> None:
    # In a fresh interpreter: this tuning is for a process that serves only the plane, and a
    # test process builds and drops planes by the dozen. Eight threads allocating at once get
    # seven to nine arenas from glibc untuned.
    done = subprocess.run([sys.executable, "-c", ARENA_COUNT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    frozen, arenas = map(int, done.stdout.split())
    assert frozen > 1000  # the modules and objects built before serving
    assert arenas <= ARENAS
