"""The figures of a replay, computed over whole columns at once.

Definitions are the contract's ("--json report"): wait = start - submit, JCT = end - submit,
bounded slowdown = max(1, (wait + run) / max(run, 10 s)), makespan = last completion - first
submit, utilisation = busy CU-seconds / (total CU x makespan). The first submit is that of any
job of the workload, rejected ones included: the observed period starts when the trace does.
An undefined figure is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from computility.domain.cost import CostModel
from computility.domain.money import from_micro
from computility.domain.network import Network
from computility.domain.workload import Workload
from computility.sim.engine import Schedule

BOUNDED_SLOWDOWN_FLOOR_S = 10.0


@dataclass(frozen=True, slots=True)
class Usage:
    """Per-task metered use of a replay (zeros for rejected tasks)."""

    cu_seconds: NDArray[np.float64]
    kwh: NDArray[np.float64]
    carbon_kg: NDArray[np.float64]
    cost_micro: NDArray[np.int64]
    moved_gb: NDArray[np.float64]


def meter(workload: Workload, schedule: Schedule, network: Network, start: datetime) -> Usage:
    """CU-seconds, facility energy, carbon and money of every task, billed by the cost model.

    The same `CostModel` that scored the candidates prices what actually happened: the pool the
    task ran on, its actual start and run time, and the data it moved. Each part of the money
    (compute, energy, egress) is rounded to the micro-unit per task, so a bill's lines add up
    to its total.
    """
    cost = CostModel(network, start)
    ran = ~schedule.rejected
    pool = np.where(ran, schedule.pool, 0).astype(np.int64)
    is_cpu = network.arrays.pool_is_cpu[pool]
    units = np.where(ran, np.where(is_cpu, workload.cpus, workload.gpu_milli), 0)
    t0 = np.where(ran, schedule.start, 0.0)
    seconds = np.where(ran, schedule.end - schedule.start, 0.0)
    n = len(workload)
    moved = schedule.moved_gb if schedule.moved_gb is not None else np.zeros(n)
    src = schedule.src_region if schedule.src_region is not None else np.full(n, -1, np.int64)
    moved = np.where(ran & (src >= 0), moved, 0.0)
    egress_rate = network.arrays.egress_per_gb[np.maximum(src, 0), cost.pool_region[pool]]
    price = cost.price(pool, units, seconds, t0, moved, egress_rate.astype(np.float64))
    money = np.rint(price.compute) + np.rint(price.energy) + np.rint(price.egress)
    return Usage(
        cu_seconds=price.cu_hours * 3600.0,
        kwh=price.kwh,
        carbon_kg=price.carbon_kg,
        cost_micro=np.where(ran, money, 0).astype(np.int64),
        moved_gb=moved,
    )


def _num(x: float | np.floating | None) -> float | None:
    if x is None:
        return None
    v = float(x)
    return None if not np.isfinite(v) else v


def _mean(a: NDArray[np.float64]) -> float | None:
    return _num(a.mean()) if a.shape[0] else None


def _pct(a: NDArray[np.float64], q: float) -> float | None:
    return _num(np.percentile(a, q)) if a.shape[0] else None


def summarize(
    workload: Workload,
    schedule: Schedule,
    network: Network,
    policy: str,
    queue: str,
    epoch: datetime,
) -> dict[str, object]:
    """One entry of the report's ``results``, keys in the contract's order.

    `epoch` is the wall-clock time of simulated time 0 (``--start``), which places the runs on
    the hourly price and carbon curves.
    """
    done = ~schedule.rejected
    submit = workload.submit[done]
    start = schedule.start[done]
    end = schedule.end[done]
    run = end - start  # on the device it ran on
    wait = start - submit
    jct = end - submit
    bsld = np.maximum(1.0, (wait + run) / np.maximum(run, BOUNDED_SLOWDOWN_FLOOR_S))
    usage = meter(workload, schedule, network, epoch)
    total_cu = sum(p.total_cu for _, p in network.pools)
    makespan = float(end.max() - workload.submit.min()) if end.shape[0] else None
    util = None
    if makespan is not None and makespan > 0:
        util = float(usage.cu_seconds.sum()) / (total_cu * makespan)
    deadline = workload.deadline
    misses = int(np.count_nonzero(done & np.isfinite(deadline) & (schedule.end > deadline)))
    wall = schedule.wall_s
    return {
        "policy": policy,
        "queue": queue,
        "completed": int(done.sum()),
        "rejected": int((~done).sum()),
        "mean_wait_s": _mean(wait),
        "p50_wait_s": _pct(wait, 50),
        "p95_wait_s": _pct(wait, 95),
        "p99_wait_s": _pct(wait, 99),
        "mean_jct_s": _mean(jct),
        "p99_jct_s": _pct(jct, 99),
        "mean_bounded_slowdown": _mean(bsld),
        "makespan_s": makespan,
        "utilization": util,
        "cost": from_micro(int(usage.cost_micro.sum())),
        "currency": network.currency,
        "energy_kwh": float(usage.kwh.sum()),
        "carbon_kg": float(usage.carbon_kg.sum()),
        "data_moved_gb": float(usage.moved_gb.sum()),
        "deadline_misses": misses,
        "wall_s": round(wall, 6),
        "events_per_s": _num(schedule.events / wall) if wall > 0 else None,
        "tenants": per_tenant(workload, schedule),
        "held": int(np.count_nonzero(schedule.held_s)) if schedule.held_s is not None else 0,
    }


def per_tenant(workload: Workload, schedule: Schedule) -> dict[str, dict[str, object]]:
    """Jobs, completions and waits of each tenant, by name: what a fairness question asks first.

    An addition to the contract's result fields (a script that reads only those is unaffected).
    """
    out: dict[str, dict[str, object]] = {}
    tenant = workload.tenant if workload.tenant.shape[0] == len(workload) else None
    done = ~schedule.rejected
    wait = schedule.start - workload.submit
    for t, name in enumerate(workload.tenants):
        mine = np.ones(len(workload), np.bool_) if tenant is None else tenant == t
        if not mine.any():
            continue
        w = wait[mine & done]
        out[name] = {
            "jobs": int(mine.sum()),
            "completed": int((mine & done).sum()),
            "mean_wait_s": _mean(w),
            "p95_wait_s": _pct(w, 95),
            "max_wait_s": _num(w.max()) if w.shape[0] else None,
        }
    return out


def utilization_series(
    schedule: Schedule, usage: Usage, total_cu: float, bins: int = 400
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Busy share of the site's CU per time bin: (bin centres in s, utilisation in [0, 1])."""
    ran = ~schedule.rejected
    if not ran.any() or total_cu <= 0:
        return np.zeros(0), np.zeros(0)
    start = schedule.start[ran]
    end = schedule.end[ran]
    rate = usage.cu_seconds[ran] / np.maximum(end - start, 1e-12)  # CU held while running
    times = np.concatenate((start, end))
    delta = np.concatenate((rate, -rate))
    order = np.argsort(times, kind="stable")
    times, delta = times[order], delta[order]
    busy = np.cumsum(delta)
    # Integral of busy CU over time, piecewise linear between event times.
    area = np.concatenate(([0.0], np.cumsum(busy[:-1] * np.diff(times))))
    edges = np.linspace(times[0], times[-1], bins + 1)
    at_edges = np.interp(edges, times, area)
    width = edges[1] - edges[0] if bins > 0 else 1.0
    util = np.diff(at_edges) / (max(width, 1e-12) * total_cu)
    return (edges[:-1] + edges[1:]) / 2, util
