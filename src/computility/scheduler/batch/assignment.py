"""Where a batch goes, as task counts per (class, pool) arc, and what that costs.

Counts per arc, not a pool per task, keep every solver's result the size of the class table;
`Assignment.pools` expands them to tasks only when asked.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from computility.scheduler.batch.classes import TaskClasses
from computility.scheduler.candidates import IntArray


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a batch goes, as class counts per pool, with what it costs and how good it is.

    Attributes:
        classes: the batch it places.
        arc_class, arc_pool, arc_count: tasks of class ``arc_class`` placed on ``arc_pool``.
        cost: the objective: placed tasks' costs plus the penalties of unplaced ones.
        placed_cost: the placed tasks' costs alone.
        placed, unplaced: task counts.
        bound: a lower bound on the objective of any assignment of the batch (nan: none).
        solver: what produced it.
        wall_s: seconds it took (classification not included).
        rounded_out: tasks the LP placed (in part) that rounding down dropped (0 when integral);
            they are placed again, cheapest first, where capacity is left.
        left_by_rounding: tasks unplaced beyond those the LP itself left out (rounded up).
        lp_value: the LP optimum (nan when no LP was solved).
        lp_unplaced: tasks the LP left out, a fraction where its optimum splits tasks.
        rounds: LP solves of the column generation (0 when none).
        kept: the solution kept by `exact_assign` (``optimal``, ``rounded`` or ``greedy``).
    """

    classes: TaskClasses
    arc_class: IntArray
    arc_pool: IntArray
    arc_count: IntArray
    cost: float
    placed_cost: float
    placed: int
    unplaced: int
    bound: float
    solver: str
    wall_s: float
    rounded_out: int = 0
    left_by_rounding: int = 0
    lp_value: float = math.nan
    rounds: int = 0
    kept: str = ""
    lp_unplaced: float = math.nan

    @property
    def gap(self) -> float:
        """(cost - bound) / bound: how far above the best possible this assignment may be."""
        if not math.isfinite(self.bound) or self.bound <= 0:
            return math.nan
        return (self.cost - self.bound) / self.bound

    def pools(self) -> IntArray:
        """Per batch position, its pool (-1 where unplaced).

        Within a class the longest tasks go to the cheapest of the class's pools: the class's
        cost row is for its mean run time, and a longer run costs more wherever it goes.
        """
        c = self.classes
        out = np.full(c.tasks.shape[0], -1, np.int64)
        if not self.arc_count.sum():
            return out
        members = np.lexsort((-c.run_s, c.class_of))
        starts = np.zeros(c.n_classes + 1, np.int64)
        np.cumsum(c.count, out=starts[1:])
        cost = c.arc_cost(self.arc_class, self.arc_pool)
        arcs = np.lexsort((cost, self.arc_class))
        cls = np.repeat(self.arc_class[arcs], self.arc_count[arcs])
        pool = np.repeat(self.arc_pool[arcs], self.arc_count[arcs])
        first = np.searchsorted(cls, np.arange(c.n_classes))
        rank = np.arange(cls.shape[0]) - first[cls]
        out[members[starts[cls] + rank]] = pool
        return out

    def usage(self) -> IntArray:
        """Units taken on every pool of the network."""
        used: IntArray = np.bincount(
            self.arc_pool,
            weights=self.arc_count * self.classes.demand[self.arc_class],
            minlength=self.classes.n_pools,
        ).astype(np.int64)
        return used


def _objective(
    classes: TaskClasses, cls: IntArray, pool: IntArray, num: IntArray
) -> float:
    placed = np.bincount(cls, weights=num, minlength=classes.n_classes)
    cost = classes.arc_cost(cls, pool)
    return float(np.dot(num, cost) + np.dot(classes.count - placed, classes.penalty))


def _assignment(
    classes: TaskClasses,
    cls: IntArray,
    pool: IntArray,
    num: IntArray,
    *,
    solver: str,
    t0: float,
    bound: float = math.nan,
    kept: str = "",
    rounded_out: int = 0,
    left_by_rounding: int = 0,
    lp_value: float = math.nan,
    rounds: int = 0,
    lp_unplaced: float = math.nan,
) -> Assignment:
    placed_n = int(num.sum())
    placed_cost = float(np.dot(num, classes.arc_cost(cls, pool))) if placed_n else 0.0
    return Assignment(
        classes=classes,
        arc_class=cls.astype(np.int64),
        arc_pool=pool.astype(np.int64),
        arc_count=num.astype(np.int64),
        cost=_objective(classes, cls, pool, num),
        placed_cost=placed_cost,
        placed=placed_n,
        unplaced=int(classes.count.sum()) - placed_n,
        bound=bound,
        solver=solver,
        wall_s=time.perf_counter() - t0,
        rounded_out=rounded_out,
        left_by_rounding=left_by_rounding,
        lp_value=lp_value,
        rounds=rounds,
        kept=kept,
        lp_unplaced=lp_unplaced,
    )
