"""Why a task went where it went, and why it is still waiting: computed on demand, never stored.

An explanation is worked out from the scheduler's state at the moment it is asked for, with the
very code that decides (`Placement.score`), so it cannot drift from the decision it explains.
Nothing is recorded per decision: a network placing millions of tasks keeps no per-task score
tables, and a user asking "why?" pays for the answer only then.

- **Placement** (asked at decision time): every feasible site and pool with its estimated wait,
  transfer, run time, finish, money, carbon and latency and the policy's score; the chosen one is
  marked; every other site with the reason it was ruled out.
- **Pending** (asked while the task waits): its blocker in words, and an estimated start: for a
  queued task, the start a reservation in queue order would give it (conservative backfilling's
  plan over the running tasks' expected ends), for a held one the time its hold ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from computility.domain.site import MILLI
from computility.scheduler.queues import PoolQueue

if TYPE_CHECKING:
    from computility.scheduler.core import Scheduler

MICRO = 1_000_000


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """One feasible pool of a task, as the policy saw it (times in s, money in currency units)."""

    site: str
    pool: str
    device: str
    wait_s: float
    transfer_s: float
    hold_s: float
    run_s: float
    finish_s: float
    money: float
    carbon_kg: float
    latency_ms: float
    moved_gb: float
    score: float | None
    chosen: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    """The answer to "why there?" or "why not yet?" for one task at time `at_s`.

    Attributes:
        task: the task's row in its workload; `task_id` its own id.
        state: ``placing`` (asked at its decision), ``held``, ``queued``, ``running``,
            ``finished`` or ``rejected``.
        candidates: scored feasible pools (placing only), best score first.
        rejected: site id -> why no pool there can run the task.
        blocker: what the task waits for, in words (held or queued only).
        estimated_start_s: simulated time it is expected to start (held or queued only).
    """

    task: int
    at_s: float
    policy: str
    state: str
    task_id: int = -1
    candidates: tuple[CandidateScore, ...] = ()
    rejected: dict[str, str] = field(default_factory=dict)
    blocker: str | None = None
    estimated_start_s: float | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form (no NaN or infinity); ``task`` is the task's own id."""
        return {
            "task": self.task_id,
            "at_s": self.at_s,
            "policy": self.policy,
            "state": self.state,
            "candidates": [
                {k: _finite(getattr(c, k)) for k in CandidateScore.__slots__}
                for c in self.candidates
            ],
            "rejected": dict(self.rejected),
            "blocker": self.blocker,
            "estimated_start_s": _finite(self.estimated_start_s),
        }


def mark_chosen(explanation: Explanation, site: str, pool: str) -> Explanation:
    """The same explanation with `site`/`pool` marked as the one chosen."""
    rows = tuple(
        replace(c, chosen=(c.site == site and c.pool == pool)) for c in explanation.candidates
    )
    return replace(explanation, candidates=rows)


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def explain_placement(scheduler: Scheduler, task: int, now: float) -> Explanation:
    """Score every candidate of `task` against the state right now (call it at decision time)."""
    return replace(_placement(scheduler, task, now), task_id=int(scheduler.tasks.ids[task]))


def explain_pending(scheduler: Scheduler, task: int, now: float) -> Explanation:
    """Why `task` has not started by `now`, and when it is expected to."""
    return replace(_pending(scheduler, task, now), task_id=int(scheduler.tasks.ids[task]))


def _placement(scheduler: Scheduler, task: int, now: float) -> Explanation:
    placement = scheduler.placement
    if placement is None:
        return Explanation(task, now, "", "placing", rejected={})
    network = placement.network
    c = placement.score(task, now, scheduler.load_view(now))
    best = int(np.argmin(c.score)) if c.score.shape[0] else -1
    rows = []
    for k in range(c.pools.shape[0]):
        site, pool = network.pools[int(c.pools[k])]
        score = float(c.score[k])
        rows.append(
            CandidateScore(
                site=site.id,
                pool=pool.id,
                device=pool.device.id,
                wait_s=float(c.wait_s[k]),
                transfer_s=float(c.transfer_s[k]),
                hold_s=float(c.hold_s[k]),
                run_s=float(c.run_s[k]),
                finish_s=float(now + c.finish_s[k]),
                money=float(c.price.money[k]) / MICRO,
                carbon_kg=float(c.price.carbon_kg[k]),
                latency_ms=float(c.latency_ms[k]),
                moved_gb=float(c.moved_gb[k]),
                score=score if math.isfinite(score) else None,
                chosen=k == best,
            )
        )
    rows.sort(key=lambda r: (r.score is None, r.score if r.score is not None else 0.0))
    return Explanation(
        task=task,
        at_s=now,
        policy=placement.policy,
        state="placing",
        candidates=tuple(rows),
        rejected=placement.rejections(task),
    )


