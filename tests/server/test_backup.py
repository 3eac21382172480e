"""A database backup restores every row of every table, on SQLite and PostgreSQL and across them.

The source is filled by a real control plane (tasks succeeded, failed, cancelled, running on
live leases, waiting; ledger entries; keys; an upload), backed up, restored into a fresh
database, and every row of every table compared exactly. The restored database serves. Every
refusal leaves its target exactly as it was.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from backup_harness import (
    Population,
    check_populated,
    dump,
    engine_for,
    pg_database,
    populate,
    url_of,
)
from sqlalchemy import Engine, text

from computility.domain.errors import UsageError
from computility.server.db import schema as db
from computility.server.db.backup import backup, head_revision, read_info, restore
from computility.server.db.engine import alembic_config, current_revision, make_engine, upgrade
from computility.testing.controlplane import (
    FakeAgent,
    local_control_plane,
    new_tenant,
    wait_until,
)


def _filled(db_url: str | None, data_dir: Path) -> tuple[Engine, Population]:
    """A database filled by `populate`, the service stopped afterwards."""
    with local_control_plane(data_dir, db_url, cycle_s=0.1) as server:
        made = populate(server)
    return engine_for(url_of(db_url, data_dir)), made


def _round_trip(source: Engine, file: Path, target_url: str) -> Engine:
    backup(source, file)
    target = make_engine(target_url)
    restore(file, target)
    return target


def test_a_backup_restored_into_an_empty_database_holds_every_row_of_every_table(
    db_url: str | None, tmp_path: Path,
) -> None:
    source, _ = _filled(db_url, tmp_path / "source")
    rows = dump(source)
    check_populated(rows)
    file = tmp_path / "net.backup"
    summary = backup(source, file)
    assert summary.rows == {name: len(found) for name, found in rows.items()}
    assert read_info(file).rows == summary.rows
    assert read_info(file).source == source.dialect.name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".net.backup")]
    if db_url is None:
        target = make_engine(f"sqlite:///{tmp_path / 'restored.db'}")
        assert restore(file, target).rows == summary.rows
        assert dump(target) == rows
        return
    with pg_database() as target_url:
        target = make_engine(target_url)
        assert restore(file, target).rows == summary.rows
        assert dump(target) == rows
        target.dispose()


def test_a_backup_moves_a_network_from_sqlite_to_postgresql_and_back(tmp_path: Path) -> None:
    sqlite_source, _ = _filled(None, tmp_path / "sqlite")
    rows = dump(sqlite_source)
    check_populated(rows)
    with pg_database() as pg_url:
        pg = _round_trip(sqlite_source, tmp_path / "from-sqlite.backup", pg_url)
        assert dump(pg) == rows
        back = _round_trip(pg, tmp_path / "from-pg.backup",
                           f"sqlite:///{tmp_path / 'back.db'}")
        assert read_info(tmp_path / "from-pg.backup").source == "postgresql"
        assert dump(back) == rows
        pg.dispose()


def test_a_postgresql_backup_restores_into_sqlite_and_back(tmp_path: Path) -> None:
    with pg_database() as pg_url:
        pg_source, _ = _filled(pg_url, tmp_path / "pg")
        rows = dump(pg_source)
        check_populated(rows)
        lite = _round_trip(pg_source, tmp_path / "a.backup", f"sqlite:///{tmp_path / 'l.db'}")
        assert dump(lite) == rows
        pg_source.dispose()
        with pg_database() as again_url:
            again = _round_trip(lite, tmp_path / "b.backup", again_url)
            assert dump(again) == rows
            again.dispose()


def test_the_restored_database_serves_and_new_task_ids_continue_after_the_old_ones(
    db_url: str | None, tmp_path: Path,
) -> None:
    source, made = _filled(db_url, tmp_path / "source")
    ids = made.succeeded + made.failed + made.cancelled + made.running + made.waiting
    file = tmp_path / "net.backup"
    backup(source, file)
    before = dump(source)
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    with pg_database() if db_url else nullcontext() as target_url:
        restore(file, make_engine(url_of(target_url, restored_dir)))
        with local_control_plane(restored_dir, target_url, cycle_s=0.1) as server:
            c = server.client(made.user_key)  # keys are restored: the same key signs in
            listed = c.get("/api/v1/tasks", params={"limit": 1000}).json()["tasks"]
            assert {t["id"] for t in listed} == set(ids)
            assert {t["id"] for t in listed if t["state"] == "running"} == set(made.running)
            r = c.post("/api/v1/tasks", json={"run": "true", "resources": {"cpus": 1}})
            assert r.status_code == 201, r.text
            assert r.json()["id"] == max(ids) + 1
            usage = c.get("/api/v1/usage").json()
            assert usage["attempts"] == len(before["ledger"])
            after = dump(server.plane.engine)
        assert len(after["tasks"]) == len(before["tasks"]) + 1
        assert after["ledger"] == before["ledger"]


# ------------------------------------------------------------------------------ refusals


_STOPPED_LONG_AGO = 0.0
"""The stale time under which a leader stopped a moment ago counts as gone (on SQLite the
holder of an in-process service is the test's own, live process)."""


def _core(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """The tables a running service does not touch by itself (no heartbeat, no sampling)."""
    rows = dump(engine)
    return {t: rows[t] for t in ("tenants", "api_keys", "tasks", "attempts", "ledger")}


def test_a_non_empty_target_is_refused_untouched_unless_forced_which_replaces_every_row(
    db_url: str | None, tmp_path: Path,
) -> None:
    source, _ = _filled(None, tmp_path / "source")
    file = tmp_path / "net.backup"
    backup(source, file)
    with local_control_plane(tmp_path / "target", db_url, cycle_s=0.1) as server:
        c = server.client()
        assert c.post("/api/v1/tasks", json={"run": "true"}).status_code == 201
    target = engine_for(url_of(db_url, tmp_path / "target"))
    before = dump(target)
    with pytest.raises(UsageError, match=r"--db: the database is not empty \(.*tasks 1.*--force"):
        restore(file, target, stale_s=_STOPPED_LONG_AGO)
    assert dump(target) == before
    restore(file, target, force=True, stale_s=_STOPPED_LONG_AGO)
    assert dump(target) == dump(source)


def test_a_target_a_control_plane_runs_on_is_refused_even_when_forced(
    db_url: str | None, tmp_path: Path,
) -> None:
    source, _ = _filled(None, tmp_path / "source")
    file = tmp_path / "net.backup"
    backup(source, file)
    with local_control_plane(tmp_path / "target", db_url, cycle_s=0.1) as server:
        target = server.plane.engine
        wait_until(lambda: dump(target)["leadership"], timeout=30)
        before = _core(target)
        for force in (False, True):
            with pytest.raises(UsageError, match=r"a control plane is running on this database"
                               r".*stop every replica"):
                restore(file, target, force=force)
        assert _core(target) == before
    # Stopped (on SQLite: its lease stale, for the holder is this very process), it proceeds.
    restore(file, engine_for(url_of(db_url, tmp_path / "target")), force=True,
            stale_s=_STOPPED_LONG_AGO if db_url is None else 10.0)
    assert dump(engine_for(url_of(db_url, tmp_path / "target"))) == dump(source)


def _edited(file: Path, to: Path, *statements: str) -> Path:
    to.write_bytes(file.read_bytes())
    with sqlite3.connect(to) as conn:
        for statement in statements:
            conn.execute(statement)
    return to


def test_a_file_that_is_not_a_whole_backup_of_a_known_revision_is_refused_before_the_target(
    tmp_path: Path,
) -> None:
    source, _ = _filled(None, tmp_path / "source")
    good = tmp_path / "net.backup"
    backup(source, good)
    (tmp_path / "garbage").write_bytes(b"\x00 this is not a database " * 100)
    (tmp_path / "truncated").write_bytes(good.read_bytes()[:8192])
    head = head_revision()
    cases = {
        "missing": (tmp_path / "nope.backup", "does not exist"),
        "a directory": (tmp_path, "is not a file"),
        "garbage": (tmp_path / "garbage", "not a computility backup (not an SQLite database)"),
        "not a backup": (tmp_path / "source" / "computility.db",
                         "without a computility_backup table"),
        "unknown format": (_edited(good, tmp_path / "f.backup", "UPDATE computility_backup SET "
                                   "value = '7' WHERE key = 'format'"),
                           "backup of format '7', this version of computility reads format 1"),
        "newer revision": (_edited(good, tmp_path / "r.backup", "UPDATE computility_backup SET "
                                   "value = '9999' WHERE key = 'revision'"),
                           f"revision 9999, which this version of computility does not know "
                           f"(its newest is {head})"),
        "a lost row": (_edited(good, tmp_path / "l.backup",
                               "DELETE FROM ledger WHERE id = (SELECT max(id) FROM ledger)"),
                       "damaged: table ledger holds"),
        "truncated": (tmp_path / "truncated", "damaged"),
    }
    for name, (path, message) in cases.items():
        target_path = tmp_path / f"target-{name}.db"
        with pytest.raises(UsageError, match=re.escape(message)):
            restore(path, make_engine(f"sqlite:///{target_path}"))
        assert not target_path.exists() or dump(make_engine(f"sqlite:///{target_path}")) == {
            t: [] for t in dump(source)}, name


def test_a_backup_made_by_an_older_version_is_upgraded_then_restored(
    db_url: str | None, tmp_path: Path,
) -> None:
    source, _ = _filled(None, tmp_path / "source")
    rows = dump(source)
    # What the previous version wrote: its schema, its rows, its computility_backup table.
    older = tmp_path / "older.backup"
    backup(source, older)
    previous = _previous_revision()
    config = alembic_config(f"sqlite:///{older}")
    command.downgrade(config, previous)
    with sqlite3.connect(older) as conn:
        kept = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        same = {t.name for t in db.metadata.sorted_tables if t.name in kept and
                {c[1] for c in conn.execute(f'PRAGMA table_info("{t.name}")')}
                == set(t.columns.keys())}
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                  for t in kept - {"alembic_version", "computility_backup"}}
        conn.execute("UPDATE computility_backup SET value = ? WHERE key = 'revision'",
                     (previous,))
        conn.execute("UPDATE computility_backup SET value = ? WHERE key = 'rows'",
                     (json.dumps(counts),))
    assert read_info(older).revision == previous
    with pg_database() if db_url else nullcontext() as target_url:
        target = make_engine(target_url or f"sqlite:///{tmp_path / 'target.db'}")
        assert restore(older, target).revision == head_revision() == current_revision(target)
        restored = dump(target)
        assert same >= {"tasks", "attempts", "ledger"}
        assert {t: restored[t] for t in same} == {t: rows[t] for t in same}
        target.dispose()


def _previous_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    down = script.get_revision(head_revision()).down_revision
    assert isinstance(down, str)
    return down


def test_a_backup_never_overwrites_a_file_unless_forced_and_never_leaves_half_a_file(
    tmp_path: Path,
) -> None:
    source, _ = _filled(None, tmp_path / "source")
    path = tmp_path / "net.backup"
    path.write_bytes(b"yesterday's backup")
    with pytest.raises(UsageError, match=re.escape(f"PATH: {path} exists")):
        backup(source, path)
    assert path.read_bytes() == b"yesterday's backup"
    assert backup(source, path, force=True).rows == read_info(path).rows
    with pytest.raises(UsageError, match=r"directory .* does not exist"):
        backup(source, tmp_path / "no" / "such" / "dir.backup")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.backup", "source"]


def test_a_source_behind_this_version_or_without_a_schema_is_refused_without_writing_a_file(
    db_url: str | None, tmp_path: Path,
) -> None:
    url = url_of(db_url, tmp_path)
    path = tmp_path / "net.backup"
    empty = make_engine(url)
    with empty.connect():  # on SQLite: an empty file
        pass
    with pytest.raises(UsageError, match="no computility schema"):
        backup(empty, path)
    config = alembic_config(url)
    with empty.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, _previous_revision())
    with pytest.raises(UsageError, match=re.escape(
            f"revision {_previous_revision()}, this version of computility backs up revision "
            f"{head_revision()}: run `computility db upgrade`")):
        backup(empty, path)
    upgrade(empty)
    with empty.begin() as conn:
        conn.execute(db.tenants.insert().values(id="t", created_at=time.time()))
    assert backup(empty, path).rows["tenants"] == 1
    assert [p.name for p in tmp_path.iterdir() if "backup" in p.name] == ["net.backup"]
    with pytest.raises(UsageError, match="--db: no database at"):
        backup(make_engine(f"sqlite:///{tmp_path / 'absent.db'}"), tmp_path / "x.backup")
    assert not (tmp_path / "absent.db").exists()


