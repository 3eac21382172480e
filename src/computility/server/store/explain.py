"""Why a task runs where it runs, or why it waits; and quotes before submitting.

Both answer from the live network with the scheduler's own figures: the candidates are the pools
the core's feasibility allows (node fits, devices, placement rules, the tenant's access), priced
by the cost model; each candidate's ``score`` is the policy's figure for one task of its class
there (`computility.scheduler.batch.classify`, lower is better), the very number the scheduling
loop fills pools by.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from computility.domain.money import from_micro
from computility.scheduler.batch import classify
from computility.server import states
from computility.server.auth import Identity
from computility.server.live import Demand, LiveNetwork, cost_time, demand_of, site_rules
from computility.server.plane import ControlPlane
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
    lines: list[QuoteLine], scores: dict[int, float], chosen: tuple[str | None, str | None]
) -> list[Candidate]:
    return [
        Candidate(site=q.site, pool=q.pool, device=q.device, region=q.region, run_s=q.run_s,
                  price=from_micro(q.price_micro), max_price=from_micro(q.max_micro),
                  carbon_kg=q.carbon_kg, energy_kwh=q.kwh, free_now=q.free_now,
                  score=scores.get(q.row), chosen=(q.site, q.pool) == chosen,
                  transfer_s=q.transfer_s, moved_gb=q.moved_gb)
        for q in sorted(lines, key=lambda q: (scores.get(q.row, float("inf")), q.price_micro))
    ]


def quote(plane: ControlPlane, who: Identity, spec: TaskSpec) -> Quote:
    now = time.time()
    live = plane.live(max_age_s=task_store.LIVE_MAX_AGE_S)
    d = demand_of(spec)
    lines = quote_rows(live, [d], who.tenant, now)[0]
    scores = _scores(live, d, who.tenant, now) if lines else {}
    reason = None
    if live.empty:
        reason = "no site is registered yet: a submitted task waits as pending"
    elif not lines:
        reason = live.dataset_reason(d) or (
            "no online site the tenant may use has a pool that can hold this task")
    return Quote(
        currency=plane.currency, run_s=d.run_s, timeout_s=d.timeout_s,
        candidates=_candidates(lines, scores, (None, None)),
        max_price=min((from_micro(q.max_micro) for q in lines), default=None), reason=reason,
    )


def _row_demand(row: dict[str, Any]) -> Demand:
    return Demand(
        cpus=row["cpus"], gpu_milli=row["gpu_milli"],
        devices=tuple(row["devices"]) if row["devices"] else None, run_s=row["run_s"],
        timeout_s=row["timeout_s"], ref_device=row["ref_device"], policy=row["policy"],
        location=row["location"], rules=row["rules"], precision=row["precision"],
        dataset=row["dataset"], data_local=bool(row["data_local"]),
    )


def explain(plane: ControlPlane, who: Identity, task_id: int) -> Explanation:
    row = task_store.get(plane, who, task_id)
    now = time.time()
    live = plane.live()
    d = _row_demand(row)
    lines = quote_rows(live, [d], row["tenant_id"], now)[0]
    scores = _scores(live, d, row["tenant_id"], now) if lines else {}
    state = row["state"]
    reason = row["reason"]
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
            reason = reason or "room is free: it is placed at the next scheduling cycle"
    elif state == states.QUEUED:
        reason = f"placed on {row['site_id']}/{row['pool_id']}; waiting for its agent to lease it"
    elif state in (states.LEASED, states.RUNNING) and not reason:
        reason = f"{state} on {row['site_id']}/{row['pool_id']}"
    return Explanation(
        task=row["id"], state=state, reason=reason, site=row["site_id"], pool=row["pool_id"],
        policy=row["policy"],
        candidates=_candidates(lines, scores, (row["site_id"], row["pool_id"])),
    )
