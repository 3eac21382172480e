"""Time shifting in the service: start a deadline task now, or hold it for a later hour.

Under a shifting policy (`SHIFTING_POLICIES`: ``cheapest`` and ``greenest``) a task with a
deadline may cost less money or carbon at a later hour, when the site's hourly electricity price
or carbon intensity is lower. Whether it does is decided by the simulator's own scoring:
`Placement.score` with holds, the code `Placement.choose` runs at a task's placement in
``computility sim`` (hour boundaries up to `MAX_HOLD_HOURS` ahead, only while the estimated finish
keeps `HOLD_MARGIN_S` or half the run before the deadline). Nothing here prices anything; this
module adapts that decision to the service:

- "Start now" means one of the pools with room now: the loop's batch placement places only into
  free units, and the core allows a hold only where there is no queue wait, so only those pools
  are weighed (no room anywhere: no decision; the task waits as pending, as any task does). On a
  large network, as in the simulator, only the first `PRUNED_CANDIDATES` of them in the task's
  cached ranking.
- A task is held at most once (its ``not_before`` stays set), as in the simulator, so a task whose
  estimate proved wrong is not held again. When the hold ends the loop places it as any pending
  task, by the batch placement, its deadline ruling out late pools; the pool is chosen then.
- Alike tasks (same demand, deadline, rules and tenant access) share one decision, so a batch of
  10^4 alike deadline tasks is scored once; a cycle scores at most `DECISIONS_PER_CYCLE` of them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from computility.domain.cost import Price
from computility.domain.money import from_micro
from computility.scheduler.candidates import Candidates, IntArray, LoadView
from computility.scheduler.placement import PRUNED_CANDIDATES, SHIFTING_POLICIES, Placement
from computility.server.live import cost_time

__all__ = ["DECISIONS_PER_CYCLE", "HELD_PREFIX", "SHIFTING_POLICIES", "Holds", "Start",
           "best_start", "decide_holds", "hold_reason"]

HELD_PREFIX = "held until "
"""How `hold_reason` (verb ``held``) begins: the loop tells a hold for an hour from a quota's by
it when the hour has come."""


@dataclass(frozen=True, slots=True)
class Start:
    """The best start of one task, and the best start now it was weighed against.

    Attributes:
        pool: pool row of the best option.
        hold_s: how long it would be held first (0: it starts now).
        figure: the policy's figure of the best option: kg CO2e (``greenest``) or micro-units of
            money (``cheapest``).
        now_figure: the same figure of the best candidate starting now.
        candidates: every candidate weighed, each at its own best hold (quotes show these).
    """

    pool: int
    hold_s: float
    figure: float
    now_figure: float
    candidates: Candidates


def room_pools(placement: Placement, task: int, free: IntArray, now: float) -> IntArray:
    """Candidate pools of workload row `task` with room for it now (`now`: cost-model time).

    On a large network (`Placement.prunes`) only the first `PRUNED_CANDIDATES` of them in the
    task's cached ranking, as the simulator's large-network path scores a deadline task under
    a shifting policy (its other pruned candidates, best-ranked but busy, cannot start now).
    """
    t = placement.tasks
    if placement.prunes:
        order = placement.ranking(task, now).order
        demand = int(t.gpu_milli[task]) or int(t.cpus[task])
        ranked: IntArray = order[free[order] >= demand][:PRUNED_CANDIDATES]
        return ranked
    pools = np.flatnonzero(placement.candidates_mask(task)).astype(np.int64)
    need = np.where(placement.pool_is_cpu[pools], t.cpus[task], t.gpu_milli[task])
    out: IntArray = pools[free[pools] >= need]
    return out


def best_start(placement: Placement, task: int, at_ts: float, free: IntArray) -> Start | None:
    """Where and when `task` (a workload row) starts best from `at_ts` (UNIX seconds), by the
    core's scoring with holds over the pools with room now; None when no hold is possible at
    all (`Placement.may_hold`: no shifting policy, no deadline, or too close to it), when no
    candidate has room, or when none is runnable."""
    now = cost_time(at_ts)
    if not placement.may_hold(task, now):
        return None  # no hour to shift to: the batch placement starts it, as any other task
    among = room_pools(placement, task, free, now)
    if among.shape[0] == 0:
        return None
    load = LoadView(capacity=placement.pool_units, free=free,
                    queued=np.zeros_like(free), backlog=np.zeros(free.shape[0]))
    held = placement.score(task, now, load, allow_hold=True, among=among)
    k = int(np.argmin(held.score))
    if not np.isfinite(held.score[k]):
        return None
    if float(held.hold_s[k]) == 0.0:
        figure = float(_figure(placement.policy, held.price)[k])
        return Start(int(held.pools[k]), 0.0, figure, figure, held)
    # Held: what the best start now would have been, for the reason's comparison.
    direct = placement.score(task, now, load, allow_hold=False, among=among)
    j = int(np.argmin(direct.score))
    return Start(int(held.pools[k]), float(held.hold_s[k]),
                 float(_figure(placement.policy, held.price)[k]),
                 float(_figure(placement.policy, direct.price)[j]), held)


def _figure(policy: str, price: Price) -> np.ndarray:
    return price.carbon_kg if policy == "greenest" else price.money


DECISIONS_PER_CYCLE = 1000
"""Distinct decisions (kinds of alike tasks) one scheduling cycle scores with holds, at about
half a millisecond each on 1,000 sites; tasks past it wait for the next cycle (a second at most),
so a burst of many kinds of deadline tasks cannot stretch one cycle by seconds."""


@dataclass
class Holds:
    """What `decide_holds` decided: per position in its `tasks`, (UNIX seconds the hold ends,
    the reason in a user's words) for those to hold; the positions left for the next cycle; and
    how many decisions were scored."""

    held: dict[int, tuple[float, str]]
    deferred: set[int]
    scored: int


def decide_holds(
    placement: Placement,
    tasks: Sequence[int],
    keys: Sequence[Hashable],
    deadlines_ts: Sequence[float],
    free: IntArray,
    at_ts: float,
    currency: str,
    utc_offset_minutes: int,
    budget: int = DECISIONS_PER_CYCLE,
) -> Holds:
    """Which of `tasks` (workload rows with a deadline, never held) to hold, and how.

    Tasks with equal `keys` are alike and share one decision; at most `budget` decisions are
    scored, and the tasks of any further kinds are deferred.
    """
    out = Holds({}, set(), 0)
    if placement.policy not in SHIFTING_POLICIES:
        return out
    decided: dict[Hashable, Start | None] = {}
    for i, (task, key) in enumerate(zip(tasks, keys, strict=True)):
        if key not in decided:
            if out.scored >= budget:
                out.deferred.add(i)
                continue
            decided[key] = best_start(placement, task, at_ts, free)
            out.scored += 1
        start = decided[key]
        if start is not None and start.hold_s > 0:
            out.held[i] = (at_ts + start.hold_s, hold_reason(
                placement.policy, start, at_ts, deadlines_ts[i], currency, utc_offset_minutes))
    return out


def hold_reason(
    policy: str, start: Start, at_ts: float, deadline_ts: float, currency: str,
    utc_offset_minutes: int, verb: str = "held",
) -> str:
    """E.g. ``held until 03:00 (+08:00) for greener hours: 0.12 kg CO2e instead of 0.31;
    deadline 2026-12-07 14:00`` (times in the network's time zone; the date is named when the
    hold ends on another day)."""
    tz = timezone(timedelta(minutes=utc_offset_minutes))
    now = datetime.fromtimestamp(at_ts, tz)
    until = datetime.fromtimestamp(at_ts + start.hold_s, tz)
    when = until.strftime("%H:%M" if until.date() == now.date() else "%Y-%m-%d %H:%M")
    offset = until.isoformat()[-6:]
    if policy == "greenest":
        what = (f"greener hours: {start.figure:.3g} kg CO2e instead of "
                f"{start.now_figure:.3g}")
    else:
        what = (f"cheaper hours: {from_micro(round(start.figure)):g} {currency} instead of "
                f"{from_micro(round(start.now_figure)):g}")
    deadline = datetime.fromtimestamp(deadline_ts, tz).strftime("%Y-%m-%d %H:%M")
    return f"{verb} until {when} ({offset}) for {what}; deadline {deadline}"
