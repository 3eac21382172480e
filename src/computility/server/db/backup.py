"""``computility db backup`` and ``db restore``: the whole database in one portable file.

**The file is an SQLite database**, whatever the source: the schema is built in it by the same
migrations as a real control plane's database (so it is one, at the source's revision), every
table of `schema.metadata` is copied into it (``metadata.sorted_tables``, so a table a later
migration adds is included without a change here), and a ``computility_backup`` table records
the format, the time, the source's dialect, the revision and the row count of every table. A
backup of SQLite restores into PostgreSQL and one of PostgreSQL into SQLite: it is also the way
to move a network from SQLite to PostgreSQL. A backup made by an older version is upgraded (a
temporary copy, by the migrations) before it is restored; one from a newer version is refused.

**Backup** reads the source in one snapshot: on PostgreSQL a REPEATABLE READ, READ ONLY
transaction; on SQLite (WAL) one read transaction, which sees the database as of its first read
while the service keeps writing. So a backup is taken while the service runs, and holds every
task with its attempts, leases and ledger entries as of one instant. Rows are streamed in chunks
into a temporary file next to PATH, which is synced and then renamed to PATH: PATH is either the
complete backup or absent (or the previous file, with ``--force``), never half written. The
source must be at this version's head revision: a backup is of the schema this code knows.

**Restore** validates the whole file before it touches the target (an SQLite database, a
``computility_backup`` table of a known format, a known revision, the row counts it recorded),
refuses a target that holds any row (``--force`` deletes every row first) and, always, a target
on which a control plane runs (PostgreSQL: a session holds the scheduling leader's advisory
lock; SQLite: the leader renewed the ``leadership`` row less than ``COMPUTILITY_LEADER_STALE_S``
ago and its process, when on this host, still exists). ``--force`` does not override that one:
rows replaced under a running service would mix with its in-memory state and its next writes,
and a stopped service stops counting as running at once (or, for a crashed SQLite leader on
another host, within the stale time). Refusals happen before the target is migrated, so a
refused target is left exactly as it was. Then the target is migrated to head
and every table copied in one transaction (all or nothing; on PostgreSQL every table is locked
exclusively for it and the checks are repeated under the lock); on PostgreSQL every serial
sequence is then set to its column's maximum, so new ids continue after the restored ones.

JSON columns are copied as their text, never decoded: a JSON ``null`` stays distinct from SQL
NULL and the text is kept byte for byte. Blobs (workdirs, logs, outputs) are files under the
data directory, not rows: they are copied with the directory (docs/operator-guide.md).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    MetaData,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.elements import ColumnElement

from computility.domain.errors import ComputilityError, UsageError
from computility.server.db.engine import alembic_config, is_sqlite, upgrade, writer
from computility.server.db.schema import metadata
from computility.server.leadership import LOCK_KEY, _holder_gone

FORMAT = 1
"""The layout of the file; a reader refuses a format it does not know."""
INFO_TABLE = "computility_backup"
CHUNK = 5000
"""Rows read and written per round trip."""
SQLITE_MAGIC = b"SQLite format 3\x00"
_NOT_DATA = {"alembic_version", INFO_TABLE}


@dataclass(frozen=True)
class Summary:
    """What a backup or a restore copied."""

    revision: str
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class BackupInfo:
    """What a backup file says about itself (its ``computility_backup`` table)."""

    path: Path
    format: int
    revision: str
    created_at: str
    source: str
    version: str
    rows: dict[str, int]


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise ComputilityError("no migrations found")
    return head


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {rev.revision for rev in script.walk_revisions()}


# --------------------------------------------------------------------------- copying rows


class _JsonText(sqltypes.TypeDecorator[str]):
    """A JSON column read and written as its text: nothing is parsed or re-serialised."""

    impl = Text
    cache_ok = True

    def column_expression(self, colexpr: ColumnElement[Any]) -> ColumnElement[Any]:
        return colexpr.cast(Text)


class _PgJsonText(_JsonText):
    """The same into PostgreSQL, where text must be cast to ``json`` explicitly."""

    cache_ok = True

    def bind_expression(self, bindvalue: Any) -> ColumnElement[Any]:
        return bindvalue.cast(postgresql.JSON)  # type: ignore[no-any-return]


def _transfer(table: Table, engine: Engine) -> Table:
    """`table` as the copy sees it on `engine`: JSON columns as text, the rest as declared."""
    json_type = _JsonText if is_sqlite(engine) else _PgJsonText
    columns = [Column(c.name, json_type() if isinstance(c.type, JSON) else c.type,
                      primary_key=c.primary_key) for c in table.columns]
    return Table(table.name, MetaData(), *columns)


def _copy_table(table: Table, source: Connection, target: Connection, chunk: int) -> int:
    src, dst = _transfer(table, source.engine), _transfer(table, target.engine)
    order = list(src.primary_key.columns) or list(src.columns)
    result = source.execution_options(yield_per=chunk).execute(select(src).order_by(*order))
    copied = 0
    for part in result.mappings().partitions():
        target.execute(insert(dst), [dict(row) for row in part])
        copied += len(part)
    return copied


def _schema_tables(conn: Connection, where: str) -> list[Table]:
    """This version's tables, after checking that the database at `where` has exactly those."""
    present = set(inspect(conn).get_table_names()) - _NOT_DATA
    wanted = {t.name for t in metadata.sorted_tables}
    if missing := sorted(wanted - present):
        raise UsageError(f"{where}: table(s) {', '.join(missing)} missing although the revision "
                         "is current: the database was changed by hand")
    if extra := sorted(present - wanted):
        raise UsageError(f"{where}: table(s) {', '.join(extra)} are not part of computility's "
                         "schema: a backup would leave them out")
    return list(metadata.sorted_tables)


