"""A list of ids is one parameter: the database sees one statement whatever the list's length.

Each distinct statement text is prepared again and, on SQLite, cached per connection (128 of
them); a query whose text grew with its list filled every connection's cache with statements
run once (`computility.server.db.among`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, select
from sqlalchemy.engine import Engine

from computility.server.db.among import among
from computility.server.db.engine import make_engine
from computility.testing.controlplane import FakeAgent, local_control_plane, new_tenant, wait_until

BACKGROUND = {"scheduling-loop", "validation-runner"}
"""Threads whose statements depend on timing, not on the requests."""
AWKWARD = ["NULL", "", 'say "hi"', "back\\slash", "a,b", "[1]", "电算-东数西算", " padded "]


@pytest.fixture
def table(db_url: str | None, tmp_path: Path) -> Iterator[tuple[Engine, Table]]:
    engine = make_engine(db_url or f"sqlite:///{tmp_path / 'among.db'}")
    meta = MetaData()
    rows = Table("rows", meta, Column("id", Integer, primary_key=True), Column("name", String(64)))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(rows.insert(), [{"id": i, "name": n} for i, n in enumerate(AWKWARD)])
        conn.execute(rows.insert(), [{"id": 100 + i, "name": f"n{i}"} for i in range(600)])
    try:
        yield engine, rows
    finally:
        engine.dispose()


def test_among_selects_exactly_the_listed_values_with_one_statement_text(
    table: tuple[Engine, Table],
) -> None:
    engine, rows = table
    texts = set()
    with engine.connect() as conn:
        for ids in ([], [3], [1, 5, 2], [1, 1, 999], list(range(100, 700))):
            query = select(rows.c.id).where(among(conn, rows.c.id, ids)).order_by(rows.c.id)
            texts.add(str(query.compile(dialect=conn.dialect)))
            assert conn.execute(query).scalars().all() == sorted(set(ids) - {999})
        for names in ([AWKWARD[0]], AWKWARD[1:], ["null", "x"]):
            query = select(rows.c.name).where(among(conn, rows.c.name, names))
            assert sorted(conn.execute(query).scalars()) == sorted(set(names) & set(AWKWARD))
    assert len(texts) == 1, texts


def test_heartbeats_and_leases_of_any_size_reuse_their_statements(
    db_url: str | None, tmp_path: Path,
) -> None:
    """After a lease of one task and a heartbeat of one attempt, leases and heartbeats of up to 8
    prepare no statement the database has not seen."""
    with local_control_plane(tmp_path / "data", db_url, cycle_s=0.1) as server:
        provider = new_tenant(server.client(), "provider-co", "provider")
        key = FakeAgent(server.url, provider, "site-a", {"cpu": ("EPYC-7763", 64)}).register().key
        agent = httpx.Client(base_url=server.url, timeout=60,
                             headers={"Authorization": f"Bearer {key}"})
        user = server.client(new_tenant(server.client(), "acme"))
        spec = {"run": "true", "resources": {"cpus": 1}}
        ids = [user.post("/api/v1/tasks", json=spec).json()["id"] for _ in range(15)]
        wait_until(lambda: all(user.get(f"/api/v1/tasks/{t}").json()["state"] == "queued"
                               for t in ids), timeout=20)
        seen: list[str] = []

        def record(*args: Any) -> None:
            if threading.current_thread().name not in BACKGROUND:  # the requests' statements
                seen.append(args[2])

        running: list[dict[str, Any]] = []

        def lease_and_beat(n: int) -> set[str]:
            del seen[:]
            r = agent.post("/api/v1/agent/lease",
                           json={"free": {"cpu": 64}, "wait_s": 0, "max_tasks": n})
            assert r.status_code == 200, r.text
            leases = r.json()["leases"]
            assert len(leases) == n
            running.extend({"attempt": x["attempt"], "token": x["token"]} for x in leases)
            r = agent.post("/api/v1/agent/heartbeat", json={"free": {"cpu": 64 - len(running)},
                                                            "running": running})
            assert r.status_code == 200, r.text
            return set(seen)

        event.listen(server.plane.engine, "before_cursor_execute", record)
        try:
            first = lease_and_beat(1)
            later = set().union(*(lease_and_beat(n) for n in (2, 5, 7)))
        finally:
            event.remove(server.plane.engine, "before_cursor_execute", record)
        assert len(running) == 15
        assert later <= first, sorted(later - first)
        agent.close()
        user.close()
