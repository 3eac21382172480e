"""Attempts from the agent's side: lease queued work, report it running or ended; expiry.

Every change here is one transaction, conditional on what it read (the task's version, the
attempt's state and fencing token), so two agents, two replicas or a retried request can never
both win. A lease is claimed only for work that fits the free units the agent reports in the same
request; on PostgreSQL the queued rows are claimed with ``FOR UPDATE SKIP LOCKED`` so concurrent
lease calls never wait on each other.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from computility.domain.site import MILLI
from computility.server import states
from computility.server.auth import Identity
from computility.server.db import schema as db
from computility.server.db.among import among
from computility.server.db.engine import is_sqlite
from computility.server.observability.logging import bind, log_context
from computility.server.plane import ControlPlane
from computility.server.problems import ApiError, invalid, not_found
from computility.server.store.billing import bill
from computility.server.store.sites import (
    MAX_PRICE_STOP,
    _cpu_ids,
    _own_site,
    free_units,
    record_free,
)
from computility.wire.api import AttemptReport, Lease, ReportReply

log = logging.getLogger("computility.attempts")


def claim(
    plane: ControlPlane, who: Identity, free: dict[str, float], max_tasks: int,
    since: float | None = None,
) -> list[Lease]:
    """Lease queued tasks of the agent's site that fit the capacity it reports free now.

    `since` is when the agent reported `free` (the start of a long poll): what its attempts
    leased before then released since (reported ended here, or given up) is free again, so a
    poll that waits does not hold on to the capacity the agent saw when it asked.
    """
    site = _own_site(who)
    now = time.time()
    ttl = plane.settings.lease_ttl_s
    with plane.write() as conn:
        room = free_units(conn, site, free)
        if since is not None:
            _add_released(conn, site, since, room)
        reported = dict(room)
        query = (
            select(db.tasks.c.id, db.tasks.c.version, db.tasks.c.pool_id, db.tasks.c.units,
                   db.tasks.c.spec)
            .where(db.tasks.c.site_id == site, db.tasks.c.state == states.QUEUED)
            .order_by(db.tasks.c.id).limit(max_tasks * 4)
        )
        if not is_sqlite(plane.engine):
            query = query.with_for_update(skip_locked=True)
        chosen: list[Any] = []
        for t in conn.execute(query).mappings():
            left = room.get(t["pool_id"], 0)
            if t["units"] <= left and len(chosen) < max_tasks:
                room[t["pool_id"]] = left - int(t["units"])
                chosen.append(t)
        if not chosen:
            record_free(conn, site, reported)
            return []
        ids = [t["id"] for t in chosen]
        numbers = dict(conn.execute(
            select(db.attempts.c.task_id, func.max(db.attempts.c.number))
            .where(among(conn, db.attempts.c.task_id, ids)).group_by(db.attempts.c.task_id)).all())
        leases = []
        for t in chosen:
            states.check_task(states.QUEUED, states.LEASED)
            done = conn.execute(
                update(db.tasks).where(db.tasks.c.id == t["id"],
                                       db.tasks.c.version == t["version"],
                                       db.tasks.c.state == states.QUEUED)
                .values(state=states.LEASED, version=db.tasks.c.version + 1, updated_at=now)
            ).rowcount
            if not done:
                continue
            number = int(numbers.get(t["id"]) or 0) + 1
            token = secrets.randbits(62)
            attempt_id = conn.execute(insert(db.attempts).returning(db.attempts.c.id).values(
                task_id=t["id"], number=number, site_id=site, pool_id=t["pool_id"],
                units=t["units"], state=states.LEASED, token=token, leased_at=now,
                lease_expires_at=now + ttl, gb_moved=0.0, duplicates=0,
            )).scalar_one()
            leases.append(Lease(attempt=attempt_id, token=token, task=t["id"], number=number,
                                pool=t["pool_id"], units=int(t["units"]),
                                expires_at=now + ttl, spec=t["spec"]))
        record_free(conn, site, reported)
    plane.metrics.leases_granted.inc(len(leases))
    return leases


def to_cancel(plane: ControlPlane, who: Identity, known: list[int]) -> list[int]:
    """The site's live attempts whose tasks were cancelled, less those the agent is stopping."""
    site = _own_site(who)
    with plane.engine.connect() as conn:
        rows = conn.execute(
            select(db.attempts.c.id).join(db.tasks, db.tasks.c.id == db.attempts.c.task_id)
            .where(db.attempts.c.site_id == site,
                   db.attempts.c.state.in_((states.LEASED, states.RUNNING)),
                   db.tasks.c.cancel_requested.is_(True))).scalars().all()
    skip = set(known)
    return [int(a) for a in rows if a not in skip]


