"""``/healthz`` answers 200 while the process serves; ``/readyz`` answers 200 only while the
database answers, its schema is the newest, the scheduling loop runs and the service is not
stopping, and otherwise 503 naming what is not ready.

The real control plane on 127.0.0.1, on SQLite and on PostgreSQL; the failures are real ones
(a dropped database, a schema behind the build, a stopped loop thread, a query that hangs).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from computility.server.app import begin_shutdown
from computility.server.db.engine import make_engine
from computility.server.observability import health
from computility.testing.controlplane import LocalControlPlane, local_control_plane, wait_until


def probe(server: LocalControlPlane, path: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=30)


def not_ready(server: LocalControlPlane) -> dict[str, Any]:
    r = probe(server, "/readyz")
    assert r.status_code == 503, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "not ready"
    return body


def drop_database(db_url: str) -> None:
    """Drop the test's PostgreSQL database under the running service (its sessions ended)."""
    server, name = db_url.rsplit("/", 1)
    admin = server.replace("postgresql+psycopg", "postgresql") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_both_probes_answer_200_when_all_is_well(service: LocalControlPlane) -> None:
    assert probe(service, "/healthz").json() == {"status": "ok"}
    r = probe(service, "/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {
        "database": "ok", "schema": "ok", "scheduling_loop": "ok"}}


def test_readyz_is_503_naming_the_database_when_it_is_gone(
    db_url: str | None, tmp_path: Path,
) -> None:
    with local_control_plane(tmp_path / "data", db_url, cycle_s=0.1) as server:
        assert probe(server, "/readyz").status_code == 200
        wait_until(lambda: "computility_scheduler_leader 1.0" in probe(server, "/metrics").text,
                   timeout=30)
        if db_url is None:  # the file can no longer be opened
            server.plane.engine.dispose()
            server.plane.engine = make_engine(f"sqlite:///{tmp_path / 'gone' / 'x.db'}")
        else:
            drop_database(db_url)
        body = not_ready(server)
        assert body["not_ready"] == ["database", "schema"]
        assert body["checks"]["database"].startswith("not answering")
        assert "unknown" in body["checks"]["schema"]
        assert probe(server, "/healthz").status_code == 200  # alive: do not restart it
        metrics = probe(server, "/metrics")
        assert metrics.status_code == 200  # the process's own metrics are still served
        assert "computility_database_up 0.0" in metrics.text
        if db_url is not None:
            # The replica that led no longer counts itself leader, whichever step of taking the
            # leadership again fails. (On SQLite the one process stays leader: its write
            # connection still holds the file.)
            wait_until(lambda: "computility_scheduler_leader 0.0" in
                       probe(server, "/metrics").text, timeout=30)


def test_readyz_is_503_naming_the_schema_when_the_database_is_behind_or_unmigrated(
    service: LocalControlPlane,
) -> None:
    with service.plane.write() as conn:
        head = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    body = not_ready(service)
    assert body["not_ready"] == ["schema"]
    assert body["checks"]["schema"].startswith(f"at revision 0001, this build needs {head}")
    with service.plane.write() as conn:
        conn.exec_driver_sql("DELETE FROM alembic_version")
    assert not_ready(service)["checks"]["schema"].startswith("at revision none")
    with service.plane.write() as conn:
        conn.exec_driver_sql(f"INSERT INTO alembic_version VALUES ('{head}')")
    assert probe(service, "/readyz").status_code == 200


def test_readyz_is_503_when_the_scheduling_loop_has_stopped_or_the_service_stops(
    service: LocalControlPlane,
) -> None:
    service.app.state.loop.stop()
    body = not_ready(service)
    assert body["not_ready"] == ["scheduling_loop"]
    assert body["checks"]["scheduling_loop"] == "its thread has stopped"
    begin_shutdown(service.app)
    assert not_ready(service)["not_ready"] == ["scheduling_loop", "shutdown"]


def test_a_hung_database_makes_readyz_503_in_time_with_one_query_in_flight(
    service: LocalControlPlane, monkeypatch: pytest.MonkeyPatch,
) -> None:
    readiness: health.Readiness = service.app.state.readiness
    answer = readiness._revision
    release = threading.Event()
    calls: list[int] = []

    def hung() -> str | None:
        calls.append(1)
        release.wait(30)
        return answer()

    monkeypatch.setattr(health, "READY_TIMEOUT_S", 0.3)
    monkeypatch.setattr(readiness, "_revision", hung)
    try:
        for _ in range(3):
            body = not_ready(service)
            assert body["checks"]["database"] == "no answer within 0.3 s"
        assert len(calls) == 1  # the probes waited on the same query, not on three threads
    finally:
        release.set()
    monkeypatch.setattr(readiness, "_revision", answer)
    assert probe(service, "/readyz").status_code == 200
