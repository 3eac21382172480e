"""The discrete-event engine that drives the scheduler core through a workload.

Time jumps from event to event (a heap of completions and the sorted arrivals); at each distinct
time, completions are fed first, then arrivals, then the scheduler makes one pass, exactly as the
contract orders them. Nothing here is random, so the same input gives the same schedule.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from computility.domain.workload import Workload
from computility.scheduler import (
    RejectTasks,
    Scheduler,
    StartTasks,
    TasksArrived,
    TasksFinished,
    WakeAt,
)
from computility.scheduler.core import PoolSlots

ProgressFn = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Schedule:
    """What happened to every task of a replay.

    Attributes:
        start: start time (NaN for rejected tasks).
        end: completion time (NaN for rejected tasks).
        pool: index of the pool the task ran on, or -1 when rejected.
        reasons: rejection reason per rejected task id index.
        events: arrivals + starts + completions processed.
        wall_s: seconds the replay took.
        moved_gb: input data moved to each task's site (zeros when no data moved).
        src_region: region each task's data came from (-1 where none moved).
        held_s: time each task was held for cheaper or greener hours.
    """

    start: NDArray[np.float64]
    end: NDArray[np.float64]
    pool: NDArray[np.int32]
    reasons: dict[int, str]
    events: int
    wall_s: float
    moved_gb: NDArray[np.float64] | None = None
    src_region: NDArray[np.int64] | None = None
    held_s: NDArray[np.float64] | None = None

    @property
    def rejected(self) -> NDArray[np.bool_]:
        return self.pool < 0


def replay(
    workload: Workload,
    pools: Sequence[PoolSlots] | Scheduler,
    discipline: str = "easy",
    progress: ProgressFn | None = None,
) -> Schedule:
    """Run `workload` through a scheduler and return the schedule.

    `pools` is either a ready `Scheduler` (placement across a network) or the pools of one site,
    in which case a scheduler without placement is built for them under `discipline`.
    """
    t0 = time.perf_counter()
    n = len(workload)
    site = pools if isinstance(pools, Scheduler) else Scheduler(pools, discipline, workload)
    submit = workload.submit.tolist()  # Python floats: the loop compares them one at a time
    run = site.run_s  # the scheduler sets each task's run time on the pool it places it on
    timers: list[float] = []
    nan = float("nan")
    start = [nan] * n  # lists: one store per started task is far cheaper than into an array
    end = [nan] * n
    reasons: dict[int, str] = {}
    heap: list[tuple[float, int]] = []
    arrived = 0
    done = 0
    starts = 0
    next_report = 0
    inf = float("inf")
    heappush, heappop = heapq.heappush, heapq.heappop
    while arrived < n or heap or timers:
        t_arr = submit[arrived] if arrived < n else inf
        now = heap[0][0] if heap and heap[0][0] <= t_arr else t_arr
        if timers and timers[0] < now:
            now = timers[0]
        while timers and timers[0] <= now:
            heappop(timers)
        if heap and heap[0][0] == now:
            finished = [heappop(heap)[1]]
            while heap and heap[0][0] == now:
                finished.append(heappop(heap)[1])
            done += len(finished)
        else:
            finished = []
        if t_arr == now:
            upto = arrived + 1
            while upto < n and submit[upto] == now:
                upto += 1
            batch = range(arrived, upto)
            arrived = upto
            if finished:
                decisions = site.handle(now, TasksFinished(finished), TasksArrived(batch))
            else:
                decisions = site.handle(now, TasksArrived(batch))
        elif finished:
            decisions = site.handle(now, TasksFinished(finished))
        else:
            decisions = site.handle(now)
        for decision in decisions:
            if isinstance(decision, StartTasks):
                ids = decision.tasks
                starts += ids.shape[0]
                for task in ids.tolist():
                    e = now + run[task]
                    start[task] = now
                    end[task] = e
                    heappush(heap, (e, task))
            elif isinstance(decision, RejectTasks):
                for task in decision.tasks.tolist():
                    reasons[task] = decision.reason
                done += decision.tasks.shape[0]
            elif isinstance(decision, WakeAt):
                heappush(timers, decision.time)
        if progress is not None and done >= next_report:
            progress(done)
            next_report = done + max(1, n // 200)
    if progress is not None:
        progress(done)
    return Schedule(
        start=np.array(start, np.float64),
        end=np.array(end, np.float64),
        pool=site.pool_of.copy(),
        reasons=reasons,
        events=n + 2 * starts,  # arrivals + starts + completions
        wall_s=time.perf_counter() - t0,
        moved_gb=site.moved_gb.copy(),
        src_region=site.src_region.copy(),
        held_s=site.held_s.copy(),
    )
