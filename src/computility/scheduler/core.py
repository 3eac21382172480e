"""The scheduler: places each task on a pool, then runs every pool's queue.

It is told what happened (tasks arrived, tasks finished, time passed) and answers with what to
start, reject, or when to call it again. The pools are those of one site or of a whole network.
Which pool a task joins is decided once, on arrival: by a `Placement` (policy, cost model, data
and deadlines) when one is given, else by the pools' devices and sizes alone (least loaded), the
classic single-machine replay. A task may be held before it joins its queue, while its input
data moves or for cheaper or greener hours; it then joins at the time the placement set.

With several tenants, every queue is kept in (fair-share rank, submit time, id) order; with one,
in (submit time, id) order exactly.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from computility.domain.workload import ANY_GPU, NO_INDEX, Workload
from computility.scheduler.decisions import Decision, RejectTasks, StartTasks, WakeAt
from computility.scheduler.events import Event, TaskIds, TasksArrived, TasksFinished
from computility.scheduler.explain import (
    Explanation,
    explain_pending,
    explain_placement,
    mark_chosen,
)
from computility.scheduler.fairshare import FairShare
from computility.scheduler.placement import (
    LoadView,
    Placement,
)
from computility.scheduler.queues import PoolQueue, make_queue
from computility.scheduler.walk import RankedPathMixin

CPU = "cpu"
BURST_MIN = 32
ROOM_PREFIX = 32
"""The large-network path checks this many best-ranked pools for room before the rest."""
"""From this many tasks arriving at one instant on a large network, they are placed in one
vectorised pass rather than one by one."""


@dataclass(frozen=True, slots=True)
class PoolSlots:
    """What the scheduler needs to know of a pool: its device and how many units it has.

    A CPU pool counts processor cores; an accelerator pool counts thousandths of a device, so a
    fractional share (Alibaba's ``gpu_milli``) and whole devices are served by one queue.
    """

    device_id: str
    kind: str
    units: int
    cu_per_unit: float = 1.0

    @property
    def is_cpu(self) -> bool:
        return self.kind == CPU


class Scheduler(RankedPathMixin):
    """Pools' queues and the placement above them; every decision is a pure function of the
    events fed so far.

    Attributes:
        pool_of: pool each task was placed on (-1 until placed, and for rejected tasks).
        run_s: each task's run time on the pool it was placed on (its stated run time until
            placed): what the driver should expect, and what a replay runs it for.
        moved_gb: input data moved to run each task.
        src_region: region its data came from (`NO_INDEX` if nothing moved).
        held_s: how long each task was held for better hours before it could queue.
    """

    def __init__(
        self,
        pools: Sequence[PoolSlots],
        discipline: str,
        tasks: Workload,
        placement: Placement | None = None,
    ) -> None:
        self.pools = tuple(pools)
        self.queues: list[PoolQueue] = [make_queue(discipline, p.units) for p in self.pools]
        self.tasks = tasks
        self.placement = placement
        n = len(tasks)
        self.pool_of = np.full(n, -1, np.int32)
        self.moved_gb = np.zeros(n)
        self.src_region = np.full(n, NO_INDEX, np.int64)
        self.held_s = np.zeros(n)
        self._cpu_pools = [i for i, p in enumerate(self.pools) if p.is_cpu]
        self._gpu_pools = [i for i, p in enumerate(self.pools) if not p.is_cpu]
        self._fixed = self._fixed_routes() if placement is None else self._placed_routes(placement)
        # Python copies of the columns read one task at a time on every arrival.
        self._fixed_l: list[int] = self._fixed.tolist()
        self._cpus_l: list[int] = tasks.cpus.tolist()
        self._gpu_l: list[int] = tasks.gpu_milli.tolist()
        self.run_s: list[float] = tasks.run.tolist()
        self._req_l: list[float] = tasks.requested.tolist()
        self.run_s_stated: list[float] = list(self.run_s)
        if placement is not None and not placement.speed.exact:
            self._scale_fixed_routes(placement)
        fast, moving = (
            placement.fast_path() if placement is not None else (np.zeros(n, bool),) * 2
        )
        self._fast: list[bool] = fast.tolist()
        self._moving_fast: list[bool] = moving.tolist()
        self._deadline_l: list[float] = (
            tasks.deadline.tolist() if tasks.deadline.shape[0] == n else [math.nan] * n
        )
        self._factor_rows: dict[int, list[float]] = {}
        self._held: list[tuple[float, int, int]] = []  # (joins queue at, task, pool)
        self._cu_unit = [p.cu_per_unit for p in self.pools]
        tenants = tasks.tenant if tasks.tenant.shape[0] == n else np.zeros(n, np.int32)
        self._fair: FairShare | None = None
        if len(tasks.tenants) > 1 and n and int(tenants.max()) > 0:
            self._fair = FairShare(len(tasks.tenants))
            self._tenant_l: list[int] = tenants.tolist()
            self._tenant = tenants.astype(np.int64)
            self._rank = self._fair.ranks()
            self._key = self._rank[self._tenant] * max(n, 1) + np.arange(n, dtype=np.int64)
            self._holding: dict[int, float] = {}
        self._now = 0.0
        self._touched: set[int] = set()
        self._lv_capacity = np.array([q.capacity for q in self.queues], np.int64)
        self._lv: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64],
                        NDArray[np.float64]] = (
            self._lv_capacity.copy(),
            np.zeros(len(self.queues), np.int64),
            np.zeros(len(self.queues)),
            np.zeros(len(self.queues)),
        )
        self._lv_stale: set[int] = set()
        self._spare = self._lv_capacity.copy()
        self._spare_stale: set[int] = set()
        self._alone: list[tuple[int, int]] = []  # (pool, task) started without a pass
        self.burst_placed = 0
        """Tasks placed by the vectorised burst path (`_place_burst`)."""
        self._factor_arrays: dict[int, NDArray[np.float64]] = {}
        self.watch: int | None = None
        """A task to explain: its placement at decision time, and, if it then has to wait,
        why and until when (`explanations`)."""
        self.explanations: list[Explanation] = []
        self._watch_pending = True

    def _placed_routes(self, placement: Placement) -> NDArray[np.int32]:
        """Per task: its one candidate when there is nothing to choose, else -2 (score it)."""
        n = len(self.tasks)
        single = np.full(n, -1, np.int32)
        count = placement.feasible_count
        one = np.flatnonzero(count == 1)
        if one.shape[0]:
            single[one] = placement.first_candidate()[one]
        return np.where(placement.needs_scoring() & (count > 0), -2, single).astype(np.int32)

    def _scale_fixed_routes(self, placement: Placement) -> None:
        """Run and requested times of tasks with a fixed pool, on that pool's device."""
        fixed = self._fixed
        idx = np.flatnonzero(fixed >= 0)
        if idx.shape[0] == 0:
            return
        f = placement.speed.factors[placement.speed.task_class[idx], fixed[idx]]
        run = np.asarray(self.run_s)
        req = np.asarray(self._req_l)
        run[idx] *= f
        req[idx] *= f
        self.run_s = run.tolist()
        self._req_l = req.tolist()

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
        """Apply the events in order, let held tasks whose time has come join their queues,
        then make one scheduling pass over the pools all this touched.

        Called with no events, it only does the second and third steps: what a driver does at
        a time a `WakeAt` asked for.
        """
        decisions: list[Decision] = []
        touched: set[int] = set()
        self._now = now
        self._touched = touched
        for event in events:
            if type(event) is TasksFinished:
                self._release(event.tasks, now, touched)
            elif type(event) is TasksArrived:
                rejected = self._admit(event.tasks, touched)
                if rejected:
                    decisions.extend(rejected)
        held = self._held
        while held and held[0][0] <= now:
            _, task, pool = heapq.heappop(held)
            if self.held_s[task] > 0 and self.moved_gb[task] == 0:
                # Its hold is over: place it again on the state now, without another hold,
                # so a queue that grew meanwhile cannot make it miss its deadline.
                self._place(task, touched, allow_hold=False)
            else:
                self._enqueue(task, pool, touched)
        if self._fair is not None:
            self._refair(now, touched)
        self._lv_stale |= touched
        self._spare_stale |= touched
        queues = self.queues
        for p in sorted(touched) if len(touched) > 1 else touched:
            queue = queues[p]
            if not queue._q_len:
                continue  # nobody waits there: a pass could start nothing
            started = queue.schedule(now)
            if started.shape[0]:
                decisions.append(StartTasks(p, started))
                if self._fair is not None:
                    self._charge(p, started, now)
        if self._alone:
            for pool, task in self._alone:
                started = np.array([task], np.int64)
                decisions.append(StartTasks(pool, started))
                if self._fair is not None:
                    self._charge(pool, started, now)
            self._alone = []
        if self.watch is not None and self._watch_pending and self.explanations:
            self._explain_wait(now)
        return decisions

    def _explain_wait(self, now: float) -> None:
        """Record once why the watched task, placed but not started, waits."""
        why = explain_pending(self, self.watch if self.watch is not None else -1, now)
        if why.state in ("held", "queued"):
            self.explanations.append(why)
        self._watch_pending = False

    # ------------------------------------------------------------------ fair share

    def _refair(self, now: float, touched: set[int]) -> None:
        """Re-rank tenants; reorder every line the new ranks or newcomers put out of order."""
        assert self._fair is not None
        self._fair.advance(now)
        rank = self._fair.ranks()
        if not np.array_equal(rank, self._rank):
            self._rank = rank
            n = len(self.tasks)
            self._key = rank[self._tenant] * max(n, 1) + np.arange(n, dtype=np.int64)
            touched.update(p for p, q in enumerate(self.queues) if len(q) > 1)
        for p in touched:
            self.queues[p].reorder(self._key)

    def _charge(self, pool: int, started: NDArray[np.int64], now: float) -> None:
        assert self._fair is not None
        per_unit = self._cu_unit[pool]
        units = self._cpus_l if self.pools[pool].is_cpu else self._gpu_l
        for task in started.tolist():
            cu = units[task] * per_unit
            self._holding[task] = cu
            self._fair.started(self._tenant_l[task], cu, now)

    def _uncharge(self, tasks: TaskIds, now: float) -> None:
        assert self._fair is not None
        for task in tasks.tolist() if isinstance(tasks, np.ndarray) else tasks:
            cu = self._holding.pop(int(task), 0.0)
            self._fair.finished(self._tenant_l[int(task)], cu, now)

    # ------------------------------------------------------------------ placement

    def load_view(self, now: float) -> LoadView:
        """Every pool's capacity, free units, queued units and backlog, for wait estimates.

        Kept as arrays and refreshed only for the pools whose queues changed since the last
        view, so a network of thousands of pools costs a placement a few vector operations.
        """
        lv = self._lv
        stale = self._lv_stale | self._touched
        for p in stale:
            q = self.queues[p]
            lv_free, lv_queued, lv_work, lv_end = lv
            lv_free[p] = q.free
            lv_queued[p] = q.queued_demand
            lv_work[p] = q.queued_work
            lv_end[p] = q.running_end_units
        self._lv_stale = set()
        free, queued, work, end_units = lv
        held = self._lv_capacity - free
        backlog = np.maximum(work, 0.0) + np.maximum(end_units - now * held, 0.0)
        return LoadView(self._lv_capacity, free.copy(), queued.copy(), backlog)

    def _enqueue(self, task: int, pool: int, touched: set[int]) -> None:
        demand = self._cpus_l[task] if self.pools[pool].is_cpu else self._gpu_l[task]
        queue = self.queues[pool]
        touched.add(pool)
        if queue.starts_alone and not queue._q_len and queue.free >= demand:
            queue.start_alone(task, demand, self._req_l[task], self._now)
            self._alone.append((pool, task))
            return
        queue.enqueue_one(task, demand, self._req_l[task])

    def _place(self, task: int, touched: set[int], allow_hold: bool = True) -> list[Decision]:
        """Score `task` and send it to its pool now, or hold it until its time comes."""
        assert self.placement is not None
        now = self._now
        placement = self.placement
        if task == self.watch and allow_hold:
            state = placement.save_state()
            self.explanations.append(explain_placement(self, task, now))
            placement.restore_state(state)  # explaining must not change what follows
        if placement.prunes:
            ranking = placement.ranking(task, now)
            order = ranking.order
            if self._fast[task] or not allow_hold:
                pool = self._first_with_room(task, order, now, ranking.parts)
                if pool >= 0:
                    self._mark_chosen(task, pool)
                    return self._send(task, pool, touched)
            moving = None
            if self._moving_fast[task] and allow_hold:
                moving = placement.choose_moving(
                    task, now, self.spare(), self._gpu_l[task] or self._cpus_l[task]
                )
            if moving is not None:
                choice = moving
            else:
                choice = placement.choose(
                    task, now, self.load_view(now), allow_hold=allow_hold,
                    among=self._pruned(task, order),
                )
        else:
            choice = placement.choose(task, now, self.load_view(now), allow_hold=allow_hold)
        pool = choice.pool
        self._mark_chosen(task, pool)
        self.pool_of[task] = pool
        stated = float(self.tasks.run[task])
        factor = choice.run_s / stated if stated > 0 else 1.0
        self.run_s[task] = choice.run_s
        self._req_l[task] = float(self.tasks.requested[task]) * factor
        self.moved_gb[task] = choice.moved_gb
        self.src_region[task] = choice.src_region
        if allow_hold:
            self.held_s[task] = choice.held_s
        if choice.ready_s > now:
            heapq.heappush(self._held, (choice.ready_s, task, pool))
            return [WakeAt(choice.ready_s)]
        self._enqueue(task, pool, touched)
        return []

    def _mark_chosen(self, task: int, pool: int) -> None:
        """Make the watched task's explanation mark the pool actually chosen (on a large
        network the decision walks a ranking, the explanation scores every candidate)."""
        if task != self.watch or not self.explanations or self.placement is None:
            return
        last = self.explanations[-1]
        if last.state != "placing" or last.at_s != self._now:
            return
        site, p = self.placement.network.pools[pool]
        self.explanations[-1] = mark_chosen(last, site.id, p.id)

    def demand_in(self, pool: int, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        """Units of `pool` the tasks occupy."""
        if self.pools[pool].is_cpu:
            return self.tasks.cpus[tasks]
        return self.tasks.gpu_milli[tasks]

    def _release(self, tasks: TaskIds, now: float, touched: set[int]) -> None:
        if len(tasks) == 0:
            return
        if self._fair is not None:
            self._uncharge(tasks, now)
        if len(self.pools) == 1:
            self.queues[0].release(tasks, now)
            touched.add(0)
            return
        if len(tasks) == 1:
            task = int(tasks[0])
            pool = int(self.pool_of[task])
            self.queues[pool].release((task,), now)
            touched.add(pool)
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
                if self.placement is not None:
                    return self._place(task, touched)
                pool = self._least_loaded(task)
            if task == self.watch and self.placement is not None:
                self.explanations.append(explain_placement(self, task, self._now))
            self.pool_of[task] = pool
            if pool < 0:
                return [RejectTasks(np.array([task], np.int64), self._why_not(task))]
            demand = self._cpus_l[task] if self.pools[pool].is_cpu else self._gpu_l[task]
            self.queues[pool].enqueue_one(task, demand, self._req_l[task])
            touched.add(pool)
            return []
        return self._admit_many(np.asarray(tasks, np.int64), touched)

    def _admit_many(self, tasks: NDArray[np.int64], touched: set[int]) -> list[Decision]:
        watch = self.watch
        if (
            watch is not None
            and self.placement is not None
            and self._fixed_l[watch] != -2
            and watch in set(tasks.tolist())
        ):
            self.explanations.append(explain_placement(self, watch, self._now))
        chosen = self._fixed[tasks]
        if (chosen == -2).any():
            batched = self._place_burst(tasks[chosen == -2], touched)
            # Tasks with a choice of pools must see the load left by the ones before them in
            # the same burst, exactly as if they had arrived one by one.
            out: list[Decision] = []
            for task in tasks.tolist():
                if task not in batched:
                    out += self._admit((task,), touched)
            return out
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
        if self.placement is not None and len(self.placement.network.sites) > 1:
            why = self.placement.rejections(task)
            return "no site can run it: " + "; ".join(f"{s} {r}" for s, r in why.items())
        if int(self.tasks.gpu_milli[task]) == 0:
            largest = max((self.pools[p].units for p in self._cpu_pools), default=0)
            return f"needs more processors than the site has (largest CPU pool: {largest})"
        types = int(self.tasks.gpu_types[task])
        allowed = "any accelerator" if types == ANY_GPU else "|".join(
            self.tasks.gpu_type_sets[types]
        )
        return f"no accelerator pool large enough of the allowed types ({allowed})"
