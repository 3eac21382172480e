"""``/healthz`` (the process is alive) and ``/readyz`` (this replica can do its work now).

Liveness and readiness are different questions with different consequences: a failed liveness
probe restarts the process, a failed readiness probe only takes the replica out of the load
balancer until it recovers. So ``/healthz`` answers 200 whenever the process serves at all (a
database outage must not make an orchestrator restart every replica in a loop), and ``/readyz``
answers 200 only when:

- the **database** answers a query within `READY_TIMEOUT_S`;
- its **schema** is at the newest migration this build knows (a replica on a database another
  version migrated, or one nobody migrated, must not serve);
- the **scheduling loop** thread is alive, where this replica runs one;
- the service is not **shutting down**.

Otherwise 503, with a JSON body naming each check that failed and why. The database's own error
text (which may name hosts and users) is logged, not served: the probes need no key.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from alembic.script import ScriptDirectory
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import inspect

from computility.server.db.engine import alembic_config

if TYPE_CHECKING:
    from computility.server.plane import ControlPlane

log = logging.getLogger("computility.health")

READY_TIMEOUT_S = 2.0
"""How long `/readyz` waits for the database before calling it not ready."""


def newest_revision() -> str | None:
    """The head of this build's migrations."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head: str | None = script.get_current_head()
    return head


class Readiness:
    """The checks behind ``/readyz``; at most one database query in flight at a time (a probe
    every second against a hung database must not pile up blocked threads)."""

    def __init__(self, app: FastAPI, plane: ControlPlane) -> None:
        self.app = app
        self.plane = plane
        self.head = newest_revision()
        self._query: asyncio.Future[str | None] | None = None
        self._last_problem: str | None = None

    def _revision(self) -> str | None:
        """The database's migration (None: never migrated); raises when it does not answer."""
        with self.plane.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    f"SET LOCAL statement_timeout = {int(READY_TIMEOUT_S * 1000)}")
            if not inspect(conn).has_table("alembic_version"):
                return None
            row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        return None if row is None else str(row[0])

    async def _database(self) -> tuple[str | None, str | None, str | None]:
        """(revision, None, None) when the database answered; else (None, what is wrong, the
        error's own text for the log)."""
        pending = self._query
        if pending is None or pending.done():
            if pending is not None and not pending.cancelled():
                pending.exception()  # retrieved: a failure seen by no probe is not "unhandled"
            pending = self._query = asyncio.ensure_future(asyncio.to_thread(self._revision))
        try:
            return await asyncio.wait_for(asyncio.shield(pending), READY_TIMEOUT_S), None, None
        except TimeoutError:
            return None, f"no answer within {READY_TIMEOUT_S:g} s", None
        except Exception as error:
            return None, f"not answering ({type(error).__name__})", str(error)

    def _log_problem(self, problem: str) -> None:
        if problem != self._last_problem:  # once per change, not once per probe
            log.warning("not ready: %s", problem)
        self._last_problem = problem

    async def check(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        revision, problem, detail = await self._database()
        checks["database"] = problem or "ok"
        if problem is not None:
            checks["schema"] = "unknown: the database did not answer"
        elif revision != self.head:
            checks["schema"] = (f"at revision {revision or 'none'}, this build needs "
                                f"{self.head}: run `computility db upgrade`")
        else:
            checks["schema"] = "ok"
        if self.plane.settings.run_loop:
            loop = getattr(self.app.state, "loop", None)
            checks["scheduling_loop"] = (
                "ok" if loop is not None and loop.alive()
                else "not started yet" if loop is None else "its thread has stopped")
        if getattr(self.app.state, "closing", False):
            checks["shutdown"] = "shutting down"
        ready = all(v == "ok" for v in checks.values())
        if ready:
            self._last_problem = None
        else:
            problems = "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
            self._log_problem(problems + (f" ({detail.strip()})" if detail else ""))
        return ready, checks


def install_health(app: FastAPI, plane: ControlPlane) -> None:
    readiness = app.state.readiness = Readiness(app, plane)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ready, checks = await readiness.check()
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
        if not ready:
            body["not_ready"] = sorted(k for k, v in checks.items() if v != "ok")
        return JSONResponse(body, status_code=200 if ready else 503)