# --------------------------------------------------------------------------- backup


def _file_engine(path: Path, read_only: bool = False) -> Engine:
    """An engine on a backup file: a rollback journal (one self-contained file, not WAL)."""
    uri = f"file:{quote(str(path.resolve()))}" + ("?mode=ro" if read_only else "")

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.isolation_level = None  # transactions are SQLAlchemy's (`_begin` below)
        return conn

    engine = create_engine(f"sqlite:///{path}", creator=connect)

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


@contextlib.contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction: everything read in it is as of one instant."""
    conn = engine.connect()
    if not is_sqlite(engine):
        conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                      postgresql_readonly=True)
    try:
        with conn.begin():
            yield conn
    finally:
        conn.close()


def _check_source(engine: Engine) -> None:
    if is_sqlite(engine):
        name = engine.url.database
        if name and name != ":memory:" and not Path(name).is_file():
            raise UsageError(f"--db: no database at {name}")


def _source_revision(conn: Connection) -> str:
    head = head_revision()
    if not inspect(conn).has_table("alembic_version"):
        raise UsageError("--db: the database has no computility schema (no alembic_version "
                         "table): nothing to back up")
    row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    revision = None if row is None else str(row[0])
    if revision != head:
        raise UsageError(f"--db: the database is at revision {revision}, this version of "
                         f"computility backs up revision {head}: run `computility db upgrade` "
                         "first")
    return revision


def backup(engine: Engine, path: Path, *, force: bool = False, chunk: int = CHUNK) -> Summary:
    """Write every row of the database behind `engine` to the file `path` (see the module)."""
    _check_source(engine)
    if path.is_dir():
        raise UsageError(f"PATH: {path} is a directory, expected a file name")
    if path.exists() and not force:
        raise UsageError(f"PATH: {path} exists: choose another name or pass --force to "
                         "replace it")
    if not path.parent.is_dir():
        raise UsageError(f"PATH: directory {path.parent} does not exist")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    os.unlink(name)  # SQLite creates the file itself; the name is ours alone
    partial = Path(name)
    try:
        summary = _write_backup(engine, partial, chunk)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, path)
        _fsync_dir(path.parent)
        return summary
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            leftover.unlink(missing_ok=True)


def _write_backup(engine: Engine, partial: Path, chunk: int) -> Summary:
    out = _file_engine(partial)
    try:
        with _snapshot(engine) as source:
            revision = _source_revision(source)
            tables = _schema_tables(source, "--db")
            upgrade(out)  # the same schema, built by the same migrations
            rows: dict[str, int] = {}
            with out.begin() as target:
                for table in tables:
                    rows[table.name] = _copy_table(table, source, target, chunk)
                target.exec_driver_sql(
                    f"CREATE TABLE {INFO_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                info = {"format": str(FORMAT), "revision": revision,
                        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "source": engine.dialect.name, "version": _version(),
                        "rows": json.dumps(rows, sort_keys=True)}
                target.execute(text(f"INSERT INTO {INFO_TABLE} (key, value) VALUES (:k, :v)"),
                               [{"k": k, "v": v} for k, v in info.items()])
        return Summary(revision, rows)
    finally:
        out.dispose()


def _version() -> str:
    try:
        return importlib.metadata.version("computility")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- validating a file


def read_info(path: Path) -> BackupInfo:
    """What the backup at `path` holds; UsageError naming the problem if it is not one."""
    if not path.exists():
        raise UsageError(f"PATH: {path} does not exist")
    if not path.is_file():
        raise UsageError(f"PATH: {path} is not a file")
    with open(path, "rb") as f:
        magic = f.read(len(SQLITE_MAGIC))
    if magic != SQLITE_MAGIC:
        raise UsageError(f"PATH: {path} is not a computility backup (not an SQLite database)")
    engine = _file_engine(path, read_only=True)
    try:
        with engine.connect() as conn:
            return _read_info(path, conn)
    except DBAPIError as error:
        raise UsageError(f"PATH: {path} is damaged: {' '.join(str(error.orig).split())}"
                         ) from None
    finally:
        engine.dispose()


def _read_info(path: Path, conn: Connection) -> BackupInfo:
    if not inspect(conn).has_table(INFO_TABLE):
        raise UsageError(f"PATH: {path} is not a computility backup (an SQLite database "
                         f"without a {INFO_TABLE} table)")
    info = {str(k): str(v)
            for k, v in conn.execute(text(f"SELECT key, value FROM {INFO_TABLE}"))}
    fmt = info.get("format", "")
    if fmt != str(FORMAT):
        raise UsageError(f"PATH: {path} is a backup of format '{fmt}', this version of "
                         f"computility reads format {FORMAT}")
    try:
        rows = {str(k): int(v) for k, v in json.loads(info["rows"]).items()}
        revision = info["revision"]
    except (KeyError, ValueError, TypeError, AttributeError):
        raise UsageError(f"PATH: {path} is damaged: its {INFO_TABLE} table lacks the "
                         "revision or the row counts") from None
    head = head_revision()
    if revision not in _known_revisions():
        raise UsageError(f"PATH: {path} is at revision {revision}, which this version of "
                         f"computility does not know (its newest is {head}): restore it with "
                         "the version that made it, or a newer one")
    present = set(inspect(conn).get_table_names())
    for table, expected in sorted(rows.items()):
        held = (conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar()
                if table in present else None)
        if held != expected:
            raise UsageError(f"PATH: {path} is damaged: table {table} holds {held} rows, the "
                             f"backup recorded {expected}")
    return BackupInfo(path, FORMAT, revision, info.get("created_at", ""),
                      info.get("source", ""), info.get("version", ""), rows)


@contextlib.contextmanager
def _at_head(info: BackupInfo) -> Iterator[Engine]:
    """The backup as an engine at this version's head: the file, or an upgraded copy of it."""
    if info.revision == head_revision():
        engine = _file_engine(info.path, read_only=True)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    with tempfile.TemporaryDirectory(prefix="computility-restore-") as tmp:
        copy = Path(tmp) / "backup.db"
        shutil.copyfile(info.path, copy)
        engine = _file_engine(copy)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


