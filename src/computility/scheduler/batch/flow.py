"""The assignment as a min-cost flow with OR-Tools (the ``ortools`` extra), by column generation.

OR-Tools' flow solver works on integer costs and reports no duals, so costs are scaled to
integers and the capacity prices that column generation and the bound need are recovered from
its optimal flow.
"""

from __future__ import annotations

import importlib
from typing import Any, Final

import numpy as np

from computility.scheduler.batch.classes import TaskClasses
from computility.scheduler.batch.lp import (
    _LP_MAX_ROUNDS,
    _add_priced,
    _arcs_in,
    _dual_bound,
    _seed_arcs,
)
from computility.scheduler.candidates import FloatArray, IntArray

_FLOW_SEED_ARCS: Final = 16
_OR_TOOLS_COST_BITS: Final = 46
_OR_TOOLS_SLACK: Final = 1e-5


def _or_tools() -> Any:
    """OR-Tools' min-cost flow module, or None without the ``ortools`` extra."""
    try:
        return importlib.import_module("ortools.graph.python.min_cost_flow")
    except ImportError:
        return None


def _solve_or_tools(
    mod: Any, classes: TaskClasses, per_task: IntArray, cap: IntArray, free: IntArray
) -> tuple[tuple[IntArray, IntArray, FloatArray], float, float, int]:
    """Column generation with OR-Tools: flow (class, pool, units), value, bound, solves.

    Each solve is over a restricted set of arcs (each class's cheapest, the cheapest-first
    fill's, and those priced in since). `SimpleMinCostFlow` reports no duals, so the capacity
    prices are recovered from its optimal flow: a pool's price is its shortest distance to the
    sink in the residual network (Bellman-Ford; an optimal flow leaves no negative cycle).
    Arcs of negative reduced cost under them are added until none is left.
    """
    n_cls, n_pools = classes.n_classes, classes.n_pools
    q = per_task.astype(np.float64)
    supply = classes.count * per_task
    total = int(supply.sum())
    pen_unit = classes.penalty / np.maximum(q, 1.0)
    top = max(float(pen_unit.max()) if n_cls else 1.0, 1e-300)
    # Costs become integers at a scale where rounding them can move the optimum by at most
    # _OR_TOOLS_SLACK of a lower bound (the class-by-class best, ignoring capacity): finer would
    # only add phases to OR-Tools' cost scaling. The largest cost stays far from int64 overflow.
    floor = _dual_bound(classes, np.zeros(n_pools), q, cap)
    scale = 0.5 * max(total, 1) / max(_OR_TOOLS_SLACK * floor, 1e-300)
    scale = min(scale, 2.0**_OR_TOOLS_COST_BITS / top)
    pen_int = np.rint(pen_unit * scale)
    inset = _seed_arcs(classes, free, _FLOW_SEED_ARCS)
    sink = n_cls + n_pools
    supplies = np.concatenate((supply, np.zeros(n_pools, np.int64), [-total])).astype(np.int64)
    lam = np.zeros(n_pools)
    rounds = 0
    cls = pool = np.zeros(0, np.int64)
    flows = np.zeros(0)
    for rounds in range(1, _LP_MAX_ROUNDS + 1):  # noqa: B007
        cls, pool, cost = _arcs_in(classes, inset)
        unit = np.rint(cost / q[cls] * scale)
        smcf = mod.SimpleMinCostFlow()
        smcf.add_arcs_with_capacity_and_unit_cost(
            np.concatenate((cls, np.arange(n_cls), n_cls + np.arange(n_pools))).astype(np.int32),
            np.concatenate((n_cls + pool, np.full(n_cls, sink), np.full(n_pools, sink))).astype(
                np.int32
            ),
            np.concatenate((supply[cls], supply, cap)).astype(np.int64),
            np.concatenate((unit, pen_int, np.zeros(n_pools))).astype(np.int64),
        )
        smcf.set_nodes_supplies(np.arange(sink + 1, dtype=np.int32), supplies)
        status = smcf.solve()
        if status != smcf.OPTIMAL:
            raise RuntimeError(f"OR-Tools min-cost flow ended with status {status}")
        flows = np.asarray(smcf.flows(np.arange(cls.shape[0], dtype=np.int32)), np.float64)
        d_cls, d_pool = _distances_to_sink(
            cls, pool, unit, flows, supply, pen_int, cap, n_cls, n_pools
        )
        lam = np.maximum(d_pool, 0.0) / scale
        pi = q * d_cls / scale
        if not _add_priced(classes, inset, pi, lam, q, classes.penalty):
            break
    bound = _dual_bound(classes, lam, q, cap)
    placed = flows > 0
    value = float(np.dot(flows, classes.arc_cost(cls, pool) / q[cls])) + float(
        np.dot(supply - np.bincount(cls, weights=flows, minlength=n_cls), pen_unit)
    )
    return (cls[placed], pool[placed], flows[placed]), value, bound, rounds


def _distances_to_sink(
    cls: IntArray,
    pool: IntArray,
    cost: FloatArray,
    flow: FloatArray,
    supply: IntArray,
    pen: FloatArray,
    cap: IntArray,
    n_cls: int,
    n_pools: int,
) -> tuple[FloatArray, FloatArray]:
    """Shortest distance from each class and pool node to the sink in the residual network.

    Residual arcs: class -> pool while the arc has room (cost), pool -> class while it carries
    flow (minus the cost), class -> sink while some of the class is placed (penalty), pool ->
    sink while the pool has room (0). Relaxed all at once until nothing changes (Bellman-Ford).
    """
    carried = np.bincount(cls, weights=flow, minlength=n_cls)
    into = np.bincount(pool, weights=flow, minlength=n_pools)
    d_cls = np.where(carried > 0, pen, np.inf)
    d_pool = np.where(into < cap, 0.0, np.inf)
    fwd = flow < supply[cls]
    bwd = flow > 0
    f_cls, f_pool, f_cost = cls[fwd], pool[fwd], cost[fwd]
    b_cls, b_pool, b_cost = cls[bwd], pool[bwd], -cost[bwd]
    for _ in range(n_cls + n_pools + 1):
        via = np.full(n_cls, np.inf)
        np.minimum.at(via, f_cls, f_cost + d_pool[f_pool])
        new_cls = np.minimum(d_cls, via)
        back = np.full(n_pools, np.inf)
        np.minimum.at(back, b_pool, b_cost + new_cls[b_cls])
        new_pool = np.minimum(d_pool, back)
        if np.array_equal(new_cls, d_cls) and np.array_equal(new_pool, d_pool):
            break
        d_cls, d_pool = new_cls, new_pool
    d_pool = np.where(np.isfinite(d_pool), d_pool, 0.0)
    return d_cls, d_pool
