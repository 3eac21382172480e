"""The scheduler's side of the large-network path: room, the walk down a ranking, bursts.

`computility.scheduler.ranking` keeps the rankings; this part reads the pools' queues to find
the first pool with room, weighs a busy better one against it, and places a burst of arrivals in
one vectorised pass. `RankedPathMixin` is one part of `computility.scheduler.core.Scheduler`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from computility.domain.workload import Workload
from computility.scheduler.decisions import Decision
from computility.scheduler.placement import (
    PRUNED_CANDIDATES,
    REFERENCE_RUN_S,
    WEIGH_BUSY,
    Placement,
)
from computility.scheduler.queues import PoolQueue
from computility.scheduler.ranking import best_index

BURST_MIN = 32
"""From this many tasks arriving at one instant on a large network, they are placed in one
vectorised pass rather than one by one."""
ROOM_PREFIX = 32
"""The large-network path checks this many best-ranked pools for room before the rest."""


class RankedPathMixin:
    """The large-network half of `Scheduler` (it sets these attributes up)."""

    tasks: Workload
    placement: Placement | None
    queues: list[PoolQueue]
    pool_of: NDArray[np.int32]
    run_s: list[float]
    run_s_stated: list[float]
    burst_placed: int
    _now: float
    _touched: set[int]
    _cpus_l: list[int]
    _gpu_l: list[int]
    _req_l: list[float]
    _deadline_l: list[float]
    _fast: list[bool]
    _spare: NDArray[np.int64]
    _spare_stale: set[int]
    _factor_arrays: dict[int, NDArray[np.float64]]
    _factor_rows: dict[int, list[float]]

    def _enqueue(self, task: int, pool: int, touched: set[int]) -> None:
        raise NotImplementedError

    def _place_burst(self, tasks: NDArray[np.int64], touched: set[int]) -> set[int]:
        """Place a burst of tasks arriving at one instant in one vectorised pass; return those
        placed.

        Only on a large network (the placement prunes), only for bursts of `BURST_MIN` or more
        tasks the large-network path would place without scoring in full (no data to move, no
        hold to weigh), and only into units free now: `computility.scheduler.batch.greedy_fill`
        fills each kind of task into its best pools with room, never over-committing one. Tasks
        it leaves out are then placed one by one, as usual.
        """
        placement = self.placement
        if placement is None or not placement.prunes or tasks.shape[0] < BURST_MIN:
            return set()
        fast = tasks[np.asarray(self._fast, np.bool_)[tasks]]
        if fast.shape[0] < BURST_MIN:
            return set()
        # Imported here: the batch module loads scipy, which only large bursts need.
        from computility.scheduler.batch import classify, greedy_fill

        spare = self.spare().copy()
        classes = classify(placement, fast, self._now, spare)
        pools = greedy_fill(classes, spare, placement.policy).pools()
        placed: set[int] = set()
        for task, pool in zip(fast.tolist(), pools.tolist(), strict=True):
            if pool >= 0:
                self._send(task, pool, touched)
                placed.add(task)
        self.burst_placed += len(placed)
        return placed

    def _first_with_room(
        self,
        task: int,
        order: NDArray[np.int64],
        now: float,
        parts: dict[int, tuple[float, float, float, float]],
    ) -> int:
        """The best-ranked pool that can start `task` now and (if it has a deadline) finish by
        it; -1 if none can.

        Every pool of one ranking is of the task's kind, so its demand is one number; which
        pools have room is one vector comparison over the ranking, however deep the first
        pool with room lies.
        """
        demand = self._gpu_l[task] or self._cpus_l[task]
        spare = self.spare()
        deadline = self._deadline_l[task]
        first = -1
        offset = 0
        # Look at a short prefix first: the first pool with room is usually near the top.
        for part in (order[:ROOM_PREFIX], order[ROOM_PREFIX:]):
            if part.shape[0] == 0:
                continue
            room = spare[part] >= demand
            if deadline == deadline:  # not NaN: the run must also end by the deadline
                factors = self._factor_array(task)
                room &= now + self.run_s_stated[task] * factors[part] <= deadline
            k = int(room.argmax())
            if room[k]:
                first = offset + k
                break
            offset += part.shape[0]
        if first < 0:
            return -1
        if first == 0:
            return int(order[0])
        busy = order[: min(first, WEIGH_BUSY)]
        return self._worth_waiting(task, busy, int(order[first]), now, parts)

    def _worth_waiting(
        self,
        task: int,
        busy: NDArray[np.int64],
        free_pool: int,
        now: float,
        parts: dict[int, tuple[float, float, float, float]],
    ) -> int:
        """The best of the first pool with room and the better-ranked busy pools before it,
        each busy one with its estimated wait, scored by the policy as `Placement.score` does.

        What full scoring would weigh and the bare walk does not: a better pool may be worth
        queueing for. Figures come from the ranking's cached reference run, scaled to the task.
        """
        assert self.placement is not None
        placement = self.placement
        scale = self.run_s_stated[task] / REFERENCE_RUN_S
        deadline = self._deadline_l[task]
        queues = self.queues
        pools = [free_pool]
        finish = [parts[free_pool][0] * scale]
        for p in busy.tolist():
            q = queues[p]
            f = q.backlog(now) / q.capacity + parts[p][0] * scale
            if deadline == deadline and now + f > deadline:
                continue
            pools.append(p)
            finish.append(f)
        if len(pools) == 1:
            return free_pool
        money = [parts[p][1] for p in pools]  # scale is common to all: it cancels out
        carbon = [parts[p][2] for p in pools]
        latency = [parts[p][3] for p in pools]
        return pools[best_index(placement.policy, pools, finish, money, carbon, latency)]

    def spare(self) -> NDArray[np.int64]:
        """Units of each pool neither busy nor asked for by its queue, as of now."""
        spare = self._spare
        queues = self.queues
        for p in self._spare_stale | self._touched:
            q = queues[p]
            spare[p] = q.free - q._q_total
        self._spare_stale = set()
        return spare

    def _pruned(self, task: int, order: NDArray[np.int64]) -> NDArray[np.int64] | None:
        """The candidates a large network scores in full: its best-ranked pools, and the
        best-ranked of those with room now; None when no pool of the ranking has room (then
        every candidate is scored)."""
        k = PRUNED_CANDIDATES
        demand = self._gpu_l[task] or self._cpus_l[task]
        with_room = order[self.spare()[order] >= demand]
        if with_room.shape[0] == 0:
            return None
        return np.union1d(order[:k], with_room[:k])

    def _send(self, task: int, pool: int, touched: set[int]) -> list[Decision]:
        """Place `task` on `pool` to queue now (the large-network path's decision)."""
        factor = float(self._factors_of(task)[pool])
        self.pool_of[task] = pool
        self.run_s[task] = self.run_s_stated[task] * factor
        self._req_l[task] = float(self.tasks.requested[task]) * factor
        self._enqueue(task, pool, touched)
        return []

    def _factor_array(self, task: int) -> NDArray[np.float64]:
        assert self.placement is not None
        speed = self.placement.speed
        row = int(speed.task_class[task])
        factors = self._factor_arrays.get(row)
        if factors is None:
            factors = speed.factors[row]
            self._factor_arrays[row] = factors
        return factors

    def _factors_of(self, task: int) -> list[float]:
        assert self.placement is not None
        speed = self.placement.speed
        row = int(speed.task_class[task])
        factors = self._factor_rows.get(row)
        if factors is None:
            factors = speed.factors[row].tolist()
            self._factor_rows[row] = factors
        return factors
