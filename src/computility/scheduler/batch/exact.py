"""The least-cost class -> pool assignment of a batch, with a lower bound on any assignment.

The fill may be far from the optimum where pools are contended; the exact solve says how far (a
bound and the gap) and keeps the better of its own rounded answer and the fill. Where tasks of one
pool need different units the LP optimum splits tasks, so rounding, and placing again what it
dropped, lives here, beside the choice of solver.
"""

from __future__ import annotations

import math
import time
from typing import Final

import numpy as np

from computility.scheduler.batch.assignment import Assignment, _assignment, _objective
from computility.scheduler.batch.classes import TaskClasses
from computility.scheduler.batch.flow import _or_tools, _solve_or_tools
from computility.scheduler.batch.greedy import _fill, _rng
from computility.scheduler.batch.lp import _solve_highs
from computility.scheduler.candidates import FloatArray, IntArray

SOLVERS: Final = ("auto", "ortools", "highs")
_UNIT_TOL: Final = 1e-6


def exact_assign(
    classes: TaskClasses, free_units: IntArray, solver: str = "auto"
) -> Assignment:
    """The least-cost assignment of the batch's classes to pools, with a lower bound.

    Flow is counted in *flow units*. Where every class that may use a pool needs the same units
    there, a flow unit is one task and the problem is a min-cost flow (classes -> pools -> sink,
    plus an "unplaced" arc per class) whose optimum is integral: the answer is optimal. Otherwise
    a flow unit is the greatest common divisor g of the demands that share pools (a core; a whole
    accelerator when every task takes whole ones), a task of class c is d_c / g units, and the
    same network is the LP relaxation (x_cp >= 0 tasks of class c on pool p; sum_p x_cp + u_c =
    n_c; sum_c d_c x_cp <= free_p, here floor(free_p / g) units, which no integral assignment
    exceeds either). Its optimum, integral in units but not in tasks, is rounded down, the
    dropped tasks placed cheapest-first into what capacity is left, and the result compared with
    the cheapest-first fill of the whole batch: the cheaper is kept (`Assignment.kept`).

    Solvers, over every feasible arc, so the bound holds for the unpruned problem:

    - ``ortools``: OR-Tools' `SimpleMinCostFlow` (the ``ortools`` extra), on integer costs
      scaled to 2^-(about 40) of the largest; the bound is its optimum less the most that
      rounding the costs can have taken off (half a scaled unit per flow unit).
    - ``highs``: scipy's HiGHS on the same LP by column generation: the cheapest arcs of each
      class and the arcs of the cheapest-first fill first, then, after each solve, the arcs of
      negative reduced cost under its duals, until there are none. The bound is the Lagrangian
      dual value at the final capacity prices, computed over every arc: below any assignment's
      objective whatever the solve did, and equal to the LP optimum when it converged.
    - ``auto``: ``ortools`` when installed, else ``highs``.

    Args:
        classes: the batch, from `classify` or `TaskClasses.from_matrix`.
        free_units: units free on every pool now; not modified.
        solver: ``auto``, ``ortools`` or ``highs``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver '{solver}' (choose from {', '.join(SOLVERS)})")
    t0 = time.perf_counter()
    free = np.asarray(free_units, np.int64)
    or_tools = _or_tools()
    if solver == "ortools" and or_tools is None:
        raise ValueError("OR-Tools is not installed (pip install 'computility[ortools]')")
    per_task, cap, integral = _flow_units(classes, free)
    if or_tools is not None and solver in ("auto", "ortools"):
        flow, lp_value, bound, rounds = _solve_or_tools(or_tools, classes, per_task, cap, free)
        name = "min-cost flow (OR-Tools)"
        if not integral:
            name = "LP relaxation as a min-cost flow (OR-Tools)"
    else:
        flow, lp_value, bound, rounds = _solve_highs(classes, per_task, cap, free)
        name = "min-cost flow as LP (HiGHS)" if integral else "LP relaxation (HiGHS)"
    cls, pool, units = flow
    tasks = units / per_task[cls]
    if integral and bool(np.all(np.abs(tasks - np.rint(tasks)) <= _UNIT_TOL)):
        whole = np.rint(tasks).astype(np.int64)
        hit = whole > 0
        return _assignment(
            classes, cls[hit], pool[hit], whole[hit], solver=name, t0=t0, bound=bound,
            kept="optimal", lp_value=lp_value, rounds=rounds,
            lp_unplaced=float(classes.count.sum() - whole.sum()),
        )
    return _rounded(classes, free, cls, pool, tasks, name, t0, bound, lp_value, rounds)


def _flow_units(classes: TaskClasses, free: IntArray) -> tuple[IntArray, IntArray, bool]:
    """Flow units per task of each class, pool capacities in flow units, and whether a flow
    unit is one task everywhere (so that a min-cost flow's integral optimum places whole tasks).
    """
    n_pools = classes.n_pools
    blocks = [b for b in classes.blocks if b.classes.shape[0] and b.pools.shape[0]]
    lo = np.full(n_pools, np.iinfo(np.int64).max, np.int64)
    hi = np.zeros(n_pools, np.int64)
    for block in blocks:
        d = classes.demand[block.classes]
        lo[block.pools] = np.minimum(lo[block.pools], int(d.min()))
        hi[block.pools] = np.maximum(hi[block.pools], int(d.max()))
    used = hi > 0
    if not np.any(lo[used] != hi[used]):
        return np.ones(classes.n_classes, np.int64), free // np.where(used, hi, 1), True
    # Blocks that share a pool must count in one unit: join them (union-find over blocks).
    parent = list(range(len(blocks)))

    def root(b: int) -> int:
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        return b

    owner = np.full(n_pools, -1, np.int64)
    for b, block in enumerate(blocks):
        for other in np.unique(owner[block.pools]).tolist():
            if other >= 0:
                parent[root(other)] = root(b)
        owner[block.pools] = b
    step: dict[int, int] = {}
    for b, block in enumerate(blocks):
        r = root(b)
        step[r] = int(np.gcd.reduce(classes.demand[block.classes], initial=step.get(r, 0)))
    unit = np.ones(n_pools, np.int64)
    per_task = np.ones(classes.n_classes, np.int64)
    for b, block in enumerate(blocks):
        g = step[root(b)]
        per_task[block.classes] = classes.demand[block.classes] // g
        unit[block.pools] = g
    return per_task, free // unit, False


def _rounded(
    classes: TaskClasses,
    free: IntArray,
    arc_cls: IntArray,
    arc_pool: IntArray,
    x: FloatArray,
    name: str,
    t0: float,
    bound: float,
    lp_value: float,
    rounds: int,
) -> Assignment:
    """Round an LP solution down, place what it dropped, keep the better of it and greedy."""
    arc_cost = classes.arc_cost(arc_cls, arc_pool)
    whole = _repair(classes, arc_cls, arc_pool, arc_cost, np.floor(x + _UNIT_TOL), free)
    placed = np.bincount(arc_cls, weights=whole, minlength=classes.n_classes).astype(np.int64)
    rounded_out = max(int(np.rint(x.sum())) - int(placed.sum()), 0)
    used = np.bincount(arc_pool, weights=whole * classes.demand[arc_cls],
                       minlength=classes.n_pools).astype(np.int64)
    # Dropped tasks go back dearest-to-leave-out first (penalty per unit), as the LP ranks them.
    dearest = np.argsort(-classes.penalty / classes.demand, kind="stable")
    extra = _fill(classes, classes.count - placed, free - used, "cheapest", _rng(), dearest)
    hit = whole > 0
    cls, pool, num = _merge(
        np.concatenate((arc_cls[hit], extra[0])),
        np.concatenate((arc_pool[hit], extra[1])),
        np.concatenate((whole[hit], extra[2])),
        classes.n_pools,
    )
    kept = "rounded"
    greedy = _fill(classes, classes.count, free.copy(), "cheapest", _rng())
    if _objective(classes, *greedy) < _objective(classes, cls, pool, num):
        cls, pool, num = greedy
        kept = "greedy"
    # The LP leaves out a fraction of tasks itself; what rounding adds on top of that is its own.
    lp_unplaced = float(classes.count.sum()) - float(x.sum())
    unplaced = int(classes.count.sum()) - int(num.sum())
    return _assignment(
        classes, cls, pool, num, solver=f"{name}, rounded", t0=t0, bound=bound, kept=kept,
        rounded_out=rounded_out,
        left_by_rounding=max(unplaced - math.ceil(lp_unplaced - _UNIT_TOL), 0),
        lp_value=lp_value, rounds=rounds, lp_unplaced=lp_unplaced,
    )


def _repair(
    classes: TaskClasses,
    arc_cls: IntArray,
    arc_pool: IntArray,
    arc_cost: FloatArray,
    take: IntArray,
    free: IntArray,
) -> IntArray:
    """Drop tasks, costliest arcs first, from any pool the rounded solution over-commits."""
    take = np.asarray(take, np.int64).copy()
    need = take * classes.demand[arc_cls]
    used = np.bincount(arc_pool, weights=need, minlength=classes.n_pools)
    for p in np.flatnonzero(used > free + 0.5):
        arcs = np.flatnonzero((arc_pool == p) & (take > 0))
        for a in arcs[np.argsort(-arc_cost[arcs])]:
            d = int(classes.demand[arc_cls[a]])
            over = int(used[p]) - int(free[p])
            if over <= 0:
                break
            drop = min(int(take[a]), -(-over // d))
            take[a] -= drop
            used[p] -= drop * d
    return take


def _merge(
    cls: IntArray, pool: IntArray, num: IntArray, n_pools: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Sum the counts of repeated (class, pool) arcs."""
    if not cls.shape[0]:
        return cls, pool, num
    key = cls * n_pools + pool
    uniq, inv = np.unique(key, return_inverse=True)
    total = np.bincount(inv.reshape(-1), weights=num).astype(np.int64)
    return uniq // n_pools, uniq % n_pools, total