def test_a_backup_taken_while_tasks_finish_and_are_billed_is_one_consistent_instant(
    db_url: str | None, tmp_path: Path,
) -> None:
    with local_control_plane(tmp_path / "source", db_url, cycle_s=0.05) as server:
        admin = server.client()
        provider = new_tenant(admin, "acme", "provider")
        user = new_tenant(admin, "alice", "user")
        agent = FakeAgent(server.url, provider, "east", {"cpu": ("EPYC-7763", 32)},
                          time_scale=0.001, heartbeat_s=0.2, lease_wait_s=0.2).start()
        try:
            c = server.client(user)
            spec = {"run": "true", "resources": {"cpus": 1}, "envs": {"FAKE_RUN_S": "200"}}
            r = c.post("/api/v1/tasks/batch", json={"tasks": [spec] * 600})
            assert r.status_code == 201, r.text

            def billed_now() -> int:
                with server.plane.engine.connect() as conn:
                    return int(conn.execute(text("SELECT count(*) FROM ledger")).scalar_one())

            # The first backup starts once billing has begun (however slowly the machine
            # schedules), so it falls while tasks are finishing, not before any has.
            wait_until(lambda: billed_now() > 0, timeout=60)
            seen: list[tuple[int, int, int]] = []
            for i in range(6):
                file = tmp_path / f"{i}.backup"
                # Tiny chunks: the read spans many round trips while tasks keep finishing.
                backup(server.plane.engine, file, chunk=7)
                with sqlite3.connect(file) as conn:
                    tasks, attempts, billed = (conn.execute(q).fetchone()[0] for q in (
                        "SELECT count(*) FROM tasks WHERE state = 'succeeded'",
                        "SELECT count(*) FROM attempts WHERE state = 'succeeded'",
                        "SELECT count(*) FROM ledger"))
                    orphans = conn.execute(
                        "SELECT count(*) FROM ledger l LEFT JOIN attempts a ON a.id = "
                        "l.attempt_id WHERE a.state IS NULL OR a.state <> 'succeeded'"
                    ).fetchone()[0]
                assert tasks == attempts == billed and orphans == 0, (i, tasks, attempts, billed)
                seen.append((tasks, attempts, billed))
        finally:
            agent.stop()
    # Taken while work was being done, not all before or after it.
    assert any(0 < n < 600 for n, _, _ in seen), seen


