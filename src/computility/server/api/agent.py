"""The agent protocol: heartbeat, long-poll leases, attempt reports, files.

A lease request waits up to ``wait_s`` (at most 30 s) for work: it returns as soon as the
scheduling loop queues something on the site (the loop wakes every waiter) or a user cancels one
of the site's running attempts (the cancel wakes them too), or empty when the time is up. It
is async so that hundreds of waiting agents hold no threads.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from computility.server.api.deps import Caller, Plane
from computility.server.db import schema as db
from computility.server.db.retry import retrying
from computility.server.problems import ApiError, forbidden, invalid, not_found
from computility.server.store import attempts, sites
from computility.server.store.files import FILE_KINDS, attach, blob_store
from computility.wire.api import (
    AttemptReport,
    Heartbeat,
    HeartbeatReply,
    LeaseRequest,
    Leases,
    ReportReply,
)

router = APIRouter(prefix="/api/v1/agent", tags=["agent"])
AttemptId = Annotated[int, Path(ge=1, le=2**63 - 1)]
POLL_S = 0.5
"""Between wake-ups a waiting lease re-checks the database (another replica may have placed)."""


@router.post("/heartbeat", response_model=HeartbeatReply)
def heartbeat(body: Heartbeat, who: Caller, plane: Plane, request: Request) -> HeartbeatReply:
    reply = retrying(sites.heartbeat, plane, who, body)
    leaving: set[str] = request.app.state.leaving_sites
    if body.leaving and who.site:
        # The agent is shutting down: its open long poll ends now rather than at its timeout,
        # so the agent stops in milliseconds.
        leaving.add(who.site)
        request.app.state.wake_leases()
    else:
        leaving.discard(who.site or "")
    return reply


@router.post("/lease", response_model=Leases)
async def lease(body: LeaseRequest, who: Caller, plane: Plane, request: Request) -> Leases:
    deadline = time.monotonic() + min(body.wait_s, plane.settings.long_poll_max_s)
    wake: asyncio.Event = request.app.state.lease_wake
    asked = time.time()
    while True:
        got = await run_in_threadpool(retrying, attempts.claim, plane, who, body.free,
                                      body.max_tasks, asked)
        stop = await run_in_threadpool(attempts.to_cancel, plane, who, body.stopping)
        left = deadline - time.monotonic()
        if (got or stop or left <= 0 or request.app.state.closing
                or who.site in request.app.state.leaving_sites
                or await request.is_disconnected()):
            return Leases(leases=got, ttl_s=plane.settings.lease_ttl_s, cancel=stop)
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), timeout=min(POLL_S, left))
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            # The service is shutting down with this poll open: end it quietly (the agent
            # retries against the next instance), not as an application error.
            return Leases(leases=[], ttl_s=plane.settings.lease_ttl_s)


@router.post("/attempts/{attempt_id}/report", response_model=ReportReply)
def report(attempt_id: AttemptId, body: AttemptReport, who: Caller, plane: Plane) -> ReportReply:
    return retrying(attempts.report, plane, who, attempt_id, body)


def _own_attempt(plane: Plane, who: Caller, attempt_id: int, token: int | None) -> int:
    if who.role != "agent":
        raise forbidden("this endpoint needs a site's agent key")
    with plane.engine.connect() as conn:
        row = conn.execute(select(db.attempts.c.task_id, db.attempts.c.token).where(
            db.attempts.c.id == attempt_id, db.attempts.c.site_id == who.site)).first()
    if row is None:
        raise not_found("attempt", attempt_id)
    if token is not None and row[1] != token:
        raise ApiError(409, "Conflict", f"attempt {attempt_id}: stale fencing token")
    return int(row[0])


@router.put("/attempts/{attempt_id}/files/{kind}", status_code=204)
async def put_file(
    attempt_id: AttemptId, kind: str, request: Request, who: Caller, plane: Plane,
    x_attempt_token: Annotated[int, Header(ge=0, le=2**63 - 1)],
) -> Response:
    if kind not in FILE_KINDS:
        raise invalid("kind", f"one of {', '.join(FILE_KINDS)}", 400)
    task_id = await run_in_threadpool(_own_attempt, plane, who, attempt_id, x_attempt_token)
    digest, size = await blob_store(plane).put_async(request.stream())
    await run_in_threadpool(retrying, attach, plane, task_id, attempt_id, kind, digest, size)
    return Response(status_code=204)


@router.get("/attempts/{attempt_id}/workdir")
def get_workdir(attempt_id: AttemptId, who: Caller, plane: Plane) -> Response:
    from fastapi.responses import FileResponse

    task_id = _own_attempt(plane, who, attempt_id, None)
    with plane.engine.connect() as conn:
        digest = conn.execute(select(db.tasks.c.workdir).where(db.tasks.c.id == task_id)).scalar()
    if digest is None:
        raise not_found("workdir of task", task_id)
    return FileResponse(blob_store(plane).path(digest), media_type="application/gzip")
