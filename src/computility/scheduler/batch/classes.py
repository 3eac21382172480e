"""The batch as classes of alike tasks, its cost table, and what leaving a task out costs.

The table is held per block of classes that share their candidate pools, so that it holds only
candidate entries and never the whole (classes x pools) grid at national scale (`TaskClasses.dense`
builds that, for small batches). A task left out costs `UNPLACED_PENALTY` times its class's
costliest candidate, so that a solver leaves one out only where capacity runs out, never to save
cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from computility.scheduler.candidates import FloatArray, IntArray

UNPLACED_PENALTY: Final = 10.0
"""Cost of leaving a task out, in units of its class's costliest candidate."""


@dataclass(frozen=True, slots=True)
class ClassBlock:
    """Classes that share their candidate pools, with one task's cost on each.

    Attributes:
        classes: class numbers, ascending.
        pools: the shared candidate pool rows, ascending.
        cost: (len(classes) x len(pools)) cost of one task; inf where it cannot run.
    """

    classes: IntArray
    pools: IntArray
    cost: FloatArray


@dataclass(frozen=True, slots=True)
class TaskClasses:
    """A batch grouped into classes, each with its count, demand and cost row.

    Attributes:
        policy: the policy the costs are for.
        tasks: the batch's task rows (workload rows), in the order given.
        class_of: per batch position, its class.
        count: tasks per class.
        demand: units one task of the class takes on each of its pools (cores or milli-devices).
        run_s: per batch position, the stated run time (the longest get the cheapest pools).
        penalty: per class, the cost of leaving one of its tasks unplaced.
        blocks: the cost table, in blocks of classes with identical candidate pools.
        block_of: per class, its block; row_of: its row there.
        pool_units: capacity of every pool of the network, in units.
        shapes: distinct demand/constraint shapes in the batch (cores, accelerator milli-units,
            allowed devices, dataset, residency, per-task site rules): feasibility kinds.
    """

    policy: str
    tasks: IntArray
    class_of: IntArray
    count: IntArray
    demand: IntArray
    run_s: FloatArray
    penalty: FloatArray
    blocks: tuple[ClassBlock, ...]
    block_of: IntArray
    row_of: IntArray
    pool_units: IntArray
    shapes: int

    @property
    def n_classes(self) -> int:
        return int(self.count.shape[0])

    @property
    def n_pools(self) -> int:
        return int(self.pool_units.shape[0])

    def row(self, c: int) -> tuple[IntArray, FloatArray]:
        """Candidate pools of class `c` and one task's cost on each."""
        block = self.blocks[int(self.block_of[c])]
        cost: FloatArray = block.cost[int(self.row_of[c])]
        return block.pools, cost

    def dense(self) -> FloatArray:
        """The whole (classes x pools) table, inf where a class cannot run (small batches)."""
        out = np.full((self.n_classes, self.n_pools), np.inf)
        for block in self.blocks:
            out[np.ix_(block.classes, block.pools)] = block.cost
        return out

    def arc_cost(self, classes: IntArray, pools: IntArray) -> FloatArray:
        """One task's cost of each (class, pool) pair (inf where not a candidate)."""
        out = np.full(classes.shape[0], np.inf)
        blocks = self.block_of[classes]
        for b in np.unique(blocks):
            block = self.blocks[int(b)]
            sel = np.flatnonzero(blocks == b)
            col = np.searchsorted(block.pools, pools[sel])
            col = np.minimum(col, block.pools.shape[0] - 1)
            hit = block.pools[col] == pools[sel]
            val = block.cost[self.row_of[classes[sel]], col]
            out[sel] = np.where(hit, val, np.inf)
        return out

    @classmethod
    def from_matrix(
        cls,
        cost: FloatArray,
        count: IntArray,
        demand: IntArray,
        pool_units: IntArray | None = None,
        policy: str = "cheapest",
    ) -> TaskClasses:
        """Classes straight from a (classes x pools) cost table (inf: not a candidate).

        For instances built by hand: class ``c``'s tasks are batch positions in class order, with
        equal run times. Classes whose finite entries sit on the same pools share a block.
        """
        cost = np.asarray(cost, np.float64)
        count = np.asarray(count, np.int64)
        demand = np.asarray(demand, np.int64)
        n_classes, n_pools = cost.shape
        units = (
            np.full(n_pools, np.iinfo(np.int64).max // 4, np.int64)
            if pool_units is None
            else np.asarray(pool_units, np.int64)
        )
        finite = np.isfinite(cost)
        patterns: dict[bytes, list[int]] = {}
        for c in range(n_classes):
            patterns.setdefault(np.packbits(finite[c]).tobytes(), []).append(c)
        blocks = []
        block_of = np.zeros(n_classes, np.int64)
        row_of = np.zeros(n_classes, np.int64)
        for b, members in enumerate(patterns.values()):
            rows = np.array(members, np.int64)
            pools = np.flatnonzero(finite[members[0]]).astype(np.int64)
            blocks.append(ClassBlock(rows, pools, cost[np.ix_(rows, pools)]))
            block_of[rows] = b
            row_of[rows] = np.arange(rows.shape[0])
        n = int(count.sum())
        return cls(
            policy=policy,
            tasks=np.arange(n, dtype=np.int64),
            class_of=np.repeat(np.arange(n_classes, dtype=np.int64), count),
            count=count,
            demand=demand,
            run_s=np.ones(n),
            penalty=_penalties(blocks, n_classes),
            blocks=tuple(blocks),
            block_of=block_of,
            row_of=row_of,
            pool_units=units,
            shapes=n_classes,
        )


def _penalties(blocks: list[ClassBlock], n_classes: int) -> FloatArray:
    worst = np.zeros(n_classes)
    for block in blocks:
        if block.cost.size:
            worst[block.classes] = _worst(block.cost)
    return _penalty(worst)


def _worst(cost: FloatArray) -> FloatArray:
    """Per row, the largest finite cost (0 where none, or where all are negative)."""
    out: FloatArray = np.maximum(np.where(np.isfinite(cost), cost, -np.inf).max(axis=1), 0.0)
    return out


def _penalty(worst: FloatArray) -> FloatArray:
    """The cost of leaving one task of each class out (`UNPLACED_PENALTY`)."""
    out: FloatArray = UNPLACED_PENALTY * np.where(worst > 0, worst, 1.0)
    return out
