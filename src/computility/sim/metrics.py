"""The figures of a replay, computed over whole columns at once.

Definitions are the contract's ("--json report"): wait = start - submit, JCT = end - submit,
bounded slowdown = max(1, (wait + run) / max(run, 10 s)), makespan = last completion - first
submit, utilisation = busy CU-seconds / (total CU x makespan). The first submit is that of any
job of the workload, rejected ones included: the observed period starts when the trace does.
An undefined figure is None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from computility.domain.money import DEFAULT_CURRENCY, from_micro
from computility.domain.site import Site
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


def meter(workload: Workload, schedule: Schedule, site: Site) -> Usage:
    """CU-seconds, facility energy, carbon and money of every task.

    Devices are assumed to draw their TDP while busy; facility energy is IT energy x PUE. Money
    is compute (CU-hours x the pool's price) plus energy (kWh x the site's electricity price),
    each rounded to the micro-unit per task so a bill's lines add up to its total.
    """
    n = len(workload)
    ran = ~schedule.rejected
    pool = np.where(ran, schedule.pool, 0)
    cu_per_unit = np.array([p.cu_per_unit for p in site.pools])
    watts_per_unit = np.array([p.watts_per_unit for p in site.pools])
    price = np.array([p.price_per_cu_hour for p in site.pools], np.float64)
    is_cpu = np.array([p.is_cpu for p in site.pools])
    units = np.where(is_cpu[pool], workload.cpus, workload.gpu_milli).astype(np.float64)
    seconds = np.where(ran, workload.run, 0.0)
    cu_s = units * cu_per_unit[pool] * seconds
    kwh = units * watts_per_unit[pool] * seconds / 3.6e6 * site.pue
    carbon = kwh * site.carbon_kg_per_kwh
    compute = np.rint(cu_s / 3600.0 * price[pool]).astype(np.int64)
    energy = np.rint(kwh * site.electricity_price_per_kwh).astype(np.int64)
    cost = np.where(ran, compute + energy, 0).astype(np.int64)
    assert cost.shape[0] == n
    return Usage(cu_seconds=cu_s, kwh=kwh, carbon_kg=carbon, cost_micro=cost)


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
    workload: Workload, schedule: Schedule, site: Site, policy: str, queue: str
) -> dict[str, object]:
    """One entry of the report's ``results``, keys in the contract's order."""
    done = ~schedule.rejected
    submit = workload.submit[done]
    start = schedule.start[done]
    end = schedule.end[done]
    run = workload.run[done]
    wait = start - submit
    jct = end - submit
    bsld = np.maximum(1.0, (wait + run) / np.maximum(run, BOUNDED_SLOWDOWN_FLOOR_S))
    usage = meter(workload, schedule, site)
    makespan = float(end.max() - workload.submit.min()) if end.shape[0] else None
    util = None
    if makespan is not None and makespan > 0:
        util = float(usage.cu_seconds.sum()) / (site.total_cu * makespan)
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
        "currency": DEFAULT_CURRENCY,
        "energy_kwh": float(usage.kwh.sum()),
        "carbon_kg": float(usage.carbon_kg.sum()),
        "data_moved_gb": 0.0,
        "deadline_misses": misses,
        "wall_s": round(wall, 6),
        "events_per_s": _num(schedule.events / wall) if wall > 0 else None,
        "tenants": per_tenant(workload, schedule),
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