def _add_released(conn: Connection, site: str, since: float, room: dict[str, int]) -> None:
    released = conn.execute(
        select(db.attempts.c.pool_id, func.sum(db.attempts.c.units))
        .where(db.attempts.c.site_id == site, db.attempts.c.ended_at >= since,
               db.attempts.c.leased_at < since)
        .group_by(db.attempts.c.pool_id)).all()
    if not released:
        return
    capacity = {p: int(n) * (1 if d in _cpu_ids() else MILLI) for p, d, n in conn.execute(
        select(db.pools.c.pool_id, db.pools.c.device, db.pools.c.count)
        .where(db.pools.c.site_id == site)).all()}
    for pool, units in released:
        if pool in room:
            room[pool] = min(capacity.get(pool, 0), room[pool] + int(units or 0))


def report(
    plane: ControlPlane, who: Identity, attempt_id: int, body: AttemptReport
) -> ReportReply:
    """Apply an agent's report on one of its attempts.

    A report whose token is not the attempt's, or on an attempt the server has already given up
    (lease expired, site lost), is refused (409) and counted as a duplicate: the work it describes
    may be running elsewhere now. A repeat of the report that ended the attempt is answered with
    the recorded outcome and bills nothing more.
    """
    site = _own_site(who)
    now = time.time()
    stale: str | None = None
    with plane.write() as conn:
        query = select(db.attempts).where(db.attempts.c.id == attempt_id,
                                          db.attempts.c.site_id == site)
        if not is_sqlite(plane.engine):
            query = query.with_for_update()
        a = conn.execute(query).mappings().first()
        if a is None:
            raise not_found("attempt", attempt_id)
        bind(task_id=a["task_id"])
        repeat = a["state"] in states.ATTEMPT_TERMINAL and a["state"] != states.LOST and (
            body.state == "exited" or a["state"] in (states.SUCCEEDED, states.FAILED,
                                                     states.CANCELLED))
        if a["token"] != body.token or (a["state"] in states.ATTEMPT_TERMINAL and not repeat):
            # Counted in this transaction, refused after it commits: the count must last.
            _count_duplicate(plane, conn, attempt_id)
            stale = a["state"]
        elif repeat:
            _count_duplicate(plane, conn, attempt_id)
            return ReportReply(attempt=attempt_id, state=a["state"], billed=False)
        if stale is None:
            return _apply(plane, conn, a, body, now)
    raise ApiError(409, "Conflict", f"attempt {attempt_id}: stale fencing token or attempt "
                   f"already {stale}; stop this work")


def _apply(
    plane: ControlPlane, conn: Connection, a: Any, body: AttemptReport, now: float
) -> ReportReply:
    task = conn.execute(select(db.tasks).where(db.tasks.c.id == a["task_id"])).mappings().one()
    if body.state == "running":
        return _running(plane, conn, a, task, now)
    if body.state in ("failed_to_start", "interrupted"):
        default = ("failed to start on the site" if body.state == "failed_to_start"
                   else "interrupted by the site")
        _infra_failure(conn, a, task, now, body.reason or default)
        return ReportReply(attempt=a["id"], state=states.LOST)
    return _exited(plane, conn, a, task, body, now)


