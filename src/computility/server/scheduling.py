"""The scheduling loop: pending tasks in, placements out, through the core's batch placement.

Each cycle (at least every `Settings.cycle_s`, and at once after a submission or a finished
attempt) the leader:

1. ends expired leases and marks silent sites offline (their queued tasks go back to pending);
2. reads every pending and held task and the pools' free units (what the agents last reported,
   less what is already queued there and not yet leased);
3. places them with `computility.scheduler.batch` — `classify` then `greedy_fill`, per placement
   policy and per group of tenants allowed on the same sites — the code the simulator runs;
4. applies the tenants' concurrent-CU quotas: a placed task that would take its tenant over its
   quota is held instead, with the reason;
5. writes the decisions in one transaction, each conditional on the task's version, and only if
   this replica still holds the leadership epoch (`Leadership.fenced`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, select, update

from computility.scheduler.batch import classify, greedy_fill
from computility.server import states
from computility.server.db import schema as db
from computility.server.leadership import Leadership
from computility.server.live import Demand, LiveNetwork, site_rules
from computility.server.plane import ControlPlane
from computility.server.store.attempts import expire
from computility.server.store.pricing import quote_rows

log = logging.getLogger("computility.scheduling")

REQUEUE_AFTER_S = 60.0
"""A task queued on a site that has not leased it for this long is placed again."""


@dataclass
class CycleReport:
    pending: int = 0
    placed: int = 0
    held: int = 0
    expired: int = 0
    offline: int = 0
    wall_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    fenced_out: bool = False


_COLUMNS = (
    db.tasks.c.id, db.tasks.c.version, db.tasks.c.state, db.tasks.c.tenant_id,
    db.tasks.c.policy, db.tasks.c.cpus, db.tasks.c.gpu_milli, db.tasks.c.devices,
    db.tasks.c.run_s, db.tasks.c.timeout_s, db.tasks.c.ref_device, db.tasks.c.location,
    db.tasks.c.rules, db.tasks.c.max_price_micro, db.tasks.c.precision, db.tasks.c.reason,
)


def housekeeping(plane: ControlPlane, now: float) -> tuple[int, int]:
    """Expire leases, take silent sites offline, re-place work stuck on a site; (expired,
    offline)."""
    expired = expire(plane, now)
    cutoff = now - plane.settings.offline_after_s
    with plane.write() as conn:
        gone = conn.execute(select(db.sites.c.id).where(
            db.sites.c.online.is_(True), db.sites.c.last_seen_at < cutoff)).scalars().all()
        if gone:
            conn.execute(update(db.sites).where(db.sites.c.id.in_(gone)).values(
                online=False, version=db.sites.c.version + 1))
        stuck = (db.tasks.c.state == states.QUEUED) & (
            db.tasks.c.site_id.in_(gone) if gone else False
        )
        stuck = stuck | ((db.tasks.c.state == states.QUEUED)
                         & (db.tasks.c.updated_at < now - REQUEUE_AFTER_S))
        conn.execute(update(db.tasks).where(stuck).values(
            state=states.PENDING, site_id=None, pool_id=None, units=None, cu=None,
            version=db.tasks.c.version + 1, updated_at=now,
            reason="placed again: its site did not lease it"))
    return expired, len(gone)


def cycle(plane: ControlPlane, leadership: Leadership, now: float | None = None) -> CycleReport:
    """One scheduling pass (see the module docstring)."""
    now = time.time() if now is None else now
    t0 = time.perf_counter()
    report = CycleReport()
    report.expired, report.offline = housekeeping(plane, now)
    t1 = time.perf_counter()
    live = plane.live()
    with plane.engine.connect() as conn:
        rows: list[Any] = list(conn.execute(select(*_COLUMNS).where(
            db.tasks.c.state.in_((states.PENDING, states.HELD))).order_by(db.tasks.c.id)))
        free_rows = conn.execute(select(db.pools.c.site_id, db.pools.c.pool_id,
                                        db.pools.c.free_units)).all()
        queued = conn.execute(
            select(db.tasks.c.site_id, db.tasks.c.pool_id, func.sum(db.tasks.c.units))
            .where(db.tasks.c.state == states.QUEUED)
            .group_by(db.tasks.c.site_id, db.tasks.c.pool_id)).all()
        quotas = dict(conn.execute(select(db.tenants.c.id, db.tenants.c.concurrent_cu_quota)
                                   .where(db.tenants.c.concurrent_cu_quota.is_not(None))).all())
        in_use = dict(conn.execute(
            select(db.tasks.c.tenant_id, func.sum(db.tasks.c.cu)).where(
                db.tasks.c.state.in_((states.QUEUED, states.LEASED, states.RUNNING)))
            .group_by(db.tasks.c.tenant_id)).all())
    report.pending = len(rows)
    t2 = time.perf_counter()
    report.timings["read_s"] = t2 - t1
    if not rows or live.empty:
        report.wall_s = time.perf_counter() - t0
        return report
    free = np.zeros(len(live.pool_keys), np.int64)
    for site, pool, units in free_rows:
        row = live.pool_row(site, pool)
        if row is not None:
            free[row] = units
    for site, pool, units in queued:
        row = live.pool_row(site, pool)
        if row is not None:
            free[row] -= int(units or 0)
    free = np.maximum(free, 0) * live.online
    choice = _place(live, rows, free, now)
    t3 = time.perf_counter()
    report.timings["place_s"] = t3 - t2
    writes, holds = _decide(live, rows, choice, quotas, in_use)
    report.placed, report.held = len(writes), len(holds)
    report.fenced_out = not _write(plane, leadership, rows, writes, holds, now)
    report.timings["write_s"] = time.perf_counter() - t3
    report.wall_s = time.perf_counter() - t0
    return report


def _demand(r: Any) -> Demand:
    return Demand(
        cpus=r.cpus, gpu_milli=r.gpu_milli,
        devices=tuple(r.devices) if r.devices else None, run_s=r.run_s, timeout_s=r.timeout_s,
        ref_device=r.ref_device, policy=r.policy, location=r.location, rules=r.rules,
        precision=r.precision,
    )


def _place(live: LiveNetwork, rows: list[Any], free: np.ndarray, now: float) -> np.ndarray:
    """Per task row: the pool row it is placed on, or -1."""
    demands = [_demand(r) for r in rows]
    tenants = [r.tenant_id for r in rows]
    workload = live.workload(list(range(len(rows))), demands, tenants, now)
    position = np.empty(len(rows), np.int64)
    position[workload.ids] = np.arange(len(rows))  # workload row of each task row
    rules = {}
    for i, r in _rules(live, rows, demands, tenants, now).items():
        rules[int(position[i])] = r
    speed = live.speed(workload)
    choice = np.full(len(rows), -1, np.int64)
    groups: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    masks: dict[bytes, np.ndarray] = {}
    for i, (d, t) in enumerate(zip(demands, tenants, strict=True)):
        mask = live.allowed_pools(t)
        key = mask.tobytes()
        masks[key] = mask
        groups[(d.policy, key)].append(i)
    left = free.copy()
    placements: dict[str, Any] = {}
    for (policy, key), members in sorted(groups.items()):
        if policy not in placements:
            placements[policy] = live.placement(workload, policy, speed, rules)
        placement = placements[policy]
        usable = np.where(masks[key], left, 0)
        task_rows = position[np.asarray(members, np.int64)]
        classes = classify(placement, task_rows, 0.0 + _cost_now(now), usable)
        assignment = greedy_fill(classes, usable)
        pools = assignment.pools()
        for workload_row, pool in zip(task_rows.tolist(), pools.tolist(), strict=True):
            if pool < 0:
                continue
            task_row = int(workload.ids[workload_row])
            choice[task_row] = pool
            left[pool] -= _units(live, demands[task_row], pool)
    return choice


def _rules(
    live: LiveNetwork, rows: list[Any], demands: list[Demand], tenants: list[str], now: float
) -> dict[int, Any]:
    """Per task row with placement rules or a `max_price`: the sites it may go to.

    A task with a `max_price` may go only where even its longest run stays within it; the quotes
    are computed once per tenant for all such tasks (alike demands share one computation).
    """
    out = {i: r for i, d in enumerate(demands) if (r := site_rules(d.rules)) is not None}
    limited: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r.max_price_micro is not None:
            limited[tenants[i]].append(i)
    for tenant, members in limited.items():
        quotes = quote_rows(live, [demands[i] for i in members], tenant, now)
        for i, lines in zip(members, quotes, strict=True):
            limit = rows[i].max_price_micro
            affordable = sorted({q.site for q in lines if q.max_micro <= limit})
            rule = site_rules({**(demands[i].rules or {}), "sites": affordable})
            if rule is not None:
                out[i] = rule
    return out


def _cost_now(now: float) -> float:
    from computility.server.live import cost_time

    return cost_time(now)


def _units(live: LiveNetwork, d: Demand, pool: int) -> int:
    return d.cpus if live.network.arrays.pool_is_cpu[pool] else d.gpu_milli


def _decide(
    live: LiveNetwork, rows: list[Any], choice: np.ndarray, quotas: dict[str, float],
    in_use: dict[str, float],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Placements to write, and tasks to hold because of their tenant's concurrent-CU quota."""
    writes, holds = [], []
    used = {t: float(in_use.get(t) or 0.0) for t in quotas}
    cu_unit = live.cost.cu_per_unit
    for i, r in enumerate(rows):
        pool = int(choice[i])
        quota = quotas.get(r.tenant_id)
        if pool < 0:
            if r.state == states.HELD and quota is not None:
                continue  # stays held until its quota and a place allow
            continue
        units = r.cpus if live.network.arrays.pool_is_cpu[pool] else r.gpu_milli
        cu = float(units * cu_unit[pool])
        if quota is not None:
            if used[r.tenant_id] + cu > quota + 1e-9:
                reason = (f"held: over the tenant's concurrent quota ({used[r.tenant_id]:.1f} "
                          f"of {quota:g} CU in use, this task needs {cu:.1f})")
                if r.state != states.HELD or r.reason != reason:
                    holds.append({"tid": r.id, "v": r.version, "s": r.state, "reason": reason})
                continue
            used[r.tenant_id] += cu
        site, pool_id = live.pool_keys[pool]
        writes.append({"tid": r.id, "v": r.version, "s": r.state, "site": site,
                       "pool": pool_id, "units": units, "cu": cu})
    return writes, holds


