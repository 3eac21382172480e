"""The fast path: a batch filled class by class, never over-committing a pool.

Going class after class, never task after task, keeps the fill to a Python call per class. Each
policy's fill spreads a class over its pools as the policy spreads tasks placed one by one, so a
batch keeps the policy's character.
"""

from __future__ import annotations

import math
import time

import numpy as np

from computility.scheduler.batch.assignment import Assignment, _assignment
from computility.scheduler.batch.classes import TaskClasses
from computility.scheduler.candidates import FloatArray, IntArray
from computility.scheduler.placement import POLICIES


def greedy_fill(
    classes: TaskClasses,
    free_units: IntArray,
    policy: str | None = None,
    rng: np.random.Generator | None = None,
) -> Assignment:
    """Place every class's tasks in one pass over classes, never over-committing a pool.

    Classes go most constrained first (fewest candidate pools), then smallest first: the
    objective counts tasks, so where a group of pools cannot hold the whole batch, the fewest
    tasks are left out when the largest are (they wait for the next batch). Each class is filled
    the way its policy orders pools (the cost-valuing policies and ``nearest``: best-first by the
    class's cost row; ``least_loaded``: water-filling on spare share; ``random``: uniform draws
    among pools with room; ``round_robin``: cycling on from the last pool chosen), each pool
    taking at most ``floor(free / demand)`` of its tasks. Tasks that fit nowhere stay unplaced.

    Args:
        classes: the batch, from `classify` (its cost rows are the ones reported).
        free_units: units free on every pool now; not modified.
        policy: how to fill (`classes.policy` when None).
        rng: draws of ``random``.
    """
    t0 = time.perf_counter()
    policy = classes.policy if policy is None else policy
    if policy not in POLICIES:
        raise ValueError(f"unknown placement policy '{policy}'")
    free = np.array(free_units, np.int64, copy=True)
    arcs = _fill(classes, classes.count, free, policy, rng or np.random.default_rng(0))
    return _assignment(classes, *arcs, solver=f"greedy ({policy})", t0=t0)


