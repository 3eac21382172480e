"""Which replica runs the scheduling loop, and fencing so that a former leader writes nothing.

On PostgreSQL the leader holds a session advisory lock on a dedicated connection and renews a
row in ``leadership`` every cycle; taking over bumps the row's *epoch*. A leader that stops (a
crash, a SIGSTOP, a network partition) keeps its lock only as long as its connection lives: when
its row is stale for `STALE_S`, a candidate terminates that backend (``pg_terminate_backend``),
takes the lock and bumps the epoch. Every decision the loop writes is in a transaction that first
reads the epoch with ``FOR SHARE`` and commits only if it is still its own, so a resumed former
leader's write is refused, never landed. On SQLite one process owns the database and is leader.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Any

from sqlalchemy import Connection, insert, select, text, update

from computility.server.db import schema as db
from computility.server.db.engine import is_sqlite
from computility.server.plane import ControlPlane

NAME = "scheduler"
LOCK_KEY = 0x436F6D7075  # "Compu": the advisory lock of the scheduling loop
STALE_S = 10.0
"""A leader that has not renewed for this long is presumed stopped and is replaced."""

log = logging.getLogger("computility.leadership")


class Leadership:
    def __init__(self, plane: ControlPlane, stale_s: float = STALE_S) -> None:
        self.plane = plane
        self.stale_s = stale_s
        self.epoch: int | None = None
        self._lock_conn: Any = None

    @property
    def leading(self) -> bool:
        return self.epoch is not None

    def tick(self, now: float) -> bool:
        """Renew leadership, or try to take it; returns whether this replica leads now."""
        if self.epoch is not None and self._renew(now):
            return True
        self._drop()
        return self._take(now)

    def _renew(self, now: float) -> bool:
        try:
            with self.plane.write() as conn:
                done = conn.execute(update(db.leadership).where(
                    db.leadership.c.name == NAME, db.leadership.c.epoch == self.epoch
                ).values(renewed_at=now)).rowcount
            if done and self._lock_conn is not None:
                self._lock_conn.exec_driver_sql("SELECT 1")  # our lock's connection still lives
            return bool(done)
        except Exception:
            log.warning("lost leadership (epoch %s)", self.epoch)
            return False

    def _drop(self) -> None:
        self.epoch = None
        if self._lock_conn is not None:
            # Release the session lock now: the pool would keep the session (and the lock).
            with contextlib.suppress(Exception):
                self._lock_conn.exec_driver_sql(f"SELECT pg_advisory_unlock({LOCK_KEY})")
            with contextlib.suppress(Exception):
                self._lock_conn.invalidate()
            self._lock_conn = None

    def _take(self, now: float) -> bool:
        engine = self.plane.engine
        if not is_sqlite(engine):
            # Autocommit: the lock's session never sits idle inside a transaction.
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({LOCK_KEY})").scalar()
            if not got:
                self._evict_stale(now)
                conn.close()
                return False
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            self._lock_conn = conn
        else:
            pid = None
        try:
            return self._claim(now, pid)
        except Exception:
            log.warning("could not take the leadership", exc_info=True)
            self._drop()
            return False

    def _claim(self, now: float, pid: int | None) -> bool:
        engine = self.plane.engine
        with self.plane.write() as tx:
            if not is_sqlite(engine):
                # A stopped former leader may still hold the row: wait a bounded time only.
                tx.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
            row = tx.execute(select(db.leadership).where(db.leadership.c.name == NAME)
                             ).mappings().first()
            if row is None:
                tx.execute(insert(db.leadership).values(
                    name=NAME, epoch=1, holder=self.plane.replica, backend_pid=pid,
                    renewed_at=now))
                self.epoch = 1
            else:
                if is_sqlite(engine) and row["holder"] != self.plane.replica and (
                    now - row["renewed_at"] < self.stale_s
                ) and not _holder_gone(row["holder"]):
                    return False
                epoch = int(row["epoch"]) + 1
                tx.execute(update(db.leadership).where(db.leadership.c.name == NAME).values(
                    epoch=epoch, holder=self.plane.replica, backend_pid=pid, renewed_at=now))
                self.epoch = epoch
        log.info("%s leads the scheduling loop (epoch %s)", self.plane.replica, self.epoch)
        return True

    def _evict_stale(self, now: float) -> None:
        with self.plane.write() as tx:
            row = tx.execute(select(db.leadership).where(db.leadership.c.name == NAME)
                             ).mappings().first()
            if row is None or now - row["renewed_at"] < self.stale_s or row["backend_pid"] is None:
                return
            log.warning("leader %s silent for %.0f s: terminating its sessions",
                        row["holder"], now - row["renewed_at"])
            # Its lock's session, and any other it holds (one stopped inside a write
            # transaction keeps the leadership row locked): every connection of a replica
            # carries its name as application_name.
            tx.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE (pid = :pid OR application_name = :holder) AND pid <> pg_backend_pid()"
            ), {"pid": row["backend_pid"], "holder": row["holder"]})

    def fenced(self, conn: Connection) -> bool:
        """In a write transaction: whether this replica still leads (locks the epoch row)."""
        if self.epoch is None:
            return False
        query = select(db.leadership.c.epoch).where(db.leadership.c.name == NAME)
        if not is_sqlite(self.plane.engine):
            query = query.with_for_update(read=True)
        return conn.execute(query).scalar() == self.epoch

    def close(self) -> None:
        self._drop()


def _holder_gone(holder: str) -> bool:
    """Whether `holder` (``host:pid``) was a process on this host that no longer runs."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not (pid.isascii() and pid.isdigit()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
