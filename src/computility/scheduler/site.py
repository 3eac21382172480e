"""One site's scheduler: routes each task to a pool that can hold it, then runs the pools' queues.

The site is told what happened (tasks arrived, tasks finished) and answers with what to start or
reject. Which pool a task joins is decided once, on arrival, from the pools' devices and sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from computility.domain.workload import ANY_GPU, Workload
from computility.scheduler.decisions import Decision, RejectTasks, StartTasks
from computility.scheduler.events import Event, TaskIds, TasksArrived, TasksFinished
from computility.scheduler.queues import PoolQueue, make_queue

CPU = "cpu"


@dataclass(frozen=True, slots=True)
class PoolSlots:
    """What the scheduler needs to know of a pool: its device and how many units it has.

    A CPU pool counts processor cores; an accelerator pool counts thousandths of a device, so a
    fractional share (Alibaba's ``gpu_milli``) and whole devices are served by one queue.
    """

    device_id: str
    kind: str
    units: int

    @property
    def is_cpu(self) -> bool:
        return self.kind == CPU


class SiteScheduler:
    """Queues of one site; every decision is a pure function of the events fed so far."""

    def __init__(self, pools: Sequence[PoolSlots], discipline: str, tasks: Workload) -> None:
        self.pools = tuple(pools)
        self.queues: list[PoolQueue] = [make_queue(discipline, p.units) for p in self.pools]
        self.tasks = tasks
        self.pool_of = np.full(len(tasks), -1, np.int32)
        self._cpu_pools = [i for i, p in enumerate(self.pools) if p.is_cpu]
        self._gpu_pools = [i for i, p in enumerate(self.pools) if not p.is_cpu]
        self._fixed = self._fixed_routes()
        # Python copies of the columns read one task at a time on every arrival.
        self._fixed_l: list[int] = self._fixed.tolist()
        self._cpus_l: list[int] = tasks.cpus.tolist()
        self._gpu_l: list[int] = tasks.gpu_milli.tolist()
        self._req_l: list[float] = tasks.requested.tolist()

    def _fixed_routes(self) -> NDArray[np.int32]:
        """Per task: the one pool that can hold it, -1 if none can, -2 if several can.

        Computed once over the whole task table, so arrivals of tasks with a single possible
        pool (every task of a one-pool site) cost no routing work at all.
        """
        n = len(self.tasks)
        count = np.zeros(n, np.int32)
        only = np.full(n, -1, np.int32)
        for p in range(len(self.pools)):
            ok = self._allows_all(p)
            count += ok
            only[ok] = p
        return np.where(count > 1, -2, np.where(count == 1, only, -1)).astype(np.int32)

    def _allows_all(self, pool: int) -> NDArray[np.bool_]:
        spec = self.pools[pool]
        t = self.tasks
        if spec.is_cpu:
            cpu_ok: NDArray[np.bool_] = (t.gpu_milli == 0) & (t.cpus <= spec.units)
            return cpu_ok
        ok: NDArray[np.bool_] = (t.gpu_milli > 0) & (t.gpu_milli <= spec.units)
        typed = t.gpu_types != ANY_GPU
        if typed.any():
            allowed = np.array(
                [spec.device_id in types for types in t.gpu_type_sets] or [False], np.bool_
            )
            ok &= ~typed | allowed[np.where(typed, t.gpu_types, 0)]
        return ok

    def handle(self, now: float, *events: Event) -> list[Decision]:
        """Apply the events in order, then make one scheduling pass over the pools they touched."""
        decisions: list[Decision] = []
        touched: set[int] = set()
        for event in events:
            if type(event) is TasksFinished:
                self._release(event.tasks, now, touched)
            elif type(event) is TasksArrived:
                rejected = self._admit(event.tasks, touched)
                if rejected:
                    decisions.extend(rejected)
        for p in sorted(touched) if len(touched) > 1 else touched:
            started = self.queues[p].schedule(now)
            if started.shape[0]:
                decisions.append(StartTasks(p, started))
        return decisions

    def demand_in(self, pool: int, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        """Units of `pool` the tasks occupy."""
        if self.pools[pool].is_cpu:
            return self.tasks.cpus[tasks]
        return self.tasks.gpu_milli[tasks]

    def _release(self, tasks: TaskIds, now: float, touched: set[int]) -> None:
        if len(tasks) == 0:
            return
        if len(self.pools) == 1:
            self.queues[0].release(tasks, now)
            touched.add(0)
            return
        ids = np.asarray(tasks, np.int64)
        pools = self.pool_of[ids]
        for p in np.unique(pools).tolist():
            self.queues[p].release(ids[pools == p], now)
            touched.add(p)

    def _admit(self, tasks: TaskIds, touched: set[int]) -> list[Decision]:
        if len(tasks) == 0:
            return []
        if len(tasks) == 1:
            task = int(tasks[0])
            pool = self._fixed_l[task]
            if pool == -2:
                pool = self._least_loaded(task)
            self.pool_of[task] = pool
            if pool < 0:
                return [RejectTasks(np.array([task], np.int64), self._why_not(task))]
            demand = self._cpus_l[task] if self.pools[pool].is_cpu else self._gpu_l[task]
            self.queues[pool].enqueue_one(task, demand, self._req_l[task])
            touched.add(pool)
            return []
        return self._admit_many(np.asarray(tasks, np.int64), touched)

    def _admit_many(self, tasks: NDArray[np.int64], touched: set[int]) -> list[Decision]:
        chosen = self._fixed[tasks]
        if (chosen == -2).any():
            # Tasks with a choice of pools must see the load left by the ones before them in
            # the same burst, exactly as if they had arrived one by one.
            rejected: list[Decision] = []
            for task in tasks.tolist():
                rejected += self._admit((task,), touched)
            return rejected
        self.pool_of[tasks] = chosen
        if len(self.pools) == 1 and (chosen == 0).all():
            groups: list[tuple[int, NDArray[np.int64]]] = [(0, tasks)]
        else:
            groups = [(p, tasks[chosen == p]) for p in np.unique(chosen[chosen >= 0]).tolist()]
        for p, sel in groups:
            self.queues[p].enqueue(sel, self.demand_in(p, sel), self.tasks.requested[sel])
            touched.add(p)
        refused = tasks[chosen < 0]
        if refused.shape[0] == 0:
            return []
        reasons: dict[str, list[int]] = {}
        for task in refused.tolist():
            reasons.setdefault(self._why_not(task), []).append(task)
        return [RejectTasks(np.asarray(ids, np.int64), why) for why, ids in reasons.items()]

    def _least_loaded(self, task: int) -> int:
        """Among the pools that can hold the task, the one with most units not spoken for."""
        best, best_free = -1, -(2**62)
        for p in range(len(self.pools)):
            if not self._allows(p, task):
                continue
            free = self.queues[p].free - self.queues[p].queued_demand
            if free > best_free:
                best, best_free = p, free
        return best

    def _allows(self, pool: int, task: int) -> bool:
        spec = self.pools[pool]
        if spec.is_cpu:
            return self._gpu_l[task] == 0 and self._cpus_l[task] <= spec.units
        if self._gpu_l[task] == 0 or self._gpu_l[task] > spec.units:
            return False
        types = int(self.tasks.gpu_types[task])
        return types == ANY_GPU or spec.device_id in self.tasks.gpu_type_sets[types]

    def _why_not(self, task: int) -> str:
        if int(self.tasks.gpu_milli[task]) == 0:
            largest = max((self.pools[p].units for p in self._cpu_pools), default=0)
            return f"needs more processors than the site has (largest CPU pool: {largest})"
        types = int(self.tasks.gpu_types[task])
        allowed = "any accelerator" if types == ANY_GPU else "|".join(
            self.tasks.gpu_type_sets[types]
        )
        return f"no accelerator pool large enough of the allowed types ({allowed})"
