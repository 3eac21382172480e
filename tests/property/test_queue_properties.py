"""Invariants of the queue disciplines on random workloads, and agreement with plain references.

The production queues keep incremental state (scan caches, a persistent reservation plan) for
speed. The references below recompute everything at every event, straight from the contract's
words; on any workload the two must give the same schedule.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from computility.domain.workload import Workload
from computility.scheduler.core import PoolSlots
from computility.sim.engine import replay

CAPACITY = 8

jobs_strategy = st.lists(
    st.tuples(
        st.integers(0, 40),  # submit
        st.integers(1, 20),  # run
        st.integers(0, 10),  # extra requested time beyond run
        st.integers(1, CAPACITY),  # processors
    ),
    min_size=1,
    max_size=40,
)


def _workload(jobs: list[tuple[int, int, int, int]]) -> Workload:
    return Workload.from_columns(
        "random",
        ids=list(range(1, len(jobs) + 1)),
        submit=[j[0] for j in jobs],
        run=[j[1] for j in jobs],
        requested=[j[1] + j[2] for j in jobs],
        cpus=[j[3] for j in jobs],
    )


def reference(w: Workload, discipline: str, capacity: int = CAPACITY) -> list[float]:
    """Contract semantics, recomputed from scratch at every event time."""
    n = len(w)
    start = [float("nan")] * n
    size = [int(c) for c in w.cpus.tolist()]
    req = [float(r) for r in w.requested.tolist()]
    running: list[tuple[float, float, int, int]] = []  # (actual end, expected end, procs, task)
    queue: list[int] = []
    arrived = 0
    while arrived < n or running:
        t_arr = float(w.submit[arrived]) if arrived < n else float("inf")
        t_done = min((r[0] for r in running), default=float("inf"))
        now = min(t_arr, t_done)
        running = [r for r in running if r[0] != now]
        while arrived < n and float(w.submit[arrived]) == now:
            queue.append(arrived)
            arrived += 1
        free = capacity - sum(r[2] for r in running)
        picked: list[int] = []
        if discipline in ("fcfs", "easy"):
            while queue and size[queue[0]] <= free:
                picked.append(queue.pop(0))
                free -= size[picked[-1]]
            if discipline == "easy" and queue:
                ends = sorted((r[1], r[2]) for r in running) + [
                    (now + req[p], size[p]) for p in picked
                ]
                ends.sort()
                avail, shadow = free, None
                for e, s in ends:
                    avail += s
                    if avail >= size[queue[0]]:
                        shadow = e
                        break
                assert shadow is not None
                extra = free + sum(s for e, s in ends if e <= shadow) - size[queue[0]]
                for q in list(queue[1:]):
                    if size[q] <= free and (now + req[q] <= shadow or size[q] <= extra):
                        if now + req[q] > shadow:
                            extra -= size[q]
                        free -= size[q]
                        queue.remove(q)
                        picked.append(q)
        else:
            # Profile of free processors: list of (time, delta).
            deltas: dict[float, int] = {}
            for r in running:
                deltas[r[1]] = deltas.get(r[1], 0) + r[2]

            def free_at(t: float, free: int = free, deltas: dict[float, int] = deltas) -> int:
                return free + sum(d for k, d in deltas.items() if k <= t)

            for q in list(queue):
                cands = sorted({now} | {k for k in deltas if k > now})
                for c in cands:
                    points = [c] + [k for k in deltas if c < k < c + req[q]]
                    if all(free_at(p) >= size[q] for p in points):
                        break
                deltas[c] = deltas.get(c, 0) - size[q]
                deltas[c + req[q]] = deltas.get(c + req[q], 0) + size[q]
                if c == now:
                    queue.remove(q)
                    picked.append(q)
        for p in picked:
            start[p] = now
            running.append((now + float(w.run[p]), now + req[p], size[p], p))
    return start


def _never_over_capacity(w: Workload, start: np.ndarray) -> bool:
    events: list[tuple[float, int]] = []
    for i in range(len(w)):
        events.append((float(start[i]), int(w.cpus[i])))
        events.append((float(start[i] + w.run[i]), -int(w.cpus[i])))
    used = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        used += d
        if used > CAPACITY:
            return False
    return True


@settings(max_examples=200, deadline=None)
@given(jobs_strategy, st.sampled_from(["fcfs", "easy", "conservative"]))
def test_every_job_runs_once_never_before_submission_and_never_over_capacity(
    jobs: list[tuple[int, int, int, int]], discipline: str
) -> None:
    w = _workload(jobs)
    s = replay(w, [PoolSlots("XEON-8380", "cpu", CAPACITY)], discipline)
    assert not np.isnan(s.start).any()
    assert (s.start >= w.submit).all()
    assert np.allclose(s.end - s.start, w.run)
    assert _never_over_capacity(w, s.start)


@settings(max_examples=300, deadline=None)
@given(jobs_strategy, st.sampled_from(["fcfs", "easy", "conservative"]))
def test_schedule_equals_the_from_scratch_reference(
    jobs: list[tuple[int, int, int, int]], discipline: str
) -> None:
    w = _workload(jobs)
    s = replay(w, [PoolSlots("XEON-8380", "cpu", CAPACITY)], discipline)
    assert s.start.tolist() == reference(w, discipline)


@settings(max_examples=100, deadline=None)
@given(jobs_strategy)
def test_fcfs_starts_jobs_in_queue_order(jobs: list[tuple[int, int, int, int]]) -> None:
    w = _workload(jobs)
    s = replay(w, [PoolSlots("XEON-8380", "cpu", CAPACITY)], "fcfs")
    assert (np.diff(s.start) >= 0).all()




def _long_workload(seed: int) -> tuple[Workload, int]:
    """A longer, burstier workload than hypothesis draws: buffers grow, holes get squeezed out."""
    rng = random.Random(seed)
    capacity = rng.choice([1, 3, 16, 64, 100, 256])
    jobs = []
    t = 0
    for _ in range(rng.choice([150, 300])):
        r = rng.random()
        if r >= 0.4:  # else: a burst, same submit time as the previous job
            t += rng.randint(1, 20) if r < 0.9 else rng.randint(50, 500)
        run = int(rng.lognormvariate(3, 1.2)) + 1
        extra = 0 if rng.random() < 0.7 else rng.choice([rng.randint(1, 10), run * 20, 10**5])
        size = rng.choice([1, 1, 2, 4, capacity // 2, capacity, rng.randint(1, capacity)])
        jobs.append((t, run, extra, max(1, min(capacity, size))))
    w = Workload.from_columns(
        "random-long",
        ids=list(range(1, len(jobs) + 1)),
        submit=[j[0] for j in jobs],
        run=[j[1] for j in jobs],
        requested=[j[1] + j[2] for j in jobs],
        cpus=[j[3] for j in jobs],
    )
    return w, capacity


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("discipline", ["fcfs", "easy", "conservative"])
def test_long_bursty_workloads_match_the_reference(seed: int, discipline: str) -> None:
    w, capacity = _long_workload(seed)
    s = replay(w, [PoolSlots("XEON-8380", "cpu", capacity)], discipline)
    assert s.start.tolist() == reference(w, discipline, capacity)
