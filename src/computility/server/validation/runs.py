"""Validation runs in the database: create, read, list (newest first, by id), claim, finish.

The ``validation_runs`` table is the queue itself: a run is created ``queued``, claimed by one
replica's runner (``running``, with that replica's name), and ends ``done``, ``failed`` or
``cancelled``. Every state change is a conditional update (``WHERE state = ...``), so a cancel
and a finishing worker, or two replicas claiming the same run, never both win.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update

from computility.server.auth import Identity
from computility.server.db import schema as db
from computility.server.db.among import among
from computility.server.db.engine import is_sqlite
from computility.server.plane import ControlPlane
from computility.server.store import audit

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
RESTARTED = "the service restarted"
"""Why a run left ``running`` by a process that is gone was failed (the page translates it)."""
PAGE_SIZE = 20

vr = db.validation_runs
LIST_COLUMNS = (vr.c.id, vr.c.created_at, vr.c.state, vr.c.trace, vr.c.network, vr.c.policies,
                vr.c.progress, vr.c.started_at, vr.c.finished_at)


@dataclass(frozen=True)
class NewRun:
    """What an operator asked to validate, as stored: ``options`` holds what the worker needs
    beyond the trace label, network and policies (see `computility.server.validation.choices`)."""

    tenant: str
    key_id: str
    trace: str
    network: str
    policies: tuple[str, ...]
    options: dict[str, Any]


def create_run(plane: ControlPlane, run: NewRun, who: Identity | None = None) -> int:
    """Queue a run; `who` (the operator asking) is written to the audit log with it."""
    with plane.write() as conn:
        run_id: int = conn.execute(insert(vr).returning(vr.c.id).values(
            tenant_id=run.tenant, created_by=run.key_id, created_at=time.time(), state=QUEUED,
            trace=run.trace[:256], network=run.network[:256], policies=list(run.policies),
            # An uploaded trace lies in this replica's data directory: only it may run it.
            options={**run.options, "replica": plane.replica} if run.options.get("upload")
            else run.options, progress=0.0)).scalar_one()
        if who is not None:
            audit.record(conn, who, "validation.start", f"validation_run:{run_id}",
                         {"trace": run.trace[:256], "network": run.network[:256],
                          "policies": list(run.policies)})
    return run_id


def get_run(plane: ControlPlane, run_id: int) -> dict[str, Any] | None:
    with plane.engine.connect() as conn:
        row = conn.execute(select(vr).where(vr.c.id == run_id)).mappings().first()
    return dict(row) if row is not None else None


def list_runs(plane: ControlPlane, before: int | None,
              limit: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], int | None]:
    """One page of runs, newest first (keyset by id), and the id to continue before (or None)."""
    query = select(*LIST_COLUMNS).order_by(vr.c.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(vr.c.id < before)
    with plane.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


def queued_ahead(plane: ControlPlane, run_id: int) -> int:
    """How many queued runs will be started before this one."""
    with plane.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(vr).where(
            vr.c.state == QUEUED, vr.c.id < run_id)).scalar() or 0)


CLAIM_WINDOW = 50
"""Queued runs looked at per claim: the oldest this replica may run among them (a run of an
uploaded trace waits for the replica that holds the file)."""


def claim_next(plane: ControlPlane) -> dict[str, Any] | None:
    """Take the oldest queued run for this replica (``running``), or None if none is left.

    Looked for with a plain read first: the runner asks every second, and a write transaction
    (on SQLite, the database's one write lock) is taken only when there is a run to claim.
    """
    with plane.engine.connect() as conn:
        queued = conn.execute(select(vr.c.id, vr.c.options).where(vr.c.state == QUEUED)
                              .order_by(vr.c.id).limit(CLAIM_WINDOW)).all()
    row = next((r for r in queued if (r.options or {}).get("replica", plane.replica)
                == plane.replica), None)
    if row is None:
        return None
    with plane.write() as conn:
        taken = conn.execute(update(vr).where(vr.c.id == row.id, vr.c.state == QUEUED).values(
            state=RUNNING, replica=plane.replica, started_at=time.time(), progress=0.0,
            message=None, pid=None)).rowcount
        if not taken:
            return None
        claimed = conn.execute(select(vr).where(vr.c.id == row.id)).mappings().one()
    return dict(claimed)


def set_running(plane: ControlPlane, run_id: int, **values: Any) -> bool:
    """Update a running run (its pid, progress); False if it is no longer running."""
    with plane.write() as conn:
        changed: int = conn.execute(update(vr).where(vr.c.id == run_id, vr.c.state == RUNNING)
                                    .values(**values)).rowcount
    return changed > 0


def finish(plane: ControlPlane, run_id: int, state: str, *, message: str | None = None,
           result: dict[str, Any] | None = None) -> bool:
    """End a running run as `state`; False if something else (a cancel) ended it first."""
    values: dict[str, Any] = {"state": state, "message": message, "finished_at": time.time()}
    if result is not None:
        values.update(result=result, progress=1.0)
    return set_running(plane, run_id, **values)


def cancel(plane: ControlPlane, run_id: int, who: Identity | None = None) -> bool:
    """Mark a queued or running run cancelled; False if it had already ended (or is unknown).
    A cancel by `who` that changed something is written to the audit log with it."""
    with plane.write() as conn:
        changed: int = conn.execute(update(vr).where(vr.c.id == run_id, vr.c.state.in_(ACTIVE))
                                    .values(state=CANCELLED, finished_at=time.time())).rowcount
        if changed and who is not None:
            audit.record(conn, who, "validation.cancel", f"validation_run:{run_id}")
    return changed > 0


def states_of(plane: ControlPlane, run_ids: list[int]) -> dict[int, str]:
    if not run_ids:
        return {}
    with plane.engine.connect() as conn:
        return {r.id: r.state for r in conn.execute(
            select(vr.c.id, vr.c.state).where(among(conn, vr.c.id, run_ids)))}


def requeue(plane: ControlPlane, run_ids: list[int]) -> None:
    """Put this replica's running runs back in the queue (a graceful stop: they start over)."""
    if not run_ids:
        return
    with plane.write() as conn:
        conn.execute(update(vr).where(among(conn, vr.c.id, run_ids), vr.c.state == RUNNING).values(
            state=QUEUED, replica=None, pid=None, started_at=None, progress=0.0, message=None))


def fail_orphans(plane: ControlPlane) -> list[int]:
    """Fail the runs left ``running`` by a process that is gone; their ids.

    On SQLite one process owns the database, so every running run at start-up is an orphan. On
    PostgreSQL a run is an orphan when its replica is this one (restarted under the same name),
    or a replica of this host whose process no longer exists; runs of live replicas elsewhere
    are theirs to finish.
    """
    with plane.engine.connect() as conn:
        rows = conn.execute(select(vr.c.id, vr.c.replica).where(vr.c.state == RUNNING)).all()
    sqlite = is_sqlite(plane.engine)
    orphans = [r.id for r in rows if sqlite or replica_gone(r.replica, plane.replica)]
    if orphans:
        with plane.write() as conn:
            conn.execute(update(vr).where(among(conn, vr.c.id, orphans), vr.c.state == RUNNING)
                         .values(state=FAILED, message=RESTARTED, finished_at=time.time()))
    return orphans


def replica_gone(replica: str | None, me: str) -> bool:
    """Whether the replica named `replica` is certainly not running (``host:pid`` names of this
    host can be checked; other names only when they are this replica's own)."""
    if replica is None or replica == me:
        return True
    host, _, pid = replica.rpartition(":")
    if host != socket.gethostname() or not (pid.isascii() and pid.isdigit()):
        return False
    return not pid_alive(int(pid))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def result_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result as a mapping (some drivers hand JSON back as text)."""
    value = row.get("result")
    if isinstance(value, str):
        loaded: dict[str, Any] = json.loads(value)
        return loaded
    return value if isinstance(value, dict) else None
