"""Reads of one statement awaited on the event loop, on PostgreSQL.

The hottest requests of the API (a task's status, its log, the key that signs a request) are
one short statement each. Through SQLAlchemy's engine they run in a worker thread: the hop
there and back, the interpreter lock handed between threads and the engine's per-statement
machinery cost a read more CPU than the database spends answering it. Here the statement is
compiled once to the driver's SQL and sent on a connection of psycopg's asyncio pool, awaited
on the event loop: a read waiting on the database holds no thread and blocks nothing else, so
a database that stops answering delays only the requests that need it (``/healthz`` and the
rest of the loop go on).

The pool belongs to the event loop that opened it (the service's, in its lifespan); code on
any other loop or thread reads through the engine as before (`LoopReads.serves`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Engine
from sqlalchemy.sql import Select

from computility.server.problems import ApiError

POOL_SIZE = 8
"""Connections at most: reads are a few milliseconds, so a handful serve hundreds a second;
more would only wait on the database's own CPU."""
WAIT_S = 30.0
"""A read waits this long for a connection (as the engine's pool does) before it is refused
with 503."""


class _Compiled:
    __slots__ = ("compiled", "names", "sql", "statement")

    def __init__(self, statement: Select[Any], engine: Engine) -> None:
        self.statement = statement  # kept alive, so its id is never reused while cached
        self.compiled = statement.compile(dialect=engine.dialect)
        self.sql = self.compiled.string
        self.names = tuple(statement.selected_columns.keys())


class LoopReads:
    """psycopg's asyncio pool for one-statement reads, opened and closed on one event loop."""

    def __init__(self, engine: Engine, application_name: str | None) -> None:
        self._engine = engine
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if application_name:
            # The replica's sessions carry its name, as the engine's do (`Leadership` ends
            # every session of a replica that stopped).
            self._kwargs["application_name"] = application_name
        self._compiled: dict[int, _Compiled] = {}
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        """Open the pool on the running loop; connections are made in the background, so a
        database that is down now delays the first reads, not the service's start."""
        pool = AsyncConnectionPool(self._conninfo, kwargs=self._kwargs, min_size=1,
                                   max_size=POOL_SIZE, timeout=WAIT_S, open=False,
                                   name="computility-reads")
        await pool.open(wait=False)
        self._pool, self._loop = pool, asyncio.get_running_loop()

    async def close(self) -> None:
        pool, self._pool, self._loop = self._pool, None, None
        if pool is not None:
            await pool.close(timeout=5)

    def serves(self) -> bool:
        """Whether reads on the running loop go through the pool (it is open, on this loop)."""
        try:
            return self._pool is not None and asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    async def one(self, statement: Select[Any], params: dict[str, Any]) -> dict[str, Any] | None:
        """The statement's first row as a dict keyed by its selected columns (None: no row).

        A connection the database ended (a restart, or sessions of this replica ended by a new
        leader) fails the read once: the pool then drops every idle connection found broken and
        the read is tried again, as a read may be."""
        assert self._pool is not None
        compiled = self._compiled.get(id(statement))
        if compiled is None:
            compiled = self._compiled[id(statement)] = _Compiled(statement, self._engine)
        binds = compiled.compiled.construct_params(params)
        for attempt in (1, 2):
            try:
                async with self._pool.connection() as conn:
                    cursor = conn.cursor(row_factory=tuple_row)
                    await cursor.execute(compiled.sql, binds)
                    row = await cursor.fetchone()
                break
            except PoolTimeout:
                raise ApiError(503, "Service Unavailable",
                               f"the database gave no connection within {WAIT_S:g} s",
                               headers={"Retry-After": "5"}) from None
            except psycopg.OperationalError as error:
                if attempt == 2:
                    raise ApiError(503, "Service Unavailable",
                                   f"the database is unavailable: {_first_line(error)}",
                                   headers={"Retry-After": "5"}) from None
                await self._pool.check()
        return None if row is None else dict(zip(compiled.names, row, strict=True))


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
