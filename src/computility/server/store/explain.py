"""Why a task runs where it runs, or why it waits; and quotes before submitting.

Both answer from the live network with the scheduler's own figures: the candidates are the pools
the core's feasibility allows (node fits, devices, placement rules, the tenant's access), priced
by the cost model; each candidate's ``score`` is the policy's figure for one task of its class
there (`computility.scheduler.batch.classify`, lower is better), the very number the scheduling
loop fills pools by. A task's deadline is in that workload, so a pool that would finish late is
ruled out (no score) while another meets it.

A task with a deadline under a shifting policy is weighed as the loop weighs it
(`computility.server.shifting.best_start`, the core's scoring with holds): each candidate with
room shows the hold it would get there (``hold_s``), priced and scored as starting after it, and
the quote says when the task would start. A task held for an hour shows every candidate priced
and scored at that hour, as the loop will place it then.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from computility.domain.money import from_micro
from computility.scheduler.batch import classify
from computility.server import states
from computility.server.auth import Identity
from computility.server.live import Demand, LiveNetwork, cost_time, demand_of, site_rules
from computility.server.plane import ControlPlane
from computility.server.shifting import SHIFTING_POLICIES, Start, best_start, hold_reason
from computility.server.store import tasks as task_store
from computility.server.store.pricing import QuoteLine, quote_rows
from computility.wire.api import Candidate, Explanation, Quote
from computility.wire.spec import TaskSpec


def _scores(live: LiveNetwork, d: Demand, tenant: str, now: float) -> dict[int, float]:
    workload = live.workload([0], [d], [tenant], now)
    rules = {0: r} if (r := site_rules(d.rules)) is not None else None
    placement = live.placement(workload, d.policy, live.speed(workload), rules)
    classes = classify(placement, np.zeros(1, np.int64), cost_time(now))
    if classes.n_classes == 0:
        return {}
    pools, cost = classes.row(int(classes.class_of[0]))
    return {int(p): float(c) for p, c in zip(pools.tolist(), cost.tolist(), strict=True)
            if np.isfinite(c)}


def _candidates(
    lines: list[QuoteLine], scores: dict[int, float], chosen: tuple[str | None, str | None],
    holds: dict[int, float] | None = None,
) -> list[Candidate]:
    holds = holds or {}
    return [
        Candidate(site=q.site, pool=q.pool, device=q.device, region=q.region, run_s=q.run_s,
                  price=from_micro(q.price_micro), max_price=from_micro(q.max_micro),
                  carbon_kg=q.carbon_kg, energy_kwh=q.kwh, free_now=q.free_now,
                  score=scores.get(q.row), chosen=(q.site, q.pool) == chosen,
                  transfer_s=q.transfer_s, moved_gb=q.moved_gb, hold_s=holds.get(q.row, 0.0))
        for q in sorted(lines, key=lambda q: (scores.get(q.row, float("inf")), q.price_micro))
    ]


Priced = tuple[list[QuoteLine], dict[int, float], dict[int, float], Start | None]
"""Candidate lines, their scores and holds (pool row -> seconds), and the best start."""


def _priced(
    live: LiveNetwork, d: Demand, tenant: str, now: float, held_until: float | None = None,
    shiftable: bool = True,
) -> Priced:
    """Every candidate as the loop weighs it at `now` (UNIX seconds, scheduling clock).

    `held_until`: the task is held until then; every candidate is priced and scored at that hour.
    `shiftable`: it may still be held (never held before): a deadline task under a shifting
    policy is then weighed with holds, each candidate with room at its own best hold.
    """
    if held_until is not None and held_until > now:
        lines = quote_rows(live, [d], tenant, held_until)[0]
        scores = _scores(live, d, tenant, held_until) if lines else {}
        return lines, scores, {q.row: held_until - now for q in lines}, None
    lines = quote_rows(live, [d], tenant, now)[0]
    scores = _scores(live, d, tenant, now) if lines else {}
    if not (lines and shiftable and d.deadline_at is not None
            and d.policy in SHIFTING_POLICIES):
        return lines, scores, {}, None
    start = _start(live, d, tenant, now)
    if start is None:
        return lines, scores, {}, None
    c = start.candidates
    holds: dict[int, float] = {}
    by_hold: dict[float, set[int]] = defaultdict(set)
    for pool, hold, score in zip(c.pools.tolist(), c.hold_s.tolist(), c.score.tolist(),
                                 strict=True):
        if np.isfinite(score):
            scores[pool] = score  # the core's figure with holds: what the loop decides by
            if hold > 0:
                holds[pool] = hold
                by_hold[hold].add(pool)
    for hold, pools in by_hold.items():  # priced as starting after the hold (curves then)
        later = {q.row: q for q in quote_rows(live, [d], tenant, now + hold)[0]}
        lines = [later.get(q.row, q) if q.row in pools else q for q in lines]
    return lines, scores, holds, start


def _start(live: LiveNetwork, d: Demand, tenant: str, now: float) -> Start | None:
    """The loop's decision for this task now: start on a pool with room, or hold first."""
    workload = live.workload([0], [d], [tenant], now)
    rules = {0: r} if (r := site_rules(d.rules)) is not None else None
    placement = live.placement(workload, d.policy, live.speed(workload), rules)
    reported = np.array([live.free_of(i) for i in range(len(live.pool_keys))], np.int64)
    free = np.where(live.allowed_pools(tenant), reported, 0)
    return best_start(placement, 0, now, free)


