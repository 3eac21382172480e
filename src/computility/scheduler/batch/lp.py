"""Column generation on the assignment LP with HiGHS, and the arc pricing and bound `flow` shares.

Most of the batch's feasible arcs are in no optimum, so each solve is over a restricted set of arcs
grown by reduced cost, while the bound is computed over every arc so that it holds for the whole
(unpruned) problem whatever the restriction.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
from scipy import sparse  # type: ignore[import-untyped]
from scipy.optimize import linprog  # type: ignore[import-untyped]

from computility.scheduler.batch.classes import TaskClasses
from computility.scheduler.batch.greedy import _fill, _rng
from computility.scheduler.candidates import BoolArray, FloatArray, IntArray

_LP_SEED_ARCS: Final = 4
_LP_ADD_ARCS: Final = 64
_LP_MAX_ROUNDS: Final = 100
_LP_TOL: Final = 1e-9


def _seed_arcs(classes: TaskClasses, free: IntArray, k: int) -> list[BoolArray]:
    """The first restricted arc set: each class's `k` cheapest arcs and the cheapest-first
    fill's (a feasible assignment, so the first optimum is already close)."""
    inset = [np.zeros(b.cost.shape, np.bool_) for b in classes.blocks]
    for b, block in enumerate(classes.blocks):
        if block.cost.size:
            kk = min(k, block.cost.shape[1])
            seed = np.argpartition(block.cost, kk - 1, axis=1)[:, :kk]
            rows = np.arange(block.cost.shape[0])[:, None]
            inset[b][rows, seed] = np.isfinite(block.cost[rows, seed])
    g_cls, g_pool, _ = _fill(classes, classes.count, free.copy(), "cheapest", _rng())
    for c, p in zip(g_cls.tolist(), g_pool.tolist(), strict=True):
        b = int(classes.block_of[c])
        col = int(np.searchsorted(classes.blocks[b].pools, p))
        inset[b][int(classes.row_of[c]), col] = True
    return inset


def _solve_highs(
    classes: TaskClasses, per_task: IntArray, cap: IntArray, free: IntArray
) -> tuple[tuple[IntArray, IntArray, FloatArray], float, float, int]:
    """Column generation on the LP: flow (class, pool, units), LP value, bound, solves."""
    n_cls = classes.n_classes
    coef = per_task.astype(np.float64)
    count = classes.count.astype(np.float64)
    pen = classes.penalty
    inset = _seed_arcs(classes, free, _LP_SEED_ARCS)
    lam = np.zeros(classes.n_pools)
    rounds = 0
    x = np.zeros(0)
    arc_cls = arc_pool = np.zeros(0, np.int64)
    lp_value = math.nan
    for rounds in range(1, _LP_MAX_ROUNDS + 1):  # noqa: B007
        arc_cls, arc_pool, arc_cost = _arcs_in(classes, inset)
        res, lam, pi = _lp(arc_cls, arc_pool, arc_cost, coef, count, pen, cap, n_cls)
        x = res.x[: arc_cls.shape[0]]
        lp_value = float(res.fun)
        if not _add_priced(classes, inset, pi, lam, coef, pen):
            break
    bound = _dual_bound(classes, lam, coef, cap)
    hit = x > _LP_TOL
    return (arc_cls[hit], arc_pool[hit], x[hit] * coef[arc_cls[hit]]), lp_value, bound, rounds


def _arcs_in(
    classes: TaskClasses, inset: list[BoolArray]
) -> tuple[IntArray, IntArray, FloatArray]:
    cls_l, pool_l, cost_l = [], [], []
    for block, sel in zip(classes.blocks, inset, strict=True):
        r, col = np.nonzero(sel)
        cls_l.append(block.classes[r])
        pool_l.append(block.pools[col])
        cost_l.append(block.cost[r, col])
    if not cls_l:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(cls_l), np.concatenate(pool_l), np.concatenate(cost_l)


def _lp(
    arc_cls: IntArray,
    arc_pool: IntArray,
    arc_cost: FloatArray,
    coef: FloatArray,
    count: FloatArray,
    pen: FloatArray,
    cap: IntArray,
    n_cls: int,
) -> tuple[Any, FloatArray, FloatArray]:
    """One HiGHS solve of the restricted LP: the result, capacity prices, class prices."""
    n_arcs = arc_cls.shape[0]
    n_var = n_arcs + n_cls
    used, pool_row = np.unique(arc_pool, return_inverse=True)
    a_eq = sparse.csr_array(
        (
            np.ones(n_var),
            (np.concatenate((arc_cls, np.arange(n_cls))), np.arange(n_var)),
        ),
        shape=(n_cls, n_var),
    )
    a_ub = sparse.csr_array(
        (coef[arc_cls], (pool_row.reshape(-1), np.arange(n_arcs))),
        shape=(used.shape[0], n_var),
    )
    res = linprog(
        np.concatenate((arc_cost, pen)),
        A_ub=a_ub if used.shape[0] else None,
        b_ub=cap[used].astype(np.float64) if used.shape[0] else None,
        A_eq=a_eq,
        b_eq=count,
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"HiGHS could not solve the assignment LP: {res.message}")
    lam = np.zeros(cap.shape[0])
    if used.shape[0]:
        lam[used] = np.maximum(-np.asarray(res.ineqlin.marginals, np.float64), 0.0)
    pi = np.asarray(res.eqlin.marginals, np.float64)
    return res, lam, pi


def _add_priced(
    classes: TaskClasses,
    inset: list[BoolArray],
    pi: FloatArray,
    lam: FloatArray,
    coef: FloatArray,
    pen: FloatArray,
) -> bool:
    """Add, per class, the arcs of most negative reduced cost; False when there is none."""
    added = False
    for block, sel in zip(classes.blocks, inset, strict=True):
        if not block.cost.size:
            continue
        c = block.classes
        rc = block.cost - pi[c, None] + coef[c, None] * lam[None, block.pools]
        tol = _LP_TOL * np.maximum(pen[c], 1.0)
        bad = (rc < -tol[:, None]) & ~sel
        rows = np.flatnonzero(bad.any(axis=1))
        if not rows.shape[0]:
            continue
        added = True
        sub = np.where(bad[rows], rc[rows], np.inf)
        k = min(_LP_ADD_ARCS, sub.shape[1])
        pick = np.argpartition(sub, k - 1, axis=1)[:, :k]
        ok = np.isfinite(np.take_along_axis(sub, pick, axis=1))
        sel[rows[:, None], pick] |= ok
    return added


def _dual_bound(
    classes: TaskClasses, lam: FloatArray, coef: FloatArray, cap: IntArray
) -> float:
    """Lagrangian bound: sum_c n_c min(pen_c, min_p cost_cp + a_c lam_p) - sum_p cap_p lam_p.

    For any capacity prices lam >= 0 this is below the objective of every assignment (relax the
    capacity rows with those prices and minimise class by class over all of its arcs).
    """
    best = classes.penalty.copy()
    for block in classes.blocks:
        if not block.cost.size:
            continue
        c = block.classes
        priced = block.cost + coef[c, None] * lam[None, block.pools]
        best[c] = np.minimum(best[c], priced.min(axis=1))
    return float(np.dot(classes.count, best) - np.dot(cap.astype(np.float64), lam))
