"""The scheduling loop: pending tasks in, placements out, through the core's batch placement.

Each cycle (at least every `Settings.cycle_s`, and at once after a submission or a finished
attempt) the leader, reading the time on the scheduling clock (`ControlPlane.now`) for curves,
deadlines and holds and the wall clock for leases and liveness:

1. ends expired leases and marks silent sites offline (their queued tasks go back to pending);
2. reads every pending and held task and the pools' free units (what the agents last reported,
   less what is already queued there and not yet leased);
3. holds for a later hour the tasks with a deadline under a shifting policy whose best option,
   by the core's scoring with holds, is a cheaper or greener hour (`computility.server.shifting`;
   a task held so stays ``held`` until its ``not_before``, then is placed as any other);
4. places the others with `computility.scheduler.batch` — `classify` then `greedy_fill`, per
   placement policy and per group of tenants allowed on the same sites — the code the simulator
   runs, with each task's deadline ruling out late pools while another meets it;
5. applies the tenants' concurrent-CU quotas: a placed task that would take its tenant over its
   quota is held instead, with the reason;
6. writes the decisions in one transaction, each conditional on the task's version, and only if
   this replica still holds the leadership epoch (`Leadership.fenced`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, select, update

from computility.scheduler.batch import classify, greedy_fill
from computility.scheduler.placement import Placement
from computility.scheduler.policies import SHIFTING_POLICIES
from computility.server import placements, states
from computility.server.db import schema as db
from computility.server.db.among import among
from computility.server.db.retry import retrying
from computility.server.leadership import Leadership
from computility.server.live import Demand, LiveNetwork, site_rules
from computility.server.placements import Placements
from computility.server.plane import ControlPlane
from computility.server.sampling import maybe_sample
from computility.server.shifting import DECISIONS_PER_CYCLE, HELD_PREFIX, decide_holds
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
    shifted: int = 0
    """Of `held`: tasks held for a cheaper or greener hour this cycle."""
    expired: int = 0
    offline: int = 0
    wall_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    fenced_out: bool = False


PENDING_SQL = (
    "SELECT id, version, state, tenant_id, policy, cpus, gpu_milli, "
    "NULLIF(CAST(devices AS TEXT), 'null'), run_s, timeout_s, ref_device, location, "
    "NULLIF(CAST(rules AS TEXT), 'null'), max_price_micro, precision, reason, dataset, "
    "data_local, deadline_at, not_before FROM tasks "
    "WHERE state IN ('pending', 'held') ORDER BY id"
)
"""JSON columns come back as text, NULL where the JSON is null (stored either way), so only
the few tasks that have them pay for decoding."""


@dataclass
class Pending:
    """The pending and held tasks as columns, read straight from the driver: a cycle over 10^5
    tasks cannot afford an object per row."""

    id: list[int]
    version: list[int]
    state: list[str]
    tenant: list[str]
    policy: list[str]
    cpus: list[int]
    gpu_milli: list[int]
    devices: list[tuple[str, ...] | None]
    run_s: list[float]
    timeout_s: list[float]
    ref_device: list[str | None]
    location: list[str | None]
    rules: list[Any]
    max_price: list[int | None]
    precision: list[str]
    reason: list[str | None]
    dataset: list[str | None]
    data_local: list[bool]
    deadline_at: list[float | None]
    not_before: list[float | None]

    @classmethod
    def read(cls, conn: Any) -> Pending:
        # The driver's own cursor: plain tuples, no per-row result objects.
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(PENDING_SQL)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        if not rows:
            return cls(*([] for _ in fields(cls)))
        cols = [list(c) for c in zip(*rows, strict=True)]
        cols[7] = [None if v is None else tuple(json.loads(v)) for v in cols[7]]
        cols[12] = [None if v is None else json.loads(v) for v in cols[12]]
        cols[17] = [bool(v) for v in cols[17]]  # SQLite answers 0 / 1
        return cls(*cols)

    def __len__(self) -> int:
        return len(self.id)

    def demand(self, i: int) -> Demand:
        return Demand(self.cpus[i], self.gpu_milli[i], self.devices[i], self.run_s[i],
                      self.timeout_s[i], self.ref_device[i], self.policy[i], self.location[i],
                      self.rules[i], self.precision[i], self.dataset[i], self.data_local[i],
                      self.deadline_at[i])

    def holding(self, at: float) -> set[int]:
        """Rows held for a later hour that has not come yet at `at`: left as they are."""
        if self.not_before.count(None) == len(self.not_before):  # C speed: none was held
            return set()
        return {i for i, nb in enumerate(self.not_before) if nb is not None and nb > at}


HOUSEKEEPING_S = 1.0
"""Lease expiry and site liveness are checked at most this often (their clocks are tens of
seconds), not on every cycle a burst of submissions triggers."""


def housekeeping(plane: ControlPlane, now: float) -> tuple[int, int]:
    """Expire leases, take silent sites offline, re-place work stuck on a site; (expired,
    offline). Sampling supply and demand is the loop's, after a cycle (`SchedulingLoop`), so
    its writes never lengthen the cycle that places tasks."""
    if now - plane.last_housekeeping < HOUSEKEEPING_S:
        return 0, 0
    plane.last_housekeeping = now
    expired = expire(plane, now)
    cutoff = now - plane.settings.offline_after_s
    with plane.write() as conn:
        gone = conn.execute(select(db.sites.c.id).where(
            db.sites.c.online.is_(True), db.sites.c.last_seen_at < cutoff)).scalars().all()
        if gone:
            conn.execute(update(db.sites).where(among(conn, db.sites.c.id, gone)).values(
                online=False, version=db.sites.c.version + 1))
        stuck = (db.tasks.c.state == states.QUEUED) & (
            among(conn, db.tasks.c.site_id, gone) if gone else False
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
    report.timings["housekeeping_s"] = t1 - t0
    live = plane.live()
    with plane.engine.connect() as conn:
        rows = Pending.read(conn)
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
    at = plane.now()
    holding = rows.holding(at)
    choice, shifts = _place(live, rows, free, at, holding)
    t3 = time.perf_counter()
    report.timings["place_s"] = t3 - t2
    writes, over_quota = placements.decide(
        rows.id, rows.version, rows.state, rows.tenant, rows.cpus, rows.gpu_milli, choice,
        live.network.arrays.pool_is_cpu, live.cost.cu_per_unit, live.pool_keys, quotas, in_use)
    holds = [{"tid": rows.id[i], "v": rows.version[i], "s": rows.state[i], "to": states.HELD,
              "reason": reason, "nb": rows.not_before[i]} for i, reason in over_quota
             if rows.state[i] != states.HELD or rows.reason[i] != reason]
    report.placed, report.held, report.shifted = len(writes), len(holds) + len(shifts), len(shifts)
    holds += [{"tid": rows.id[i], "v": rows.version[i], "s": rows.state[i], "to": states.HELD,
               "reason": reason, "nb": until} for i, (until, reason) in shifts.items()]
    holds += _released(rows, choice, holding, at)
    # A lost connection (a new leader ends a silent one's sessions) is retried on a fresh
    # one, where the epoch check refuses the write.
    report.fenced_out = not retrying(_write, plane, leadership, rows, writes, holds, now)
    report.timings["write_s"] = time.perf_counter() - t3
    report.wall_s = time.perf_counter() - t0
    return report


def _place(
    live: LiveNetwork, rows: Pending, free: np.ndarray, now: float, holding: set[int],
) -> tuple[np.ndarray, dict[int, tuple[float, str]]]:
    """Per task row: the pool row it is placed on, or -1; and the rows to hold for a later
    hour, each with (the hold's end, the reason). Rows in `holding` are left out."""
    tenants = rows.tenant
    workload = live.workload_from_columns(
        list(range(len(rows))), rows.cpus, rows.gpu_milli, rows.devices, rows.run_s,
        rows.timeout_s, rows.ref_device, rows.location, tenants, now, rows.dataset,
        rows.data_local, rows.deadline_at)
    position = np.empty(len(rows), np.int64)
    position[workload.ids] = np.arange(len(rows))  # workload row of each task row
    rules = {}
    for i, r in _rules(live, rows, now).items():
        rules[int(position[i])] = r
    speed = live.speed(workload)
    choice = np.full(len(rows), -1, np.int64)
    groups: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    masks: dict[bytes, np.ndarray] = {}
    access: dict[str, bytes] = {}
    for t in set(tenants):
        mask = live.allowed_pools(t)
        access[t] = mask.tobytes()
        masks[access[t]] = mask
    for i, (policy, t) in enumerate(zip(rows.policy, tenants, strict=True)):
        if holding and i in holding:
            continue
        groups[(policy, access[t])].append(i)
    left = free.copy()
    placements: dict[str, Any] = {}
    shifts: dict[int, tuple[float, str]] = {}
    budget = [DECISIONS_PER_CYCLE]
    for (policy, key), members in sorted(groups.items()):
        if policy not in placements:
            placements[policy] = (
                next(iter(placements.values())).with_policy(policy) if placements
                else live.placement(workload, policy, speed, rules)
            )
        placement = placements[policy]
        usable = np.where(masks[key], left, 0)
        if policy in SHIFTING_POLICIES:
            held, deferred = _shift(live, rows, placement, position, members, usable, now,
                                    budget)
            shifts.update(held)
            if held or deferred:
                members = [i for i in members if i not in held and i not in deferred]
            if not members:
                continue
        task_rows = position[np.asarray(members, np.int64)]
        classes = classify(placement, task_rows, 0.0 + _cost_now(now), usable)
        assignment = greedy_fill(classes, usable)
        pools = assignment.pools()
        placed = pools >= 0
        task_of = workload.ids[task_rows[placed]]
        choice[task_of] = pools[placed]
        cpu = live.network.arrays.pool_is_cpu[pools[placed]]
        units = np.where(cpu, np.asarray(rows.cpus)[task_of], np.asarray(rows.gpu_milli)[task_of])
        np.subtract.at(left, pools[placed], units)
    return choice, shifts


def _shift(
    live: LiveNetwork, rows: Pending, placement: Placement, position: np.ndarray,
    members: list[int],
    usable: np.ndarray, now: float, budget: list[int],
) -> tuple[dict[int, tuple[float, str]], set[int]]:
    """Of `members` (one group's task rows), those with a deadline and never held that are best
    held for a later hour (see `computility.server.shifting`), keyed by task row; and those left
    undecided for the next cycle, once this cycle's `budget` of decisions is spent."""
    shiftable = [i for i in members
                 if rows.deadline_at[i] is not None and rows.not_before[i] is None]
    if not shiftable:
        return {}, set()
    keys = [(*rows.demand(i)._replace(rules=None), json.dumps(rows.rules[i], sort_keys=True),
             rows.max_price[i]) for i in shiftable]
    decided = decide_holds(
        placement, [int(position[i]) for i in shiftable], keys,
        [float(rows.deadline_at[i] or 0.0) for i in shiftable], usable, now,
        live.network.currency, live.network.utc_offset_minutes, budget[0])
    budget[0] -= decided.scored
    return ({shiftable[k]: hold for k, hold in decided.held.items()},
            {shiftable[k] for k in decided.deferred})


def _released(
    rows: Pending, choice: np.ndarray, holding: set[int], at: float,
) -> list[dict[str, Any]]:
    """Held tasks whose hour has come but that found no room this cycle: back to ``pending``,
    the reason saying so (a task shows ``held`` only while its hold lasts)."""
    out: list[dict[str, Any]] = []
    if rows.not_before.count(None) == len(rows):
        return out
    for i, nb in enumerate(rows.not_before):
        if (nb is None or i in holding or choice[i] >= 0 or rows.state[i] != states.HELD
                or not (rows.reason[i] or "").startswith(HELD_PREFIX)):
            continue
        out.append({"tid": rows.id[i], "v": rows.version[i], "s": states.HELD,
                    "to": states.PENDING, "nb": nb,
                    "reason": f"was {rows.reason[i]}; now waiting for room"})
    return out


def _rules(live: LiveNetwork, rows: Pending, now: float) -> dict[int, Any]:
    """Per task row with placement rules or a `max_price`: the sites it may go to.

    A task with a `max_price` may go only where even its longest run stays within it; the quotes
    are computed once per tenant for all such tasks (alike demands share one computation).
    """
    out = {i: r for i, spec_rules in enumerate(rows.rules)
           if spec_rules and (r := site_rules(spec_rules)) is not None}
    limited: dict[str, list[int]] = defaultdict(list)
    for i, limit in enumerate(rows.max_price):
        if limit is not None:
            limited[rows.tenant[i]].append(i)
    for tenant, members in limited.items():
        quotes = quote_rows(live, [rows.demand(i) for i in members], tenant, now)
        for i, lines in zip(members, quotes, strict=True):
            limit = rows.max_price[i]
            affordable = sorted({q.site for q in lines if q.max_micro <= (limit or 0)})
            rule = site_rules({**(rows.rules[i] or {}), "sites": affordable})
            if rule is not None:
                out[i] = rule
    return out


def _cost_now(now: float) -> float:
    from computility.server.live import cost_time

    return cost_time(now)


def _write(
    plane: ControlPlane, leadership: Leadership, rows: Pending, writes: Placements,
    holds: list[dict[str, Any]], now: float,
) -> bool:
    if not writes and not holds:
        return True
    writes.check()
    for h in holds:
        if h["s"] != h["to"]:
            states.check_task(h["s"], h["to"])
    t = db.tasks
    chunks = ([writes] if len(writes) < placements.PARALLEL_WRITE_MIN
              or plane.engine.dialect.name != "postgresql"
              else writes.split(placements.WRITERS))
    if len(chunks) > 1:
        # Large batches on PostgreSQL: disjoint rows written by parallel transactions, each
        # fenced on its own (every update is conditional on its task's version, so a chunk
        # that lands while another is refused leaves nothing inconsistent).
        with ThreadPoolExecutor(len(chunks)) as pool:
            landed = list(pool.map(lambda chunk: _fenced_write(plane, leadership, chunk, now),
                                   chunks))
        if not all(landed):
            return False
    with plane.write() as conn:
        if not leadership.fenced(conn):
            log.warning("not the leader any more: %d decisions dropped", len(writes))
            return False
        if len(chunks) == 1 and writes:
            placements.write(conn, writes, now)
        if holds:
            conn.execute(
                update(t).where(t.c.id == bindparam("tid"), t.c.version == bindparam("v"))
                .values(state=bindparam("to"), reason=bindparam("reason"),
                        not_before=bindparam("nb"), version=t.c.version + 1, updated_at=now),
                holds,
            )
    if writes:
        plane.placed()
    return True


def _fenced_write(
    plane: ControlPlane, leadership: Leadership, placed: Placements, now: float
) -> bool:
    return retrying(_fenced_write_once, plane, leadership, placed, now)


def _fenced_write_once(
    plane: ControlPlane, leadership: Leadership, placed: Placements, now: float
) -> bool:
    with plane.write() as conn:
        if not leadership.fenced(conn):
            log.warning("not the leader any more: %d decisions dropped", len(placed))
            return False
        placements.write(conn, placed, now)
    return True


BURST_CYCLES = 10
"""Cycles within a second beyond which a woken loop waits `min_cycle_gap_s` between cycles: at
most about 1 / `min_cycle_gap_s` cycles a second on average, but a lone wake-up is answered at
once."""

MAX_CYCLE_SHARE = 1 / 3
"""However often it is woken, the loop spends at most about this share of its time in cycles: a
cycle that took d seconds is followed by the next no sooner than d / share after it began. A
cycle's cost is mostly fixed (reading the queue and the sites, one write transaction), so under a
stream of submissions fewer, larger cycles place the same tasks for a fraction of the time, and
leave the processor and (on SQLite) the write lock to the requests; a lone wake-up after a quiet
spell is still answered at once."""


def cycle_period(spent: float, busy: bool, gap: float) -> float:
    """The least time from one cycle's start to the next's: its share of the loop's time
    (`MAX_CYCLE_SHARE`) and, in a burst of wake-ups, `gap`."""
    return max(spent / MAX_CYCLE_SHARE, gap if busy else 0.0)


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

    def alive(self) -> bool:
        """Whether the loop's thread runs (``/readyz`` checks it)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self.plane.wake_scheduler.set()
        self._thread.join(timeout=10)
        self.leadership.close()
        self.plane.metrics.leader.set(0.0)

    def _run(self) -> None:
        plane = self.plane
        gap = min(plane.settings.min_cycle_gap_s, plane.settings.cycle_s)
        recent: deque[float] = deque(maxlen=BURST_CYCLES)
        while not self._stop.is_set():
            started = time.monotonic()
            recent.append(started)
            plane.wake_scheduler.clear()
            try:
                if self.leadership.tick(time.time()):
                    self.last = cycle(plane, self.leadership)
                    self.cycles += 1
                    plane.metrics.observe_cycle(self.last, time.time())
                    maybe_sample(plane, time.time())
            except Exception:
                log.exception("scheduling cycle failed")
            finally:  # a tick that failed half-way may have dropped the leadership
                plane.metrics.leader.set(1.0 if self.leadership.leading else 0.0)
            spent = time.monotonic() - started
            plane.wake_scheduler.wait(plane.settings.cycle_s)
            # Woken early (a submission, a finished attempt): answer at once while wake-ups are
            # few, so a lone task starts in milliseconds; in a stream of them (BURST_CYCLES
            # cycles within a second) let more arrive, so the stream is placed in a few cycles
            # rather than one cycle each; and never let cycles take more than their share.
            busy = len(recent) == BURST_CYCLES and time.monotonic() - recent[0] < 1.0
            rest = cycle_period(spent, busy, gap) - (time.monotonic() - started)
            if rest > 0:
                self._stop.wait(rest)