def _start_note(live: LiveNetwork, d: Demand, start: Start | None, now: float) -> str | None:
    if start is None or start.hold_s <= 0 or d.deadline_at is None:
        return None
    net = live.network
    return hold_reason(d.policy, start, now, d.deadline_at, net.currency,
                       net.utc_offset_minutes, verb="would be held")


def quote(plane: ControlPlane, who: Identity, spec: TaskSpec) -> Quote:
    now = plane.now()
    live = plane.live(max_age_s=task_store.LIVE_MAX_AGE_S)
    d = demand_of(spec, now)
    lines, scores, holds, start = _priced(live, d, who.tenant, now)
    reason = _start_note(live, d, start, now)
    if live.empty:
        reason = "no site is registered yet: a submitted task waits as pending"
    elif not lines:
        reason = live.dataset_reason(d) or (
            "no online site the tenant may use has a pool that can hold this task")
    return Quote(
        currency=plane.currency, run_s=d.run_s, timeout_s=d.timeout_s,
        candidates=_candidates(lines, scores, (None, None), holds),
        max_price=min((from_micro(q.max_micro) for q in lines), default=None), reason=reason,
    )


def _row_demand(row: dict[str, Any]) -> Demand:
    return Demand(
        cpus=row["cpus"], gpu_milli=row["gpu_milli"],
        devices=tuple(row["devices"]) if row["devices"] else None, run_s=row["run_s"],
        timeout_s=row["timeout_s"], ref_device=row["ref_device"], policy=row["policy"],
        location=row["location"], rules=row["rules"], precision=row["precision"],
        dataset=row["dataset"], data_local=bool(row["data_local"]),
        deadline_at=row["deadline_at"],
    )


def explain(plane: ControlPlane, who: Identity, task_id: int) -> Explanation:
    row = task_store.get(plane, who, task_id)
    now = plane.now()
    live = plane.live()
    d = _row_demand(row)
    state = row["state"]
    reason = row["reason"]
    waiting = state in (states.PENDING, states.HELD)
    held_until = row["not_before"] if state == states.HELD else None
    lines, scores, holds, start = _priced(
        live, d, row["tenant_id"], now, held_until,
        shiftable=waiting and row["not_before"] is None)
    if state == states.PENDING:
        if live.empty:
            reason = "no site is registered yet"
        elif not lines:
            reason = live.dataset_reason(d) or (
                "no online site the tenant may use has a pool that can hold it "
                f"({task_store.describe_need(row)})")
        elif not any(q.free_now for q in lines):
            reason = (f"waiting for room: all {len(lines)} candidate pools are full "
                      f"(best: {lines[0].site}/{lines[0].pool})")
        else:
            reason = reason or _start_note(live, d, start, now) or (
                "room is free: it is placed at the next scheduling cycle")
    elif state == states.QUEUED:
        reason = f"placed on {row['site_id']}/{row['pool_id']}; waiting for its agent to lease it"
    elif state in (states.LEASED, states.RUNNING) and not reason:
        reason = f"{state} on {row['site_id']}/{row['pool_id']}"
    return Explanation(
        task=row["id"], state=state, reason=reason, site=row["site_id"], pool=row["pool_id"],
        policy=row["policy"],
        candidates=_candidates(lines, scores, (row["site_id"], row["pool_id"]), holds),
    )
