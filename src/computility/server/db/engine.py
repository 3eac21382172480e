"""Opening the database: SQLite (WAL, one writer at a time) or PostgreSQL, then migrating it.

SQLite is the zero-setup default: the file lives under the data directory, in WAL mode so
readers never block the writer, with a busy timeout so concurrent writers queue rather than fail.
PostgreSQL (``postgresql+psycopg://…``) is for scale and for several replicas on one database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect

from computility.domain.errors import UsageError

MIGRATIONS = "computility.server.db:migrations"


WRITE_OPTION = "computility_write"


def writer(engine: Engine) -> Engine:
    """The engine for write transactions (on SQLite they begin IMMEDIATE)."""
    return engine.execution_options(**{WRITE_OPTION: True})


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'computility.db'}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, application_name: str | None = None) -> Engine:
    """An engine for `url`; only SQLite and PostgreSQL (psycopg 3) are supported."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: sqlite3.Connection, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, open transactions, so BEGIN IMMEDIATE works.
            conn.isolation_level = None
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Writers (`writer(engine).begin()`) take the lock up front, so a transaction never
            # fails upgrading a read lock; readers never wait for writers (WAL).
            immediate = conn.get_execution_options().get(WRITE_OPTION)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if url.startswith(("postgresql+psycopg://", "postgresql://")):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        # Every session carries the replica's name, so a new leader can end all sessions of a
        # stopped one (`Leadership`).
        args = {"application_name": application_name[:63]} if application_name else {}
        # No ping per checkout (a round trip on every request): a connection found dead is
        # invalidated by SQLAlchemy and the transaction retried (`computility.server.db.retry`).
        return create_engine(url, pool_size=20, max_overflow=20, pool_recycle=3600,
                             connect_args=args)
    raise UsageError(
        f"--db: expected sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB, got '{url}'"
    )


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration not yet applied (a no-op on an up-to-date database)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        return None if row is None else str(row[0])