def _pending(scheduler: Scheduler, task: int, now: float) -> Explanation:
    policy = scheduler.placement.policy if scheduler.placement is not None else ""
    pool = int(scheduler.pool_of[task])
    for ready, held_task, held_pool in scheduler._held:
        if held_task == task:
            moved = float(scheduler.moved_gb[task])
            why = (
                f"its input ({moved:g} GB) is moving to {_pool_name(scheduler, held_pool)} "
                f"until {ready:.0f} s"
                if moved > 0 and float(scheduler.held_s[task]) == 0.0
                else f"held for cheaper or greener hours until {ready:.0f} s"
            )
            return Explanation(task, now, policy, "held", blocker=why, estimated_start_s=ready)
    if pool < 0:
        return Explanation(task, now, policy, "rejected")
    queue = scheduler.queues[pool]
    line = queue.queued.tolist()
    if task not in line:
        return Explanation(task, now, policy, "running" if task in queue._running else "finished")
    position = line.index(task)
    unit = "cores" if scheduler.pools[pool].is_cpu else "accelerators"
    scale = 1.0 if scheduler.pools[pool].is_cpu else MILLI
    need = _demand(scheduler, task, pool)
    start = estimated_start(queue, task, now)
    name = _pool_name(scheduler, pool)
    if position == 0:
        why = (
            f"first in line for {name}: needs {need / scale:g} {unit}, "
            f"{queue.free / scale:g} free until running tasks end"
        )
    else:
        head = line[0]
        why = (
            f"behind {position} task(s) in {name}'s queue; the first needs "
            f"{_demand(scheduler, head, pool) / scale:g} {unit}, {queue.free / scale:g} free"
        )
    return Explanation(task, now, policy, "queued", blocker=why, estimated_start_s=start)


def _pool_name(scheduler: Scheduler, pool: int) -> str:
    """``site/pool (device)`` on a network; ``pool N (device)`` for bare pools."""
    device = scheduler.pools[pool].device_id
    if scheduler.placement is None:
        return f"pool {pool} ({device})"
    site, p = scheduler.placement.network.pools[pool]
    return f"{site.id}/{p.id} ({device})"


def _demand(scheduler: Scheduler, task: int, pool: int) -> int:
    t = scheduler.tasks
    return int(t.cpus[task] if scheduler.pools[pool].is_cpu else t.gpu_milli[task])


def estimated_start(queue: PoolQueue, task: int, now: float) -> float:
    """Start of `task` if every task ahead of it reserved units in queue order.

    The plan is conservative backfilling's: a step function of free units built from the running
    tasks' expected ends, each waiting task taking the earliest slot that holds it for its
    requested time. Under EASY or FCFS the real start can differ, which is why it is an estimate.
    """
    ends, sizes = queue.expected_releases()
    times = [now, *ends.tolist()]
    free = [queue.free]
    for size in sizes.tolist():
        free.append(free[-1] + size)
    demand = queue._qd.tolist()
    req = queue._qr.tolist()
    tasks = queue._q_task[queue._q_head : queue._q_head + queue._q_len].tolist()
    for slot, who in enumerate(tasks):
        d = demand[slot]
        if d > queue.capacity:  # a hole left by a task that started
            continue
        start = _reserve(times, free, d, req[slot])
        if who == task:
            return start
    return math.nan


def _reserve(times: list[float], free: list[int], demand: int, duration: float) -> float:
    """Earliest breakpoint from which `demand` units stay free for `duration`; book them."""
    i = 0
    n = len(times)
    while i < n:
        t0 = times[i]
        j = i
        while j < n and times[j] < t0 + duration and free[j] >= demand:
            j += 1
        if j == n or times[j] >= t0 + duration:
            end = t0 + duration
            k = j
            if k == n or times[k] != end:
                times.insert(k, end)
                free.insert(k, free[k - 1])
            for m in range(i, k):
                free[m] -= demand
            return t0
        i = j + 1
    return math.nan
