"""What the backup tests share: a database filled by a real control plane, fresh targets, and
every row of every table read back in a form that compares across SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import JSON, Engine, Text, cast, select

from computility.server.db import schema as db
from computility.server.db.engine import make_engine
from computility.testing.controlplane import FakeAgent, LocalControlPlane, new_tenant, wait_until

PG_SERVER = os.environ.get("COMPUTILITY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")

Rows = dict[str, list[tuple[Any, ...]]]


def dump(engine: Engine) -> Rows:
    """Every row of every table, ordered by primary key; JSON as its stored text."""
    out: Rows = {}
    with engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            columns = [cast(c, Text) if isinstance(c.type, JSON) else c for c in table.columns]
            order = list(table.primary_key.columns)
            out[table.name] = [tuple(r) for r in conn.execute(select(*columns).order_by(*order))]
    return out


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database's URL (dropped afterwards)."""
    import psycopg

    admin = psycopg.connect(PG_SERVER.replace("postgresql+psycopg", "postgresql") + "/postgres",
                            autocommit=True, connect_timeout=3)
    name = f"cu_backup_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def url_of(db_url: str | None, data_dir: Path) -> str:
    """The URL a control plane on (`db_url`, `data_dir`) uses."""
    return db_url or f"sqlite:///{data_dir / 'computility.db'}"


@dataclass
class Population:
    """What `populate` made, to check that it is all there after a restore."""

    user_key: str
    succeeded: list[int]
    failed: list[int]
    cancelled: list[int]
    running: list[int]
    waiting: list[int]


def populate(server: LocalControlPlane) -> Population:
    """Tasks in every state a network holds at once, through the real API and a fake site.

    Two short tasks succeed and one fails (both billed); four long ones run on the site's four
    cores (attempts with live leases); two more wait for a core, and one of them is cancelled.
    The site is stopped before returning, so its leases stay live but nothing changes any more.
    """
    admin = server.client()
    provider = new_tenant(admin, "acme", "provider")
    user = new_tenant(admin, "alice", "user", concurrent_cu_quota=500.0, budget=1000.0)
    agent = FakeAgent(server.url, provider, "east", {"cpu": ("EPYC-7763", 4)},
                      price_per_cu_hour=0.4, time_scale=0.001, heartbeat_s=0.5).start()
    try:
        c = server.client(user)
        assert c.post("/api/v1/uploads", content=b"a packed workdir").status_code == 201

        def submit(name: str, run_s: int, exit_code: int = 0) -> int:
            r = c.post("/api/v1/tasks", json={
                "name": name, "run": f"python {name}.py", "resources": {"cpus": 1},
                "envs": {"FAKE_RUN_S": str(run_s), "FAKE_EXIT": str(exit_code)}})
            assert r.status_code == 201, r.text
            task_id: int = r.json()["id"]
            return task_id

        succeeded = [submit("quick-1", 60), submit("quick-2", 90)]
        failed = [submit("broken", 30, exit_code=3)]
        wait_until(lambda: all(state(c, t) == "succeeded" for t in succeeded)
                   and state(c, failed[0]) == "failed", timeout=60)
        running = [submit(f"long-{i}", 10**7) for i in range(4)]
        wait_until(lambda: all(state(c, t) == "running" for t in running), timeout=60)
        waiting = [submit(f"wait-{i}", 60) for i in range(2)]
        assert c.post(f"/api/v1/tasks/{waiting[1]}/cancel").status_code == 200
        wait_until(lambda: state(c, waiting[1]) == "cancelled", timeout=30)
    finally:
        agent.stop()
    return Population(user, succeeded, failed, waiting[1:], running, waiting[:1])


def state(c: httpx.Client, task_id: int) -> str:
    found: str = c.get(f"/api/v1/tasks/{task_id}").json()["state"]
    return found


def check_populated(rows: Rows) -> None:
    """The dump holds what `populate` made: several states, live leases, ledger entries."""
    states = {r[db.tasks.c.keys().index("state")] for r in rows["tasks"]}
    assert {"succeeded", "failed", "running", "cancelled"} <= states, states
    expiry = db.attempts.c.keys().index("lease_expires_at")
    attempt_state = db.attempts.c.keys().index("state")
    live = [r for r in rows["attempts"] if r[attempt_state] == "running"
            and r[expiry] > time.time()]
    assert len(live) == 4, rows["attempts"]
    assert len(rows["ledger"]) >= 3
    assert rows["uploads"] and rows["api_keys"] and rows["pools"] and rows["leadership"]


def engine_for(url: str) -> Engine:
    return make_engine(url)
