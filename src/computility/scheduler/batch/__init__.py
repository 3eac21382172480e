"""Placing a batch of pending tasks at once: classes of alike tasks, a fast fill, an exact solve.

Scoring one task at a time against every pool costs a Python call per task. At national scale
(10^5 pending tasks, 10^3 sites) most tasks are alike: the same cores or accelerators, the same
allowed devices, the same data. So a batch is placed in three steps:

1. `classify` groups the batch into *classes* of tasks that every policy treats identically (same
   candidate pools, same units needed per task, and what else changes the policy's figure: the
   speed model's row, the dataset read, the deadline's slack, the user's location) and prices one
   task of each class on each candidate pool: a (classes x pools) table of costs, held per *block*
   of classes that share their candidate pools.
2. `greedy_fill` is the fast path: class after class (never task after task) its tasks go to its
   pools best-first, each pool taking only the tasks its free units still hold, so the batch never
   over-commits a pool whatever the policy.
3. `exact_assign` solves the class -> pool assignment for the least total cost: as a min-cost flow
   where capacity is one resource in task units (every class using a pool needs the same units
   there), else as the LP relaxation over every feasible arc, rounded. It reports the achieved cost,
   a lower bound valid for the whole (unpruned) problem, the gap, and what rounding left unplaced.

Where the class model departs from per-task scoring (`Placement.score`) is told in `pricing`.

The objective of the assignment is the sum over placed tasks of their class's cost on their pool
plus, per task left unplaced, `UNPLACED_PENALTY` times the costliest candidate of its class: a
solver then leaves a task out only where capacity runs out, never to save cost. Where a group of
pools cannot hold its share of the batch, which tasks wait for the next batch follows from that
objective (the exact solve) or from the fill order (smallest first), so the largest tasks tend to
wait: a batch trades them for more tasks placed now.
"""

from __future__ import annotations

from computility.scheduler.batch.assignment import Assignment
from computility.scheduler.batch.classes import UNPLACED_PENALTY, ClassBlock, TaskClasses
from computility.scheduler.batch.exact import SOLVERS, exact_assign
from computility.scheduler.batch.greedy import greedy_fill
from computility.scheduler.batch.grouping import classify
from computility.scheduler.batch.pricing import COST_POLICIES, CURVE_STEP

__all__ = [
    "COST_POLICIES",
    "CURVE_STEP",
    "SOLVERS",
    "UNPLACED_PENALTY",
    "Assignment",
    "ClassBlock",
    "TaskClasses",
    "classify",
    "exact_assign",
    "greedy_fill",
]