def test_json_null_and_sql_null_stay_distinct_and_json_text_is_kept_byte_for_byte(
    db_url: str | None, tmp_path: Path,
) -> None:
    with pg_database() as pg_a, pg_database() as pg_b:
        lite = [f"sqlite:///{tmp_path / name}.db" for name in ("source", "other", "home")]
        urls = (lite[0], pg_a, lite[2]) if db_url is None else (db_url, lite[1], pg_b)
        source, other, home = (make_engine(url) for url in urls)
        upgrade(source)
        curve = '{"hours": [0.5, 0.25, 1e-07], "name": "\\u4e2d"}'
        with source.begin() as conn:
            conn.execute(db.tenants.insert().values(id="acme", created_at=1.5))
            conn.execute(text(
                "INSERT INTO sites (id, owner_tenant_id, region, lat, lon, backend, pue, "
                "electricity_price_micro, carbon_kg_per_kwh, electricity_curve, carbon_curve, "
                "allowed_tenants, registered_at, online, version) VALUES ('s', 'acme', 'ZJK', "
                "41.0, 114.9, 'fake', 1.3, 500000, 0.5, :curve, 'null', NULL, 2.0, true, 1)"),
                {"curve": curve})
        rows = dump(source)
        site = dict(zip(db.sites.c.keys(), rows["sites"][0], strict=True))
        assert (site["electricity_curve"], site["carbon_curve"], site["allowed_tenants"]) == (
            curve, "null", None)
        # Into the other kind of database, and from there back into this kind.
        restore(_backed_up(source, tmp_path / "a.backup"), other)
        assert dump(other) == rows
        restore(_backed_up(other, tmp_path / "b.backup"), home)
        assert dump(home) == rows
        for engine in (source, other, home):
            engine.dispose()


def _backed_up(engine: Engine, path: Path) -> Path:
    backup(engine, path)
    return path