def _fill(
    classes: TaskClasses,
    count: IntArray,
    free: IntArray,
    policy: str,
    rng: np.random.Generator,
    order: IntArray | None = None,
) -> tuple[IntArray, IntArray, IntArray]:
    """Arcs (class, pool, tasks) of the fill, classes in `order`; `free` is reduced in place."""
    if order is None:
        width = np.array([classes.blocks[b].pools.shape[0] for b in classes.block_of], np.int64)
        order = np.lexsort((classes.demand, width))
    best_first = policy not in ("least_loaded", "random", "round_robin")
    # Each class's cheapest pool, found for all classes at once: where it still holds the whole
    # class (the common case) the class is placed without touching its row again.
    cheapest = [
        np.argmin(b.cost, axis=1) if b.cost.size else np.zeros(b.classes.shape[0], np.int64)
        for b in classes.blocks
    ]
    quick_c: list[int] = []
    quick_p: list[int] = []
    quick_n: list[int] = []
    out_c: list[IntArray] = []
    out_p: list[IntArray] = []
    out_n: list[IntArray] = []
    last_rr = [-1]
    for c in order.tolist():
        n = int(count[c])
        if n == 0:
            continue
        pools, cost = classes.row(c)
        if pools.shape[0] == 0:
            continue
        d = int(classes.demand[c])
        if best_first:
            j = int(cheapest[int(classes.block_of[c])][int(classes.row_of[c])])
            p = int(pools[j])
            if free[p] < n * d or not cost[j] < math.inf:
                # Its cheapest pool is taken: the cheapest with room for one task, else a walk.
                room = free[pools] // d
                usable = np.where(room > 0, cost, np.inf)
                j = int(usable.argmin())
                if not usable[j] < math.inf:
                    continue
                p = int(pools[j])
                if room[j] < n:
                    take = _best_first(room, n, usable)
                    hit = np.flatnonzero(take)
                    free[pools[hit]] -= take[hit] * d
                    out_c.append(np.full(hit.shape[0], c, np.int64))
                    out_p.append(pools[hit])
                    out_n.append(take[hit])
                    continue
            free[p] -= n * d
            quick_c.append(c)
            quick_p.append(p)
            quick_n.append(n)
            continue
        if policy == "least_loaded":
            take = _water_fill(free[pools], classes.pool_units[pools], d, n, cost)
        elif policy == "random":
            take = _random_fill(free[pools] // d, n, cost, rng)
        else:
            take = _cycle_fill(free[pools] // d, n, cost, pools, last_rr)
        hit = np.flatnonzero(take)
        if not hit.shape[0]:
            continue
        free[pools[hit]] -= take[hit] * d
        out_c.append(np.full(hit.shape[0], c, np.int64))
        out_p.append(pools[hit])
        out_n.append(take[hit])
    out_c.append(np.array(quick_c, np.int64))
    out_p.append(np.array(quick_p, np.int64))
    out_n.append(np.array(quick_n, np.int64))
    return np.concatenate(out_c), np.concatenate(out_p), np.concatenate(out_n)


def _best_first(room: IntArray, n: int, usable: FloatArray) -> IntArray:
    """Tasks per pool when pools are taken cheapest first, each up to its room (inf: unusable)."""
    order = np.argsort(usable, kind="stable")
    r = np.where(np.isfinite(usable[order]), room[order], 0)
    before = np.cumsum(r) - r
    take = np.zeros(room.shape[0], np.int64)
    take[order] = np.clip(n - before, 0, r)
    return take


def _water_fill(
    free: IntArray, units: IntArray, d: int, n: int, cost: FloatArray
) -> IntArray:
    """Tasks per pool that keep the least spare share as high as it can be (least_loaded).

    Placing tasks one by one on the pool with the largest spare share takes, from each pool,
    the tasks whose share *before* placing is largest: pool p offers (free_p - k d) / units_p
    for its k-th task. The n largest offers are found by bisection on the share.
    """
    ok = np.isfinite(cost)
    room = np.where(ok, free // d, 0)
    total = int(room.sum())
    if total <= n:
        return room
    cap = np.maximum(units, 1).astype(np.float64)
    share = free / cap
    step = d / cap

    def taken(level: float) -> IntArray:
        k = np.floor((share - level) / step).astype(np.int64) + 1
        t: IntArray = np.clip(k, 0, room)
        return t

    # Invariant: at least n offers are >= lo, fewer than n are >= hi.
    lo = float(share[ok].min()) - float(step[ok].max()) * (n + 1) - 1.0
    hi = float(share[ok].max()) + float(step[ok].max())
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if int(taken(mid).sum()) >= n:
            lo = mid
        else:
            hi = mid
    take = taken(hi)
    left = n - int(take.sum())
    if left > 0:
        offer = np.where(take < room, share - take * step, -np.inf)
        best = np.argsort(-offer, kind="stable")[:left]
        take[best] += 1
    return take


def _random_fill(
    room: IntArray, n: int, cost: FloatArray, rng: np.random.Generator
) -> IntArray:
    """Tasks per pool drawn uniformly among pools with room, redrawn where a pool is full."""
    room = np.where(np.isfinite(cost), room, 0)
    take = np.zeros(room.shape[0], np.int64)
    left = n
    while left > 0:
        open_ = np.flatnonzero(take < room)
        if not open_.shape[0]:
            break
        hits = np.bincount(rng.integers(open_.shape[0], size=left), minlength=open_.shape[0])
        got = np.minimum(hits, room[open_] - take[open_])
        take[open_] += got
        left -= int(got.sum())
    return take


def _cycle_fill(
    room: IntArray, n: int, cost: FloatArray, pools: IntArray, last: list[int]
) -> IntArray:
    """Tasks per pool when the class cycles over its pools from just after the last one chosen.

    A full cycle gives every pool with room one task; so each pool gets min(room, t) for the
    largest t that fits, and the remaining tasks go one each to the next pools in cycle order.
    """
    room = np.where(np.isfinite(cost), room, 0)
    total = int(room.sum())
    if total == 0:
        return np.zeros(room.shape[0], np.int64)
    if total <= n:
        take = room.copy()
    else:
        levels = np.sort(room)
        # sum(min(room, t)) for t at each distinct room value, to find the last full cycle.
        below = np.cumsum(levels)
        fill = below + levels * (levels.shape[0] - 1 - np.arange(levels.shape[0]))
        i = int(np.searchsorted(fill, n, side="right"))
        if i == 0:
            t = n // levels.shape[0]
        else:
            base = int(levels[i - 1])
            rest = levels.shape[0] - i
            t = base + (n - int(fill[i - 1])) // max(rest, 1)
        take = np.minimum(room, t)
        left = n - int(take.sum())
        start = int(np.searchsorted(pools, last[0], side="right")) % pools.shape[0]
        cyc = np.roll(np.arange(pools.shape[0]), -start)
        more = cyc[room[cyc] > t][:left]
        take[more] += 1
    chosen = np.flatnonzero(take)
    start = int(np.searchsorted(pools, last[0], side="right")) % pools.shape[0]
    after = (chosen - start) % pools.shape[0]
    last[0] = int(pools[chosen[int(np.argmax(after))]])
    return take


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)
