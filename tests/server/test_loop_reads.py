"""On PostgreSQL the API's hottest reads (a task's status, its log, a key) are awaited on the
event loop through psycopg's asyncio pool: they hold no thread, read what the engine reads, get
over connections the database ended, and a database that stops answering delays only them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import psycopg
import pytest
from sqlalchemy import event, insert
from sqlalchemy.engine import make_url

from computility.server.app import open_database
from computility.server.auth import Identity
from computility.server.db import schema as db
from computility.server.plane import ControlPlane
from computility.server.settings import Settings
from computility.server.store import tasks as store
from computility.server.store.files import visible_log
from computility.testing.controlplane import local_control_plane

OWNER = Identity(key_id="k", tenant="default", role="user", user_id=None, site=None)
STRANGER = Identity(key_id="s", tenant="other", role="user", user_id=None, site=None)


def _plane_with_a_task(tmp_path: Path, pg_url: str) -> tuple[ControlPlane, int]:
    settings = Settings(data_dir=tmp_path, db_url=pg_url)
    plane = ControlPlane(open_database(settings), settings)
    now = time.time()
    with plane.write() as conn:
        conn.execute(insert(db.tenants).values(id="default", created_at=now,
                                               budget_period="month"))
        task_id = conn.execute(insert(db.tasks).returning(db.tasks.c.id).values(
            tenant_id="default", spec={"run": "true", "env": {"A": "ü"}}, state="queued",
            submitted_at=now, updated_at=now, policy="cost", cpus=1, gpu_milli=0, run_s=1.0,
            timeout_s=60.0, retries=0, devices=["A100"], data_local=False)).scalar_one()
    return plane, task_id


def test_reads_on_postgresql_hold_no_thread_and_read_what_the_engine_reads(
    tmp_path: Path, pg_url: str,
) -> None:
    plane, task_id = _plane_with_a_task(tmp_path, pg_url)
    through_engine: list[str] = []
    event.listen(plane.engine, "before_cursor_execute",
                 lambda *args: through_engine.append(args[2]))
    expected = store.get(plane, OWNER, task_id)
    through_engine.clear()

    async def read_with_every_thread_taken() -> tuple[Any, ...]:
        assert plane.loop_reads is not None
        await plane.loop_reads.open()
        limiter = anyio.to_thread.current_default_thread_limiter()
        holders = [object() for _ in range(int(limiter.total_tokens))]
        for holder in holders:
            await limiter.acquire_on_behalf_of(holder)  # a read needing a thread would wait
        try:
            return await asyncio.wait_for(asyncio.gather(
                store.status(plane, OWNER, task_id), visible_log(plane, OWNER, task_id, "stdout"),
                store.visible_or_404(plane, OWNER, task_id)), 10)
        finally:
            for holder in holders:
                limiter.release_on_behalf_of(holder)
            await plane.loop_reads.close()

    status, log, visible = asyncio.run(read_with_every_thread_taken())
    assert status == expected
    assert [type(status[k]) for k in expected] == [type(v) for v in expected.values()]
    assert status["spec"]["env"] == {"A": "ü"} and status["devices"] == ["A100"]
    assert log == (None, None) and visible is None
    assert through_engine == []


def test_a_task_another_tenant_owns_is_not_found_through_the_loops_reads(
    tmp_path: Path, pg_url: str,
) -> None:
    plane, task_id = _plane_with_a_task(tmp_path, pg_url)

    async def reads() -> list[Any]:
        assert plane.loop_reads is not None
        await plane.loop_reads.open()
        try:
            outcomes: list[Any] = await asyncio.gather(
                store.status(plane, STRANGER, task_id),
                visible_log(plane, STRANGER, task_id, "stdout"),
                store.visible_or_404(plane, STRANGER, task_id),
                store.status(plane, OWNER, task_id + 1), return_exceptions=True)
            return outcomes
        finally:
            await plane.loop_reads.close()

    for outcome in asyncio.run(reads()):
        assert isinstance(outcome, Exception) and getattr(outcome, "status", None) == 404


class FreezableProxy:
    """A TCP relay to the database that can stop passing bytes on (a database that hangs:
    connections stay open, nothing is answered) and start again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed = True
        self.flowing.set()
        self.listener.close()


@pytest.fixture
def proxied_pg(pg_url: str) -> Iterator[tuple[str, FreezableProxy]]:
    url = make_url(pg_url)
    proxy = FreezableProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False), proxy
    finally:
        proxy.close()


def test_a_database_that_stops_answering_delays_only_the_reads_that_need_it(
    tmp_path: Path, proxied_pg: tuple[str, FreezableProxy],
) -> None:
    url, proxy = proxied_pg
    with local_control_plane(tmp_path, db_url=url) as service, service.client() as client:
        task_id = client.post("/api/v1/tasks", json={"run": "true"}).raise_for_status().json()["id"]
        assert client.get(f"/api/v1/tasks/{task_id}").status_code == 200
        answers: list[httpx.Response] = []
        proxy.flowing.clear()
        try:
            reader = threading.Thread(target=lambda: answers.append(
                client.get(f"/api/v1/tasks/{task_id}")))
            reader.start()
            with httpx.Client(base_url=service.url, timeout=2) as probe:
                for _ in range(5):
                    started = time.monotonic()
                    assert probe.get("/healthz").status_code == 200
                    assert time.monotonic() - started < 1.0
                    time.sleep(0.1)
            assert answers == []  # the status read is still waiting on the database
        finally:
            proxy.flowing.set()
        reader.join(30)
        assert [a.status_code for a in answers] == [200]
        assert answers[0].json()["id"] == task_id


def test_a_read_gets_over_connections_the_database_ended(tmp_path: Path, pg_url: str) -> None:
    with local_control_plane(tmp_path, db_url=pg_url) as service, service.client() as client:
        task_id = client.post("/api/v1/tasks", json={"run": "true"}).raise_for_status().json()["id"]
        for _ in range(3):
            assert client.get(f"/api/v1/tasks/{task_id}").status_code == 200
        with psycopg.connect(make_url(pg_url).set(drivername="postgresql").render_as_string(
                hide_password=False), autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
        assert ended is not None and ended[0] >= 1
        answer = client.get(f"/api/v1/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        assert client.get(f"/api/v1/tasks/{task_id}/logs").status_code == 200