def _count_duplicate(plane: ControlPlane, conn: Connection, attempt_id: int) -> None:
    plane.duplicates += 1
    plane.metrics.duplicate_reports.inc()
    conn.execute(update(db.attempts).where(db.attempts.c.id == attempt_id)
                 .values(duplicates=db.attempts.c.duplicates + 1))


def _set_task(conn: Connection, task: Any, new: str, now: float, **values: Any) -> None:
    states.check_task(task["state"], new)
    done = conn.execute(
        update(db.tasks).where(db.tasks.c.id == task["id"], db.tasks.c.version == task["version"])
        .values(state=new, version=db.tasks.c.version + 1, updated_at=now, **values)
    ).rowcount
    if not done:
        raise ApiError(409, "Conflict", f"task {task['id']} changed meanwhile; retry the report")


def _set_attempt(conn: Connection, a: Any, new: str, **values: Any) -> None:
    states.check_attempt(a["state"], new)
    conn.execute(update(db.attempts).where(db.attempts.c.id == a["id"],
                                           db.attempts.c.state == a["state"])
                 .values(state=new, **values))


def _running(
    plane: ControlPlane, conn: Connection, a: Any, task: Any, now: float
) -> ReportReply:
    if a["state"] == states.RUNNING:
        return ReportReply(attempt=a["id"], state=states.RUNNING,
                           cancel=bool(task["cancel_requested"]))
    _set_attempt(conn, a, states.RUNNING, started_at=now)
    if a["number"] == 1:
        # The wait before a task's first start (a commit lost after this, and the report
        # retried, would count one start twice: rare, and harmless to a histogram).
        plane.metrics.queue_wait.observe(max(0.0, now - float(task["submitted_at"])))
    if task["state"] == states.LEASED:
        _set_task(conn, task, states.RUNNING, now)
    return ReportReply(attempt=a["id"], state=states.RUNNING,
                       cancel=bool(task["cancel_requested"]))


def _exited(
    plane: ControlPlane, conn: Connection, a: Any, task: Any, body: AttemptReport, now: float
) -> ReportReply:
    if body.exit_code is None and body.signal is None:
        raise invalid("exit_code", "the exit code (or signal) of an exited attempt", 422)
    started = a["started_at"] or a["leased_at"]
    run_s = body.run_s if body.run_s is not None else max(0.0, now - started)
    run_s = min(run_s, float(task["timeout_s"]))
    exit_code = body.exit_code if body.exit_code is not None else 128 + int(body.signal or 0)
    cancelled = bool(task["cancel_requested"])
    ok = exit_code == 0 and body.signal is None
    attempt_state = states.CANCELLED if cancelled and not ok else (
        states.SUCCEEDED if ok else states.FAILED)
    _set_attempt(conn, a, attempt_state, ended_at=now, exit_code=exit_code, signal=body.signal,
                 run_s=run_s, gb_moved=body.gb_moved, started_at=started,
                 reason=body.reason,
                 usage=body.usage.model_dump(exclude_none=True) if body.usage else None)
    billed = dict(a)
    billed.update(started_at=started, gb_moved=body.gb_moved)
    bill(plane, conn, billed, task, run_s, now)
    done = {"finished_at": now, "exit_code": exit_code, "signal": body.signal}
    if ok:
        _set_task(conn, task, states.SUCCEEDED, now, reason=None, **done)
    elif cancelled:
        stopped = (task["reason"] or "").startswith(MAX_PRICE_STOP)
        _set_task(conn, task, states.FAILED if stopped else states.CANCELLED, now, **done)
    else:
        failures = int(task["user_failures"]) + 1
        if failures <= int(task["retries"]):
            _set_task(conn, task, states.PENDING, now, user_failures=failures, site_id=None,
                      pool_id=None, exit_code=exit_code, signal=body.signal,
                      reason=f"attempt {a['number']} exited {exit_code}; retry "
                             f"{failures} of {task['retries']}")
        else:
            _set_task(conn, task, states.FAILED, now, user_failures=failures,
                      reason=body.reason or f"exited {exit_code}", **done)
    # Pools last (the lock order of every writer). Its devices are free again: counted at once,
    # not only at the next heartbeat.
    pool = conn.execute(select(db.pools.c.free_units, db.pools.c.count, db.pools.c.device).where(
        db.pools.c.site_id == a["site_id"], db.pools.c.pool_id == a["pool_id"])).first()
    if pool is not None:
        capacity = int(pool[1]) * (1 if pool[2] in _cpu_ids() else MILLI)
        conn.execute(update(db.pools).where(db.pools.c.site_id == a["site_id"],
                                            db.pools.c.pool_id == a["pool_id"])
                     .values(free_units=min(capacity, int(pool[0]) + int(a["units"]))))
    plane.wake_scheduler.set()
    return ReportReply(attempt=a["id"], state=attempt_state, billed=True)