# --------------------------------------------------------------------------- restore


def restore(path: Path, engine: Engine, *, force: bool = False, stale_s: float = 10.0,
            chunk: int = CHUNK, info: BackupInfo | None = None) -> Summary:
    """Copy every row of the backup at `path` into the database behind `engine`.

    `info`: what `read_info(path)` returned, when the caller validated the file already.
    """
    info = info or read_info(path)
    name = engine.url.database if is_sqlite(engine) else None
    if name and name != ":memory:" and Path(name).resolve() == path.resolve():
        raise UsageError(f"--db: {name} is the backup file itself; restore into another "
                         "database")
    with _at_head(info) as source_engine:
        with engine.connect() as conn:
            _refuse(conn, force, stale_s)  # before migrating: a refused target is not touched
        upgrade(engine)
        with source_engine.connect() as source, source.begin():
            tables = _schema_tables(source, f"PATH: {path}")
            with writer(engine).begin() as target:
                if not is_sqlite(engine):
                    names = ", ".join(f'"{t.name}"' for t in tables)
                    target.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
                    target.exec_driver_sql(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
                _refuse(target, force, stale_s)  # again, now that nothing else can write
                for table in reversed(tables):
                    target.execute(delete(table))
                rows = {t.name: _copy_table(t, source, target, chunk) for t in tables}
                if not is_sqlite(engine):
                    _reset_sequences(target, tables)
    return Summary(head_revision(), rows)


def _refuse(conn: Connection, force: bool, stale_s: float) -> None:
    """Refuse a target a control plane runs on, and a non-empty one unless `force`."""
    present = set(inspect(conn).get_table_names())
    if running := _running_leader(conn, present, stale_s):
        raise UsageError(f"--db: a control plane is running on this database ({running}): "
                         "stop every replica first")
    if force:
        return
    held = {}
    for table in metadata.sorted_tables:
        if table.name in present:
            n = conn.execute(select(func.count()).select_from(table)).scalar() or 0
            if n:
                held[table.name] = n
    if held:
        shown = ", ".join(f"{name} {n}" for name, n in held.items())
        raise UsageError(f"--db: the database is not empty ({shown} rows): restore into an "
                         "empty database, or pass --force to delete every row first")


def _running_leader(conn: Connection, present: set[str], stale_s: float) -> str | None:
    """Why a control plane is taken to run on the database behind `conn`, or None.

    PostgreSQL: a session holds the scheduling loop's advisory lock (a leader holds it while it
    lives, even stopped by SIGSTOP; it is released when the leader's session ends). SQLite: the
    leader renewed its row less than `stale_s` ago and is not a process of this host that has
    exited.
    """
    if not is_sqlite(conn.engine):
        held = conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = :high AND objid = :low AND objsubid = 1"),
            {"high": LOCK_KEY >> 32, "low": LOCK_KEY & 0xFFFFFFFF}).scalar()
        return "its leader holds the scheduling lock" if held else None
    table = metadata.tables["leadership"]
    if table.name not in present:
        return None
    row = conn.execute(select(table.c.holder, table.c.renewed_at)
                       .order_by(table.c.renewed_at.desc()).limit(1)).first()
    if row is None or _holder_gone(row.holder):
        return None
    age = time.time() - row.renewed_at
    if age >= stale_s:
        return None
    return (f"leader {row.holder} renewed its lease {max(age, 0.0):.1f} s ago; a stopped "
            f"leader's lease goes stale after {stale_s:g} s")


def _reset_sequences(conn: Connection, tables: list[Table]) -> None:
    """Set every serial/identity sequence of `tables` to its column's maximum."""
    names = [t.name for t in tables]
    found = conn.execute(text(
        "SELECT table_name, column_name, seq FROM (SELECT table_name, column_name, "
        "pg_get_serial_sequence(quote_ident(table_name), column_name) AS seq "
        "FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = ANY(:names)) AS c WHERE seq IS NOT NULL"), {"names": names}).all()
    for table, column, seq in found:
        conn.execute(text(
            f'SELECT setval(:seq, COALESCE(MAX("{column}"), 1), MAX("{column}") IS NOT NULL) '
            f'FROM "{table}"'), {"seq": seq})


def connect_error(error: OperationalError) -> ComputilityError:
    """A database that cannot be reached, as one line."""
    return ComputilityError(f"cannot use the database: {' '.join(str(error.orig).split())}")
