"""Grouping a batch into classes: tasks that every policy treats identically share one cost row.

A class is keyed on only what its policy reads (the cost-valuing policies: the speed row, dataset
and data size; the deadline policies: the deadline's slack; ``nearest``: the user's location), on
top of the candidate pools and units needed, so that classes stay few and pricing them stays cheap.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from computility.domain.workload import NO_INDEX
from computility.scheduler.batch.classes import ClassBlock, TaskClasses, _penalty, _worst
from computility.scheduler.batch.pricing import COST_POLICIES, CURVE_STEP, _ClassInfo, _Pricer
from computility.scheduler.candidates import FloatArray, IntArray
from computility.scheduler.placement import DEADLINE_POLICIES, Placement


def classify(
    placement: Placement,
    tasks: IntArray,
    now: float = 0.0,
    free_units: IntArray | None = None,
    *,
    curve_step: float | None = CURVE_STEP,
    rng: np.random.Generator | None = None,
) -> TaskClasses:
    """Group the batch `tasks` into classes and price one task of each on its candidate pools.

    Args:
        placement: feasibility, speed and cost models of the workload, and the policy.
        tasks: workload rows of the pending tasks.
        now: decision time, seconds of simulated time (curves and deadlines are read from it).
        free_units: units free on every pool now (all of them when None); the baselines
            ``least_loaded`` and ``nearest`` order pools by it.
        curve_step: the run-length grid ratio for curve averages; None prices exactly.
        rng: draws of the ``random`` policy (seeded 0 when None).
    """
    rows = np.asarray(tasks, np.int64)
    w = placement.tasks
    policy = placement.policy
    units = placement.pool_units.astype(np.int64)
    free = units.copy() if free_units is None else np.asarray(free_units, np.int64)
    n_all = len(w)
    n = rows.shape[0]
    cpus = w.cpus[rows].astype(np.int64)
    gpu = w.gpu_milli[rows].astype(np.int64)
    ds = _column(w.dataset, n_all, NO_INDEX)[rows].astype(np.int64)
    local = _column(w.data_local, n_all, False)[rows].astype(np.int64)
    ruled = np.zeros(n, np.int64)
    if placement.rules:
        ruled = np.where(np.isin(rows, list(placement.rules)), rows + 1, 0)
    kind_key = np.stack((cpus, gpu, w.gpu_types[rows].astype(np.int64), ds, local, ruled), 1)
    kind_first, kind_of = _group(kind_key)
    # Kinds with the same candidate pools (most datasets may be read anywhere) share a block.
    masks = (
        np.stack([placement.candidates_mask(int(rows[i])) for i in kind_first])
        if n
        else np.zeros((0, units.shape[0]), np.bool_)
    )
    mask_first, mask_of_kind = _group_rows(np.packbits(masks, axis=1))
    mask_id = mask_of_kind[kind_of]

    speed = placement.speed
    speed_class = speed.task_class[rows] if speed.task_class.shape[0] == n_all else np.zeros(n)
    run = w.run[rows].astype(np.float64)
    deadline = _column(w.deadline, n_all, math.nan)[rows]
    location = _locations(placement)[rows]
    gb = _column(w.data_gb, n_all, 0.0)[rows]

    cols = [mask_id, cpus, gpu]
    if policy in COST_POLICIES:
        cols += [speed_class.astype(np.int64), ds, gb.view(np.int64)]
    if policy in DEADLINE_POLICIES:
        cols.append(_deadline_level(speed.factors, speed_class, run, deadline, now))
    if policy == "nearest":
        cols.append(location)
    first, class_of = _group(np.stack(cols, 1))
    n_classes = first.shape[0]
    count = np.bincount(class_of, minlength=n_classes).astype(np.int64)
    order = np.argsort(class_of, kind="stable")
    starts = np.concatenate(([0], np.cumsum(count)[:-1])).astype(np.int64)
    mean_run = np.bincount(class_of, weights=run, minlength=n_classes) / np.maximum(count, 1)
    min_run = np.minimum.reduceat(run[order], starts) if n else np.zeros(0)
    allowed = np.where(np.isfinite(deadline), (deadline - now) / run, np.inf)
    min_allowed = np.minimum.reduceat(allowed[order], starts) if n else np.zeros(0)
    demand = np.where(gpu > 0, gpu, cpus)[first]
    info = _ClassInfo(
        mean_run=mean_run,
        min_run=min_run,
        min_allowed=min_allowed,
        demand=np.maximum(demand, 1),
        speed_class=speed_class[first].astype(np.int64),
        dataset=ds[first],
        gb=gb[first],
        location=location[first],
    )
    pricer = _Pricer(placement, info, now, free, units, curve_step, rng)
    class_mask = mask_id[first]
    blocks: list[ClassBlock] = []
    block_of = np.zeros(n_classes, np.int64)
    row_of = np.zeros(n_classes, np.int64)
    for m in range(mask_first.shape[0]):
        members = np.flatnonzero(class_mask == m).astype(np.int64)
        pools = np.flatnonzero(masks[mask_first[m]]).astype(np.int64)
        block_of[members] = len(blocks)
        row_of[members] = np.arange(members.shape[0])
        block = ClassBlock(members, pools, pricer.cost(members, pools))
        if placement.policy not in COST_POLICIES and block.cost.size:
            pricer.worst[members] = _worst(block.cost)
        blocks.append(block)
    return TaskClasses(
        policy=policy,
        tasks=rows,
        class_of=class_of,
        count=count,
        demand=info.demand,
        run_s=run,
        penalty=_penalty(pricer.worst),
        blocks=tuple(blocks),
        block_of=block_of,
        row_of=row_of,
        pool_units=units,
        shapes=int(kind_first.shape[0]),
    )


def _group(key: IntArray) -> tuple[IntArray, IntArray]:
    """Rows of `key` grouped: each group's first row (in row order) and each row's group."""
    n = key.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort(key.T[::-1])
    srt = key[order]
    new = np.ones(n, np.bool_)
    new[1:] = np.any(srt[1:] != srt[:-1], axis=1)
    gid = np.cumsum(new) - 1
    group = np.empty(n, np.int64)
    group[order] = gid
    # lexsort is stable: a group's first row in sorted order is its first in row order.
    first = order[new]
    # Renumber groups by first appearance so class numbers follow the batch order.
    by_first = np.argsort(first, kind="stable")
    rank = np.empty_like(by_first)
    rank[by_first] = np.arange(first.shape[0])
    return first[by_first].astype(np.int64), rank[group].astype(np.int64)


def _group_rows(rows: npt.NDArray[np.uint8]) -> tuple[IntArray, IntArray]:
    """`_group` for long rows of bytes (packed masks): hashed, not sorted column by column."""
    seen: dict[bytes, int] = {}
    group = np.array([seen.setdefault(r.tobytes(), len(seen)) for r in rows], np.int64)
    first = np.zeros(len(seen), np.int64)
    first[group[::-1]] = np.arange(rows.shape[0] - 1, -1, -1)
    return first, group


def _column(values: Any, n: int, fill: Any) -> Any:
    """A per-task column, or `fill` for every task where the workload lacks it."""
    arr = np.asarray(values)
    return arr if arr.shape[0] == n else np.full(n, fill)


def _locations(placement: Placement) -> IntArray:
    """Per task, the network's demand row of its user (`NO_INDEX` where unknown or none)."""
    w = placement.tasks
    rows = {d.id: r for r, d in enumerate(placement.network.demand)}
    table = np.array([rows.get(name, NO_INDEX) for name in w.locations] + [NO_INDEX], np.int64)
    loc = _column(w.location, len(w), NO_INDEX).astype(np.int64)
    out: IntArray = np.where(loc >= 0, table[np.clip(loc, 0, table.shape[0] - 1)], NO_INDEX)
    return out


def _deadline_level(
    factors: FloatArray, speed_class: Any, run: FloatArray, deadline: FloatArray, now: float
) -> IntArray:
    """How many distinct speed factors of its row still meet the deadline (-1: no deadline).

    Tasks of one level are ruled out of exactly the same pools by the run alone, so a class of
    them has one set of deadline-meeting pools.
    """
    level = np.full(run.shape[0], -1, np.int64)
    has = np.flatnonzero(np.isfinite(deadline))
    if not has.shape[0]:
        return level
    allowed = (deadline[has] - now) / run[has]
    sc = np.asarray(speed_class, np.int64)[has]
    for s in np.unique(sc):
        row = factors[int(s)]
        values = np.unique(row[np.isfinite(row)])
        sel = sc == s
        level[has[sel]] = np.searchsorted(values, allowed[sel], side="right")
    return level