def _infra_failure(conn: Connection, a: Any, task: Any, now: float, why: str) -> None:
    """The attempt is lost through no fault of the task: re-place it free, at most 5 times."""
    _set_attempt(conn, a, states.LOST, ended_at=now, reason=why)
    failures = int(task["infra_failures"]) + 1
    if task["cancel_requested"]:
        _set_task(conn, task, states.CANCELLED, now, finished_at=now, infra_failures=failures)
    elif failures > states.MAX_INFRA_FAILURES:
        _set_task(conn, task, states.LOST, now, finished_at=now, infra_failures=failures,
                  reason=f"lost: {why} ({failures} infrastructure failures)")
    else:
        _set_task(conn, task, states.PENDING, now, infra_failures=failures, site_id=None,
                  pool_id=None, reason=f"re-placed at no charge: {why}")


def expire(plane: ControlPlane, now: float) -> int:
    """End every lease past its expiry (its task is re-placed free); returns how many."""
    with plane.write() as conn:
        expired = conn.execute(
            select(db.attempts).where(
                db.attempts.c.state.in_((states.LEASED, states.RUNNING)),
                db.attempts.c.lease_expires_at < now)
        ).mappings().all()
        ended = []
        for a in expired:
            try:
                # One savepoint per attempt: a report that changed the attempt or its task since
                # they were read (PostgreSQL lets it commit in between) undoes only this one,
                # which the next housekeeping looks at afresh, not every expiry of the round.
                with conn.begin_nested():
                    _expire_one(conn, a, now)
            except ApiError as error:
                if error.status != 409:
                    raise
                continue
            ended.append(a)
    expired = ended
    plane.metrics.lease_expiries.inc(len(expired))
    for a in expired:
        with log_context(task_id=a["task_id"], site_id=a["site_id"]):
            log.warning("lease of attempt %s expired unrenewed; its task is re-placed free of "
                        "charge", a["id"])
    return len(expired)


def _expire_one(conn: Connection, a: Any, now: float) -> None:
    task = conn.execute(select(db.tasks).where(db.tasks.c.id == a["task_id"])).mappings().one()
    if task["state"] not in states.ACTIVE:
        _set_attempt(conn, a, states.LOST, ended_at=now, reason="lease expired")
        return
    _infra_failure(conn, a, task, now, f"lease expired on site {a['site_id']}")


def grace_after_restart(plane: ControlPlane, now: float) -> None:
    """After a restart, no lease expires until one TTL has passed: agents get to renew."""
    with plane.write() as conn:
        conn.execute(update(db.attempts).where(
            db.attempts.c.state.in_((states.LEASED, states.RUNNING)),
            db.attempts.c.lease_expires_at < now + plane.settings.lease_ttl_s,
        ).values(lease_expires_at=now + plane.settings.lease_ttl_s))


def list_for_task(plane: ControlPlane, task_id: int) -> list[dict[str, Any]]:
    with plane.engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(db.attempts).where(db.attempts.c.task_id == task_id)
            .order_by(db.attempts.c.number)).mappings()]