def _write(
    plane: ControlPlane, leadership: Leadership, rows: list[Any], writes: list[dict[str, Any]],
    holds: list[dict[str, Any]], now: float,
) -> bool:
    if not writes and not holds:
        return True
    for w in writes:
        states.check_task(w["s"], states.QUEUED)
    for h in holds:
        if h["s"] != states.HELD:
            states.check_task(h["s"], states.HELD)
    t = db.tasks
    with plane.write() as conn:
        if not leadership.fenced(conn):
            log.warning("not the leader any more: %d decisions dropped", len(writes))
            return False
        if writes:
            conn.execute(
                update(t).where(t.c.id == bindparam("tid"), t.c.version == bindparam("v"))
                .values(state=states.QUEUED, site_id=bindparam("site"),
                        pool_id=bindparam("pool"), units=bindparam("units"),
                        cu=bindparam("cu"), version=t.c.version + 1, updated_at=now,
                        reason=None),
                writes,
            )
        if holds:
            conn.execute(
                update(t).where(t.c.id == bindparam("tid"), t.c.version == bindparam("v"))
                .values(state=states.HELD, reason=bindparam("reason"),
                        version=t.c.version + 1, updated_at=now),
                holds,
            )
    if writes:
        plane.placed()
    return True


class SchedulingLoop:
    """A background thread running `cycle` while this replica leads."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.leadership = Leadership(plane, plane.settings.leader_stale_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduling-loop", daemon=True)
        self.last: CycleReport | None = None
        self.cycles = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.plane.wake_scheduler.set()
        self._thread.join(timeout=10)
        self.leadership.close()

    def _run(self) -> None:
        plane = self.plane
        while not self._stop.is_set():
            plane.wake_scheduler.clear()
            try:
                if self.leadership.tick(time.time()):
                    self.last = cycle(plane, self.leadership)
                    self.cycles += 1
            except Exception:
                log.exception("scheduling cycle failed")
            plane.wake_scheduler.wait(plane.settings.cycle_s)
