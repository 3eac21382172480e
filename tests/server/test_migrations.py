"""Migrations upgrade a database that already holds data, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text

from computility.server.db import schema as db
from computility.server.db.engine import alembic_config, current_revision, make_engine, upgrade
from computility.server.plane import ControlPlane
from computility.server.scheduling import Pending
from computility.server.settings import Settings

SITE = ("INSERT INTO sites (id, owner_tenant_id, region, lat, lon, backend, pue, "
        "electricity_price_micro, carbon_kg_per_kwh, registered_at, online, version) VALUES "
        "('old-site', 'acme', 'ZJK', 41.0, 114.9, 'fake', 1.3, 500000, 0.5, 1.0, true, 1)")
POOL = ("INSERT INTO pools (site_id, pool_id, position, device, count, devices_per_node, "
        "price_micro_per_cu_hour, free_units) VALUES ('old-site', 'cpu', 0, 'EPYC-7763', 8, 1, "
        "500000, 8)")
TASK = ("INSERT INTO tasks (tenant_id, spec, state, version, submitted_at, updated_at, policy, "
        "cpus, gpu_milli, run_s, timeout_s, precision, retries, user_failures, infra_failures, "
        "cancel_requested) VALUES ('acme', '{\"run\": \"true\"}', 'pending', 1, 1.0, 1.0, "
        "'balanced', 1, 0, 60.0, 3600.0, 'fp32', 0, 0, 0, false)")
ATTEMPT = ("INSERT INTO attempts (task_id, number, site_id, pool_id, units, state, token, "
           "leased_at, lease_expires_at, gb_moved, duplicates) SELECT id, 1, 'old-site', 'cpu', "
           "1, 'lost', 7, 1.0, 2.0, 0.0, 0 FROM tasks")


def head_revision() -> str:
    """The newest migration (later revisions upgrade the same rows further)."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def _migrate(url: str, revision: str, down: bool = False) -> None:
    engine = make_engine(url)
    config = alembic_config(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)
    engine.dispose()


def _old_database(url: str, revision: str) -> Engine:
    """A database at `revision` holding a tenant, a site, its pool, a task and an attempt.

    Rows that refer to sites and tasks: a migration that copied those tables could not drop the
    originals under them.
    """
    _migrate(url, revision)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants (id, created_at, budget_period) "
                          "VALUES ('acme', 1.0, 'month')"))
        for statement in (SITE, POOL, TASK, ATTEMPT):
            conn.execute(text(statement))
    return engine


def test_upgrading_to_0003_keeps_sites_and_tasks_that_hold_and_read_no_dataset(
    db_url: str | None, tmp_path: Path,
) -> None:
    url = db_url or f"sqlite:///{tmp_path / 'old.db'}"
    engine = _old_database(url, "0002")
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            site = conn.execute(select(db.sites.c.datasets)).one()
            task = conn.execute(select(db.tasks.c.dataset, db.tasks.c.data_local)).one()
            pending = Pending.read(conn)
        assert site.datasets is None
        assert (task.dataset, bool(task.data_local)) == (None, False)
        assert (pending.dataset, pending.data_local) == ([None], [False])
        plane = ControlPlane(engine, Settings(db_url=url, data_dir=tmp_path, run_loop=False))
        live = plane.live()
        assert [s.id for s in live.sites] == ["old-site"] and live.network.datasets == ()
    finally:
        engine.dispose()
    # And back: the downgrade drops the new columns, and upgrading again restores them.
    _migrate(url, "0002", down=True)
    _migrate(url, "head")
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(select(db.tasks.c.data_local)).scalar_one() in (False, 0)
    finally:
        engine.dispose()


def test_upgrading_to_0004_keeps_tasks_without_a_deadline_or_a_hold(
    db_url: str | None, tmp_path: Path,
) -> None:
    url = db_url or f"sqlite:///{tmp_path / 'old.db'}"
    engine = _old_database(url, "0003")
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            task = conn.execute(select(db.tasks.c.deadline_at, db.tasks.c.not_before)).one()
            pending = Pending.read(conn)
        assert tuple(task) == (None, None)
        assert (pending.deadline_at, pending.not_before) == ([None], [None])
        assert pending.holding(1e12) == set()
    finally:
        engine.dispose()
    _migrate(url, "0003", down=True)
    _migrate(url, "head")
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(select(db.tasks.c.not_before)).scalar_one() is None
    finally:
        engine.dispose()


def test_upgrading_to_0005_adds_the_dashboards_tables_and_keeps_every_row(
    db_url: str | None, tmp_path: Path,
) -> None:
    url = db_url or f"sqlite:///{tmp_path / 'old.db'}"
    engine = _old_database(url, "0004")
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(select(db.tasks.c.id)).all() and \
                conn.execute(select(db.attempts.c.id)).all()
            for table in (db.web_sessions, db.samples, db.validation_runs):
                assert conn.execute(select(table)).all() == []
    finally:
        engine.dispose()
    _migrate(url, "0004", down=True)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            assert not names & {"web_sessions", "samples", "validation_runs"}
            assert conn.execute(select(db.tasks.c.id)).all()
    finally:
        engine.dispose()


def test_upgrading_to_0006_adds_an_empty_audit_log_and_keeps_every_row(
    db_url: str | None, tmp_path: Path,
) -> None:
    url = db_url or f"sqlite:///{tmp_path / 'old.db'}"
    engine = _old_database(url, "0005")
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.begin() as conn:
            assert conn.execute(select(db.tasks.c.id)).all() and \
                conn.execute(select(db.attempts.c.id)).all()
            assert conn.execute(select(db.audit_events)).all() == []
            conn.execute(db.audit_events.insert().values(
                at=1.0, action="tenant.create", target="tenant:acme", tenant="acme",
                detail={"budget": None}))
            assert conn.execute(select(db.audit_events.c.detail)).scalar_one() == {"budget": None}
    finally:
        engine.dispose()
    _migrate(url, "0005", down=True)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert "audit_events" not in set(inspect(conn).get_table_names())
            assert conn.execute(select(db.tasks.c.id)).all()
    finally:
        engine.dispose()
    _migrate(url, "head")
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
