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
            with contextlib.suppress(Exception):
                self._lock_conn.close()
            self._lock_conn = None

    def _take(self, now: float) -> bool:
        engine = self.plane.engine
        if not is_sqlite(engine):
            conn = engine.connect()
            got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({LOCK_KEY})").scalar()
            conn.commit()
            if not got:
                self._evict_stale(now)
                conn.close()
                return False
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            conn.commit()
            self._lock_conn = conn
        else:
            pid = None
        with self.plane.write() as tx:
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
                ):
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
            log.warning("leader %s silent for %.0f s: terminating its session",
                        row["holder"], now - row["renewed_at"])
            tx.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": row["backend_pid"]})

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
