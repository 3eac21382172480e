"""Placing a batch of pending tasks at once: classes of alike tasks, a fast fill, an exact solve.

Scoring one task at a time against every pool costs a Python call per task. At national scale
(10^5 pending tasks, 10^3 sites) most tasks are alike: the same cores or accelerators, the same
allowed devices, the same data. So a batch is placed in three steps:

1. `classify` groups the batch into *classes* of tasks that every policy treats identically (same
   candidate pools, same units needed per task, and what else changes the policy's figure: the
   speed model's row, the dataset read, the deadline's slack, the user's location) and prices one
   task of each class on each candidate pool: a (classes x pools) table of costs, held per *block*
   of classes that share their candidate pools.
2. `greedy_fill` is the fast path: class after class (never task after task) its tasks go to its
   pools best-first, each pool taking only the tasks its free units still hold, so the batch never
   over-commits a pool whatever the policy.
3. `exact_assign` solves the class -> pool assignment for the least total cost: as a min-cost flow
   where capacity is one resource in task units (every class using a pool needs the same units
   there), else as the LP relaxation over every feasible arc, rounded. It reports the achieved cost,
   a lower bound valid for the whole (unpruned) problem, the gap, and what rounding left unplaced.

Approximations of the class model, against per-task scoring (`Placement.score`):

- **Queue wait is zero**: a batch is placed into units that are free now; a task that fits nowhere
  is left unplaced (and counted), never queued. There are no holds for cheaper hours.
- **Run time is the class mean**: every task of a class is priced at the class's mean stated run
  time (times the pool's speed factor). Money and energy are linear in run time, so a class's
  total is exact for them; the electricity price and carbon intensity averaged over the run are
  not. Within a class the longest tasks get the cheapest pools (`Assignment.pools`).
- **Curves on a grid**: with ``curve_step`` (default `CURVE_STEP`) the hourly electricity price
  and carbon intensity are averaged from ``now`` over the class's mean stated run rounded to a
  geometric grid (ratio 2^(1/4)), not over each pool's own run time nor after the data transfer.
  This is what makes pricing 10^7 (class, pool) pairs take a fraction of a second. With
  ``curve_step=None`` each pair is priced exactly as `Placement.score` prices a task at zero wait.
- **Deadlines per class**: tasks are classed by how many of their speed row's distinct factors
  still meet the deadline (the run alone); a pool is ruled out for the whole class when the class's
  tightest task would miss there, counting the transfer at the class's shortest run. As in
  `Placement`, when every pool misses, the fastest wins (costs become finish times, scaled so the
  best equals the best of the policy's own figure).
- Baseline policies get rows that encode their order: ``least_loaded`` the used share of each pool
  at the start of the batch, ``nearest`` latency then used share, ``random`` a uniform draw,
  ``round_robin`` the pool's distance after the last pool chosen. The fill spreads them as they
  spread tasks one by one (water-filling on spare share, uniform draws, cycling).

The objective of the assignment is the sum over placed tasks of their class's cost on their pool
plus, per task left unplaced, `UNPLACED_PENALTY` times the costliest candidate of its class: a
solver then leaves a task out only where capacity runs out, never to save cost. Where a group of
pools cannot hold its share of the batch, which tasks wait for the next batch follows from that
objective (the exact solve) or from the fill order (smallest first), so the largest tasks tend to
wait: a batch trades them for more tasks placed now.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import sparse  # type: ignore[import-untyped]
from scipy.optimize import linprog  # type: ignore[import-untyped]

from computility.domain.cost import JOULES_PER_KWH, SECONDS_PER_HOUR
from computility.domain.workload import NO_INDEX
from computility.scheduler.placement import (
    BALANCED_WEIGHTS,
    DEADLINE_POLICIES,
    POLICIES,
    BoolArray,
    FloatArray,
    IntArray,
    Placement,
)

COST_POLICIES: Final = frozenset({"cheapest", "fastest", "greenest", "balanced"})
"""Policies whose figure depends on run time, data and price, so classes must separate those."""

CURVE_STEP: Final = 2.0**0.25
"""Ratio of the run-length grid that hourly curves are averaged over (see the module)."""

UNPLACED_PENALTY: Final = 10.0
"""Cost of leaving a task out, in units of its class's costliest candidate."""

SOLVERS: Final = ("auto", "ortools", "highs")

_CHUNK_ENTRIES: Final = 1 << 16
"""(class, pool) entries priced at once: temporaries of this size stay in cache."""
_LP_SEED_ARCS: Final = 4
_FLOW_SEED_ARCS: Final = 16
_LP_ADD_ARCS: Final = 64
_LP_MAX_ROUNDS: Final = 100
_LP_TOL: Final = 1e-9
_UNIT_TOL: Final = 1e-6
_OR_TOOLS_COST_BITS: Final = 46
_OR_TOOLS_SLACK: Final = 1e-5


# ---------------------------------------------------------------------------------------- data


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


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a batch goes, as class counts per pool, with what it costs and how good it is.

    Attributes:
        classes: the batch it places.
        arc_class, arc_pool, arc_count: tasks of class ``arc_class`` placed on ``arc_pool``.
        cost: the objective: placed tasks' costs plus the penalties of unplaced ones.
        placed_cost: the placed tasks' costs alone.
        placed, unplaced: task counts.
        bound: a lower bound on the objective of any assignment of the batch (nan: none).
        solver: what produced it.
        wall_s: seconds it took (classification not included).
        rounded_out: tasks the LP placed (in part) that rounding down dropped (0 when integral);
            they are placed again, cheapest first, where capacity is left.
        left_by_rounding: tasks unplaced beyond those the LP itself left out (rounded up).
        lp_value: the LP optimum (nan when no LP was solved).
        lp_unplaced: tasks the LP left out, a fraction where its optimum splits tasks.
        rounds: LP solves of the column generation (0 when none).
        kept: the solution kept by `exact_assign` (``optimal``, ``rounded`` or ``greedy``).
    """

    classes: TaskClasses
    arc_class: IntArray
    arc_pool: IntArray
    arc_count: IntArray
    cost: float
    placed_cost: float
    placed: int
    unplaced: int
    bound: float
    solver: str
    wall_s: float
    rounded_out: int = 0
    left_by_rounding: int = 0
    lp_value: float = math.nan
    rounds: int = 0
    kept: str = ""
    lp_unplaced: float = math.nan

    @property
    def gap(self) -> float:
        """(cost - bound) / bound: how far above the best possible this assignment may be."""
        if not math.isfinite(self.bound) or self.bound <= 0:
            return math.nan
        return (self.cost - self.bound) / self.bound

    def pools(self) -> IntArray:
        """Per batch position, its pool (-1 where unplaced).

        Within a class the longest tasks go to the cheapest of the class's pools: the class's
        cost row is for its mean run time, and a longer run costs more wherever it goes.
        """
        c = self.classes
        out = np.full(c.tasks.shape[0], -1, np.int64)
        if not self.arc_count.sum():
            return out
        members = np.lexsort((-c.run_s, c.class_of))
        starts = np.zeros(c.n_classes + 1, np.int64)
        np.cumsum(c.count, out=starts[1:])
        cost = c.arc_cost(self.arc_class, self.arc_pool)
        arcs = np.lexsort((cost, self.arc_class))
        cls = np.repeat(self.arc_class[arcs], self.arc_count[arcs])
        pool = np.repeat(self.arc_pool[arcs], self.arc_count[arcs])
        first = np.searchsorted(cls, np.arange(c.n_classes))
        rank = np.arange(cls.shape[0]) - first[cls]
        out[members[starts[cls] + rank]] = pool
        return out

    def usage(self) -> IntArray:
        """Units taken on every pool of the network."""
        used: IntArray = np.bincount(
            self.arc_pool,
            weights=self.arc_count * self.classes.demand[self.arc_class],
            minlength=self.classes.n_pools,
        ).astype(np.int64)
        return used


# ---------------------------------------------------------------------------------- classify


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


@dataclass(frozen=True, slots=True)
class _ClassInfo:
    """Per class: the figures its costs are computed from."""

    mean_run: FloatArray
    min_run: FloatArray
    min_allowed: FloatArray
    demand: IntArray
    speed_class: IntArray
    dataset: IntArray
    gb: FloatArray
    location: IntArray


class _Pricer:
    """One task's cost per (class, pool), block by block, under the placement's policy.

    Everything that depends on the pool alone (rates, curve means per run-length bucket, transfer
    from each region) is tabled once per block; the (classes x pools) arithmetic is then done in
    chunks of rows small enough to stay in cache.
    """

    def __init__(
        self,
        placement: Placement,
        info: _ClassInfo,
        now: float,
        free: IntArray,
        units: IntArray,
        curve_step: float | None,
        rng: np.random.Generator | None,
    ) -> None:
        self.p = placement
        self.info = info
        self.now = now
        self.step = curve_step
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.used_share: FloatArray = 1.0 - free / np.maximum(units, 1)
        cost = placement.cost
        self.arrays = cost.arrays
        self.pool_site = cost.arrays.pool_site
        self.pool_region = cost.pool_region
        # Money and energy per unit-second of run on each pool (the parts linear in run time).
        self.compute_rate = cost.cu_per_unit * cost.pool_price / SECONDS_PER_HOUR
        self.kwh_rate = cost.watts_per_unit * cost.pool_pue / JOULES_PER_KWH
        holders = _dataset_holders(placement)
        ds = info.dataset
        self.src = np.full(ds.shape[0], NO_INDEX, np.int64)
        self.holders: dict[int, IntArray | None] = {}
        for c in np.flatnonzero(ds >= 0).tolist():
            h = holders[int(ds[c])]
            if h is not None and h.shape[0] == 1:
                self.src[c] = int(h[0])
            else:
                self.holders[c] = h
        self.bucket = (
            np.zeros(ds.shape[0], np.int64) if curve_step is None else self._bucket(info.mean_run)
        )
        self.buckets, self.bucket_row = np.unique(self.bucket, return_inverse=True)
        self._curves: tuple[FloatArray, FloatArray] | None = None
        self.worst = np.zeros(ds.shape[0])
        """Per class, its costliest candidate (what leaving a task out is priced from)."""

    def cost(self, classes: IntArray, pools: IntArray) -> FloatArray:
        policy = self.p.policy
        k, m = classes.shape[0], pools.shape[0]
        if k == 0 or m == 0:
            return np.zeros((k, m))
        if policy in COST_POLICIES:
            tables = self._tables(pools)
            out = np.empty((k, m))
            step = max(1, _CHUNK_ENTRIES // m)
            for lo in range(0, k, step):
                rows = self._policy_rows(classes[lo : lo + step], pools, tables)
                out[lo : lo + step] = rows
                self.worst[classes[lo : lo + step]] = _worst(rows)
            return out
        share = np.broadcast_to(self.used_share[pools], (k, m))
        if policy == "least_loaded":
            return np.array(share, np.float64)
        if policy == "nearest":
            lat = np.zeros((k, m))
            loc = self.info.location[classes]
            known = loc >= 0
            if known.any() and self.arrays.demand_latency_ms.shape[0]:
                lat[known] = self.arrays.demand_latency_ms[
                    np.ix_(loc[known], self.pool_region[pools])
                ]
            near: FloatArray = lat + 1e-6 * share
            return near
        if policy == "random":
            drawn: FloatArray = self.rng.random((k, m))
            return drawn
        # round_robin: a pool's distance after the last pool chosen (none yet: from pool 0).
        dist = (pools / max(self.p.pool_units.shape[0], 1)).astype(np.float64)
        return np.broadcast_to(dist, (k, m)).copy()

    def _tables(self, pools: IntArray) -> dict[str, FloatArray]:
        """Per-block tables: speed factors, transfer from every region, rates per bucket."""
        a = self.arrays
        dst = self.pool_region[pools]
        same = np.arange(a.latency_ms.shape[0])[:, None] == dst[None, :]
        t = {
            "factors": self.p.speed.factors[:, pools],
            "lat_s": np.where(same, 0.0, a.latency_ms[:, dst] / 1000.0),
            "s_per_gb": np.where(same, 0.0, 8.0 / a.bandwidth_gbps[:, dst]),
            "egress": np.where(same, 0.0, a.egress_per_gb[:, dst].astype(np.float64)),
            "moves": (~same).astype(np.float64),
        }
        if self.step is not None and self.p.policy != "fastest":
            elec, carbon = self._curve_tables()
            sites = self.pool_site[pools]
            t["money_rate"] = self.compute_rate[pools] + self.kwh_rate[pools] * elec[:, sites]
            t["carbon_rate"] = self.kwh_rate[pools] * carbon[:, sites]
        return t

    def _policy_rows(
        self, classes: IntArray, pools: IntArray, t: dict[str, FloatArray]
    ) -> FloatArray:
        info = self.info
        policy = self.p.policy
        k, m = classes.shape[0], pools.shape[0]
        factors = t["factors"][info.speed_class[classes]]
        runnable = np.isfinite(factors)
        every = bool(runnable.all())
        if not every:
            factors = np.where(runnable, factors, 1.0)
        mean = info.mean_run[classes, None]
        run = mean * factors
        exact = self.step is None
        transfer = np.zeros((k, m))
        moved = np.zeros((k, m)) if exact else transfer
        egress = np.zeros((k, m))  # per GB where exact, else the money it costs
        data = bool(np.any(self.src[classes] >= 0)) or bool(
            self.holders and np.isin(classes, list(self.holders)).any()
        )
        if data:
            single = np.flatnonzero(self.src[classes] >= 0)
            src = self.src[classes[single]]
            gb = info.gb[classes[single], None]
            transfer[single] = t["lat_s"][src] + gb * t["s_per_gb"][src]
            if exact:
                moved[single] = gb * t["moves"][src]
                egress[single] = t["egress"][src]
            else:
                egress[single] = gb * t["egress"][src]
            for r in np.flatnonzero(np.isin(classes, list(self.holders))).tolist():
                c = int(classes[r])
                holders = self.holders[c]
                if holders is None:
                    continue  # unknown data: such a class has no candidate pool at all
                move = self.p.cost.transfer(holders, self.pool_region[pools], float(info.gb[c]))
                transfer[r] = move.seconds
                if exact:
                    moved[r], egress[r] = move.moved_gb, move.egress_per_gb
                else:
                    egress[r] = move.moved_gb * move.egress_per_gb
        finish = run + transfer if data else run
        if policy == "fastest":
            primary = finish
        else:
            d = info.demand[classes, None].astype(np.float64)
            if self.step is None:
                price = self.p.cost.price(
                    pools[None, :], d, run, self.now + transfer, moved, egress
                )
                money, carbon = price.money, price.carbon_kg
            else:
                work = (d * mean) * factors
                row = self.bucket_row[classes]
                money = work * t["money_rate"][row]
                if data:
                    money += egress
                carbon = work * t["carbon_rate"][row]
            if policy == "cheapest":
                primary = money + finish * 1e-9
            elif policy == "greenest":
                primary = carbon + finish * 1e-12
            else:
                w = BALANCED_WEIGHTS
                primary = (
                    finish * (w["finish"] / _row_min(finish, runnable, every))
                    + money * (w["money"] / _row_min(money, runnable, every))
                    + carbon * (w["carbon"] / _row_min(carbon, runnable, every))
                )
        out: FloatArray = primary
        if policy in DEADLINE_POLICIES:
            allowed = info.min_allowed[classes, None]
            if np.isfinite(allowed).any():
                late = factors + transfer / info.min_run[classes, None] > allowed
                if not every:
                    late |= ~runnable
                none_meets = np.all(late, axis=1)
                out = np.where(late, np.inf, primary)
                if none_meets.any():
                    scale = _row_min(primary, runnable, every) / _row_min(finish, runnable, every)
                    out[none_meets] = (finish * scale)[none_meets]
        if not every:
            # A pool measured unable to run the class is no candidate; nor is any, where none can.
            out = np.where(runnable, out, np.inf)
        return out

    def _bucket(self, run: FloatArray) -> IntArray:
        assert self.step is not None
        b: IntArray = np.rint(np.log(np.maximum(run, 1e-9)) / math.log(self.step)).astype(
            np.int64
        )
        return b

    def _curve_tables(self) -> tuple[FloatArray, FloatArray]:
        """Mean electricity price and carbon intensity per (run-length bucket, site) from now."""
        if self._curves is None:
            assert self.step is not None
            length = self.step ** self.buckets.astype(np.float64)
            sites = np.arange(self.arrays.site_pue.shape[0])[None, :]
            t0 = np.full((self.buckets.shape[0], 1), self.now)
            t1 = t0 + length[:, None]
            elec = self.p.cost.mean_over("price", sites, t0, t1)
            carbon = self.p.cost.mean_over("carbon", sites, t0, t1)
            self._curves = (elec, carbon)
        return self._curves


# ------------------------------------------------------------------------------- greedy fill


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


# ------------------------------------------------------------------------------ exact assign


def exact_assign(
    classes: TaskClasses, free_units: IntArray, solver: str = "auto"
) -> Assignment:
    """The least-cost assignment of the batch's classes to pools, with a lower bound.

    Flow is counted in *flow units*. Where every class that may use a pool needs the same units
    there, a flow unit is one task and the problem is a min-cost flow (classes -> pools -> sink,
    plus an "unplaced" arc per class) whose optimum is integral: the answer is optimal. Otherwise
    a flow unit is the greatest common divisor g of the demands that share pools (a core; a whole
    accelerator when every task takes whole ones), a task of class c is d_c / g units, and the
    same network is the LP relaxation (x_cp >= 0 tasks of class c on pool p; sum_p x_cp + u_c =
    n_c; sum_c d_c x_cp <= free_p, here floor(free_p / g) units, which no integral assignment
    exceeds either). Its optimum, integral in units but not in tasks, is rounded down, the
    dropped tasks placed cheapest-first into what capacity is left, and the result compared with
    the cheapest-first fill of the whole batch: the cheaper is kept (`Assignment.kept`).

    Solvers, over every feasible arc, so the bound holds for the unpruned problem:

    - ``ortools``: OR-Tools' `SimpleMinCostFlow` (the ``ortools`` extra), on integer costs
      scaled to 2^-(about 40) of the largest; the bound is its optimum less the most that
      rounding the costs can have taken off (half a scaled unit per flow unit).
    - ``highs``: scipy's HiGHS on the same LP by column generation: the cheapest arcs of each
      class and the arcs of the cheapest-first fill first, then, after each solve, the arcs of
      negative reduced cost under its duals, until there are none. The bound is the Lagrangian
      dual value at the final capacity prices, computed over every arc: below any assignment's
      objective whatever the solve did, and equal to the LP optimum when it converged.
    - ``auto``: ``ortools`` when installed, else ``highs``.

    Args:
        classes: the batch, from `classify` or `TaskClasses.from_matrix`.
        free_units: units free on every pool now; not modified.
        solver: ``auto``, ``ortools`` or ``highs``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver '{solver}' (choose from {', '.join(SOLVERS)})")
    t0 = time.perf_counter()
    free = np.asarray(free_units, np.int64)
    or_tools = _or_tools()
    if solver == "ortools" and or_tools is None:
        raise ValueError("OR-Tools is not installed (pip install 'computility[ortools]')")
    per_task, cap, integral = _flow_units(classes, free)
    if or_tools is not None and solver in ("auto", "ortools"):
        flow, lp_value, bound, rounds = _solve_or_tools(or_tools, classes, per_task, cap, free)
        name = "min-cost flow (OR-Tools)"
        if not integral:
            name = "LP relaxation as a min-cost flow (OR-Tools)"
    else:
        flow, lp_value, bound, rounds = _solve_highs(classes, per_task, cap, free)
        name = "min-cost flow as LP (HiGHS)" if integral else "LP relaxation (HiGHS)"
    cls, pool, units = flow
    tasks = units / per_task[cls]
    if integral and bool(np.all(np.abs(tasks - np.rint(tasks)) <= _UNIT_TOL)):
        whole = np.rint(tasks).astype(np.int64)
        hit = whole > 0
        return _assignment(
            classes, cls[hit], pool[hit], whole[hit], solver=name, t0=t0, bound=bound,
            kept="optimal", lp_value=lp_value, rounds=rounds,
            lp_unplaced=float(classes.count.sum() - whole.sum()),
        )
    return _rounded(classes, free, cls, pool, tasks, name, t0, bound, lp_value, rounds)


def _or_tools() -> Any:
    """OR-Tools' min-cost flow module, or None without the ``ortools`` extra."""
    try:
        return importlib.import_module("ortools.graph.python.min_cost_flow")
    except ImportError:
        return None


def _flow_units(classes: TaskClasses, free: IntArray) -> tuple[IntArray, IntArray, bool]:
    """Flow units per task of each class, pool capacities in flow units, and whether a flow
    unit is one task everywhere (so that a min-cost flow's integral optimum places whole tasks).
    """
    n_pools = classes.n_pools
    blocks = [b for b in classes.blocks if b.classes.shape[0] and b.pools.shape[0]]
    lo = np.full(n_pools, np.iinfo(np.int64).max, np.int64)
    hi = np.zeros(n_pools, np.int64)
    for block in blocks:
        d = classes.demand[block.classes]
        lo[block.pools] = np.minimum(lo[block.pools], int(d.min()))
        hi[block.pools] = np.maximum(hi[block.pools], int(d.max()))
    used = hi > 0
    if not np.any(lo[used] != hi[used]):
        return np.ones(classes.n_classes, np.int64), free // np.where(used, hi, 1), True
    # Blocks that share a pool must count in one unit: join them (union-find over blocks).
    parent = list(range(len(blocks)))

    def root(b: int) -> int:
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        return b

    owner = np.full(n_pools, -1, np.int64)
    for b, block in enumerate(blocks):
        for other in np.unique(owner[block.pools]).tolist():
            if other >= 0:
                parent[root(other)] = root(b)
        owner[block.pools] = b
    step: dict[int, int] = {}
    for b, block in enumerate(blocks):
        r = root(b)
        step[r] = int(np.gcd.reduce(classes.demand[block.classes], initial=step.get(r, 0)))
    unit = np.ones(n_pools, np.int64)
    per_task = np.ones(classes.n_classes, np.int64)
    for b, block in enumerate(blocks):
        g = step[root(b)]
        per_task[block.classes] = classes.demand[block.classes] // g
        unit[block.pools] = g
    return per_task, free // unit, False


def _solve_or_tools(
    mod: Any, classes: TaskClasses, per_task: IntArray, cap: IntArray, free: IntArray
) -> tuple[tuple[IntArray, IntArray, FloatArray], float, float, int]:
    """Column generation with OR-Tools: flow (class, pool, units), value, bound, solves.

    Each solve is over a restricted set of arcs (each class's cheapest, the cheapest-first
    fill's, and those priced in since). `SimpleMinCostFlow` reports no duals, so the capacity
    prices are recovered from its optimal flow: a pool's price is its shortest distance to the
    sink in the residual network (Bellman-Ford; an optimal flow leaves no negative cycle).
    Arcs of negative reduced cost under them are added until none is left.
    """
    n_cls, n_pools = classes.n_classes, classes.n_pools
    q = per_task.astype(np.float64)
    supply = classes.count * per_task
    total = int(supply.sum())
    pen_unit = classes.penalty / np.maximum(q, 1.0)
    top = max(float(pen_unit.max()) if n_cls else 1.0, 1e-300)
    # Costs become integers at a scale where rounding them can move the optimum by at most
    # _OR_TOOLS_SLACK of a lower bound (the class-by-class best, ignoring capacity): finer would
    # only add phases to OR-Tools' cost scaling. The largest cost stays far from int64 overflow.
    floor = _dual_bound(classes, np.zeros(n_pools), q, cap)
    scale = 0.5 * max(total, 1) / max(_OR_TOOLS_SLACK * floor, 1e-300)
    scale = min(scale, 2.0**_OR_TOOLS_COST_BITS / top)
    pen_int = np.rint(pen_unit * scale)
    inset = _seed_arcs(classes, free, _FLOW_SEED_ARCS)
    sink = n_cls + n_pools
    supplies = np.concatenate((supply, np.zeros(n_pools, np.int64), [-total])).astype(np.int64)
    lam = np.zeros(n_pools)
    rounds = 0
    cls = pool = np.zeros(0, np.int64)
    flows = np.zeros(0)
    for rounds in range(1, _LP_MAX_ROUNDS + 1):  # noqa: B007
        cls, pool, cost = _arcs_in(classes, inset)
        unit = np.rint(cost / q[cls] * scale)
        smcf = mod.SimpleMinCostFlow()
        smcf.add_arcs_with_capacity_and_unit_cost(
            np.concatenate((cls, np.arange(n_cls), n_cls + np.arange(n_pools))).astype(np.int32),
            np.concatenate((n_cls + pool, np.full(n_cls, sink), np.full(n_pools, sink))).astype(
                np.int32
            ),
            np.concatenate((supply[cls], supply, cap)).astype(np.int64),
            np.concatenate((unit, pen_int, np.zeros(n_pools))).astype(np.int64),
        )
        smcf.set_nodes_supplies(np.arange(sink + 1, dtype=np.int32), supplies)
        status = smcf.solve()
        if status != smcf.OPTIMAL:
            raise RuntimeError(f"OR-Tools min-cost flow ended with status {status}")
        flows = np.asarray(smcf.flows(np.arange(cls.shape[0], dtype=np.int32)), np.float64)
        d_cls, d_pool = _distances_to_sink(
            cls, pool, unit, flows, supply, pen_int, cap, n_cls, n_pools
        )
        lam = np.maximum(d_pool, 0.0) / scale
        pi = q * d_cls / scale
        if not _add_priced(classes, inset, pi, lam, q, classes.penalty):
            break
    bound = _dual_bound(classes, lam, q, cap)
    placed = flows > 0
    value = float(np.dot(flows, classes.arc_cost(cls, pool) / q[cls])) + float(
        np.dot(supply - np.bincount(cls, weights=flows, minlength=n_cls), pen_unit)
    )
    return (cls[placed], pool[placed], flows[placed]), value, bound, rounds


def _distances_to_sink(
    cls: IntArray,
    pool: IntArray,
    cost: FloatArray,
    flow: FloatArray,
    supply: IntArray,
    pen: FloatArray,
    cap: IntArray,
    n_cls: int,
    n_pools: int,
) -> tuple[FloatArray, FloatArray]:
    """Shortest distance from each class and pool node to the sink in the residual network.

    Residual arcs: class -> pool while the arc has room (cost), pool -> class while it carries
    flow (minus the cost), class -> sink while some of the class is placed (penalty), pool ->
    sink while the pool has room (0). Relaxed all at once until nothing changes (Bellman-Ford).
    """
    carried = np.bincount(cls, weights=flow, minlength=n_cls)
    into = np.bincount(pool, weights=flow, minlength=n_pools)
    d_cls = np.where(carried > 0, pen, np.inf)
    d_pool = np.where(into < cap, 0.0, np.inf)
    fwd = flow < supply[cls]
    bwd = flow > 0
    f_cls, f_pool, f_cost = cls[fwd], pool[fwd], cost[fwd]
    b_cls, b_pool, b_cost = cls[bwd], pool[bwd], -cost[bwd]
    for _ in range(n_cls + n_pools + 1):
        via = np.full(n_cls, np.inf)
        np.minimum.at(via, f_cls, f_cost + d_pool[f_pool])
        new_cls = np.minimum(d_cls, via)
        back = np.full(n_pools, np.inf)
        np.minimum.at(back, b_pool, b_cost + new_cls[b_cls])
        new_pool = np.minimum(d_pool, back)
        if np.array_equal(new_cls, d_cls) and np.array_equal(new_pool, d_pool):
            break
        d_cls, d_pool = new_cls, new_pool
    d_pool = np.where(np.isfinite(d_pool), d_pool, 0.0)
    return d_cls, d_pool


def _seed_arcs(classes: TaskClasses, free: IntArray, k: int) -> list[BoolArray]:
    """The first restricted arc set: each class's `k` cheapest arcs and the cheapest-first
    fill's (a feasible assignment, so the first optimum is already close)."""
    inset = [np.zeros(b.cost.shape, np.bool_) for b in classes.blocks]
    for b, block in enumerate(classes.blocks):
        if block.cost.size:
            kk = min(k, block.cost.shape[1])
            seed = np.argpartition(block.cost, kk - 1, axis=1)[:, :kk]
            rows = np.arange(block.cost.shape[0])[:, None]
            inset[b][rows, seed] = np.isfinite(block.cost[rows, seed])
    g_cls, g_pool, _ = _fill(classes, classes.count, free.copy(), "cheapest", _rng())
    for c, p in zip(g_cls.tolist(), g_pool.tolist(), strict=True):
        b = int(classes.block_of[c])
        col = int(np.searchsorted(classes.blocks[b].pools, p))
        inset[b][int(classes.row_of[c]), col] = True
    return inset


def _solve_highs(
    classes: TaskClasses, per_task: IntArray, cap: IntArray, free: IntArray
) -> tuple[tuple[IntArray, IntArray, FloatArray], float, float, int]:
    """Column generation on the LP: flow (class, pool, units), LP value, bound, solves."""
    n_cls = classes.n_classes
    coef = per_task.astype(np.float64)
    count = classes.count.astype(np.float64)
    pen = classes.penalty
    inset = _seed_arcs(classes, free, _LP_SEED_ARCS)
    lam = np.zeros(classes.n_pools)
    rounds = 0
    x = np.zeros(0)
    arc_cls = arc_pool = np.zeros(0, np.int64)
    lp_value = math.nan
    for rounds in range(1, _LP_MAX_ROUNDS + 1):  # noqa: B007
        arc_cls, arc_pool, arc_cost = _arcs_in(classes, inset)
        res, lam, pi = _lp(arc_cls, arc_pool, arc_cost, coef, count, pen, cap, n_cls)
        x = res.x[: arc_cls.shape[0]]
        lp_value = float(res.fun)
        if not _add_priced(classes, inset, pi, lam, coef, pen):
            break
    bound = _dual_bound(classes, lam, coef, cap)
    hit = x > _LP_TOL
    return (arc_cls[hit], arc_pool[hit], x[hit] * coef[arc_cls[hit]]), lp_value, bound, rounds


def _rounded(
    classes: TaskClasses,
    free: IntArray,
    arc_cls: IntArray,
    arc_pool: IntArray,
    x: FloatArray,
    name: str,
    t0: float,
    bound: float,
    lp_value: float,
    rounds: int,
) -> Assignment:
    """Round an LP solution down, place what it dropped, keep the better of it and greedy."""
    arc_cost = classes.arc_cost(arc_cls, arc_pool)
    whole = _repair(classes, arc_cls, arc_pool, arc_cost, np.floor(x + _UNIT_TOL), free)
    placed = np.bincount(arc_cls, weights=whole, minlength=classes.n_classes).astype(np.int64)
    rounded_out = max(int(np.rint(x.sum())) - int(placed.sum()), 0)
    used = np.bincount(arc_pool, weights=whole * classes.demand[arc_cls],
                       minlength=classes.n_pools).astype(np.int64)
    # Dropped tasks go back dearest-to-leave-out first (penalty per unit), as the LP ranks them.
    dearest = np.argsort(-classes.penalty / classes.demand, kind="stable")
    extra = _fill(classes, classes.count - placed, free - used, "cheapest", _rng(), dearest)
    hit = whole > 0
    cls, pool, num = _merge(
        np.concatenate((arc_cls[hit], extra[0])),
        np.concatenate((arc_pool[hit], extra[1])),
        np.concatenate((whole[hit], extra[2])),
        classes.n_pools,
    )
    kept = "rounded"
    greedy = _fill(classes, classes.count, free.copy(), "cheapest", _rng())
    if _objective(classes, *greedy) < _objective(classes, cls, pool, num):
        cls, pool, num = greedy
        kept = "greedy"
    # The LP leaves out a fraction of tasks itself; what rounding adds on top of that is its own.
    lp_unplaced = float(classes.count.sum()) - float(x.sum())
    unplaced = int(classes.count.sum()) - int(num.sum())
    return _assignment(
        classes, cls, pool, num, solver=f"{name}, rounded", t0=t0, bound=bound, kept=kept,
        rounded_out=rounded_out,
        left_by_rounding=max(unplaced - math.ceil(lp_unplaced - _UNIT_TOL), 0),
        lp_value=lp_value, rounds=rounds, lp_unplaced=lp_unplaced,
    )


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _arcs_in(
    classes: TaskClasses, inset: list[BoolArray]
) -> tuple[IntArray, IntArray, FloatArray]:
    cls_l, pool_l, cost_l = [], [], []
    for block, sel in zip(classes.blocks, inset, strict=True):
        r, col = np.nonzero(sel)
        cls_l.append(block.classes[r])
        pool_l.append(block.pools[col])
        cost_l.append(block.cost[r, col])
    if not cls_l:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(cls_l), np.concatenate(pool_l), np.concatenate(cost_l)


def _lp(
    arc_cls: IntArray,
    arc_pool: IntArray,
    arc_cost: FloatArray,
    coef: FloatArray,
    count: FloatArray,
    pen: FloatArray,
    cap: IntArray,
    n_cls: int,
) -> tuple[Any, FloatArray, FloatArray]:
    """One HiGHS solve of the restricted LP: the result, capacity prices, class prices."""
    n_arcs = arc_cls.shape[0]
    n_var = n_arcs + n_cls
    used, pool_row = np.unique(arc_pool, return_inverse=True)
    a_eq = sparse.csr_array(
        (
            np.ones(n_var),
            (np.concatenate((arc_cls, np.arange(n_cls))), np.arange(n_var)),
        ),
        shape=(n_cls, n_var),
    )
    a_ub = sparse.csr_array(
        (coef[arc_cls], (pool_row.reshape(-1), np.arange(n_arcs))),
        shape=(used.shape[0], n_var),
    )
    res = linprog(
        np.concatenate((arc_cost, pen)),
        A_ub=a_ub if used.shape[0] else None,
        b_ub=cap[used].astype(np.float64) if used.shape[0] else None,
        A_eq=a_eq,
        b_eq=count,
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"HiGHS could not solve the assignment LP: {res.message}")
    lam = np.zeros(cap.shape[0])
    if used.shape[0]:
        lam[used] = np.maximum(-np.asarray(res.ineqlin.marginals, np.float64), 0.0)
    pi = np.asarray(res.eqlin.marginals, np.float64)
    return res, lam, pi


def _add_priced(
    classes: TaskClasses,
    inset: list[BoolArray],
    pi: FloatArray,
    lam: FloatArray,
    coef: FloatArray,
    pen: FloatArray,
) -> bool:
    """Add, per class, the arcs of most negative reduced cost; False when there is none."""
    added = False
    for block, sel in zip(classes.blocks, inset, strict=True):
        if not block.cost.size:
            continue
        c = block.classes
        rc = block.cost - pi[c, None] + coef[c, None] * lam[None, block.pools]
        tol = _LP_TOL * np.maximum(pen[c], 1.0)
        bad = (rc < -tol[:, None]) & ~sel
        rows = np.flatnonzero(bad.any(axis=1))
        if not rows.shape[0]:
            continue
        added = True
        sub = np.where(bad[rows], rc[rows], np.inf)
        k = min(_LP_ADD_ARCS, sub.shape[1])
        pick = np.argpartition(sub, k - 1, axis=1)[:, :k]
        ok = np.isfinite(np.take_along_axis(sub, pick, axis=1))
        sel[rows[:, None], pick] |= ok
    return added


def _dual_bound(
    classes: TaskClasses, lam: FloatArray, coef: FloatArray, cap: IntArray
) -> float:
    """Lagrangian bound: sum_c n_c min(pen_c, min_p cost_cp + a_c lam_p) - sum_p cap_p lam_p.

    For any capacity prices lam >= 0 this is below the objective of every assignment (relax the
    capacity rows with those prices and minimise class by class over all of its arcs).
    """
    best = classes.penalty.copy()
    for block in classes.blocks:
        if not block.cost.size:
            continue
        c = block.classes
        priced = block.cost + coef[c, None] * lam[None, block.pools]
        best[c] = np.minimum(best[c], priced.min(axis=1))
    return float(np.dot(classes.count, best) - np.dot(cap.astype(np.float64), lam))


def _repair(
    classes: TaskClasses,
    arc_cls: IntArray,
    arc_pool: IntArray,
    arc_cost: FloatArray,
    take: IntArray,
    free: IntArray,
) -> IntArray:
    """Drop tasks, costliest arcs first, from any pool the rounded solution over-commits."""
    take = np.asarray(take, np.int64).copy()
    need = take * classes.demand[arc_cls]
    used = np.bincount(arc_pool, weights=need, minlength=classes.n_pools)
    for p in np.flatnonzero(used > free + 0.5):
        arcs = np.flatnonzero((arc_pool == p) & (take > 0))
        for a in arcs[np.argsort(-arc_cost[arcs])]:
            d = int(classes.demand[arc_cls[a]])
            over = int(used[p]) - int(free[p])
            if over <= 0:
                break
            drop = min(int(take[a]), -(-over // d))
            take[a] -= drop
            used[p] -= drop * d
    return take


def _merge(
    cls: IntArray, pool: IntArray, num: IntArray, n_pools: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Sum the counts of repeated (class, pool) arcs."""
    if not cls.shape[0]:
        return cls, pool, num
    key = cls * n_pools + pool
    uniq, inv = np.unique(key, return_inverse=True)
    total = np.bincount(inv.reshape(-1), weights=num).astype(np.int64)
    return uniq // n_pools, uniq % n_pools, total


def _objective(
    classes: TaskClasses, cls: IntArray, pool: IntArray, num: IntArray
) -> float:
    placed = np.bincount(cls, weights=num, minlength=classes.n_classes)
    cost = classes.arc_cost(cls, pool)
    return float(np.dot(num, cost) + np.dot(classes.count - placed, classes.penalty))


def _assignment(
    classes: TaskClasses,
    cls: IntArray,
    pool: IntArray,
    num: IntArray,
    *,
    solver: str,
    t0: float,
    bound: float = math.nan,
    kept: str = "",
    rounded_out: int = 0,
    left_by_rounding: int = 0,
    lp_value: float = math.nan,
    rounds: int = 0,
    lp_unplaced: float = math.nan,
) -> Assignment:
    placed_n = int(num.sum())
    placed_cost = float(np.dot(num, classes.arc_cost(cls, pool))) if placed_n else 0.0
    return Assignment(
        classes=classes,
        arc_class=cls.astype(np.int64),
        arc_pool=pool.astype(np.int64),
        arc_count=num.astype(np.int64),
        cost=_objective(classes, cls, pool, num),
        placed_cost=placed_cost,
        placed=placed_n,
        unplaced=int(classes.count.sum()) - placed_n,
        bound=bound,
        solver=solver,
        wall_s=time.perf_counter() - t0,
        rounded_out=rounded_out,
        left_by_rounding=left_by_rounding,
        lp_value=lp_value,
        rounds=rounds,
        kept=kept,
        lp_unplaced=lp_unplaced,
    )


# ----------------------------------------------------------------------------------- helpers


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


def _row_min(values: FloatArray, ok: BoolArray, every: bool) -> FloatArray:
    """Per row, the least value where `ok` (`every`: all are), as a column, at least 1e-9."""
    least = values if every else np.where(ok, values, np.inf)
    out: FloatArray = np.maximum(least.min(axis=1, keepdims=True), 1e-9)
    return out


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


def _dataset_holders(placement: Placement) -> list[IntArray | None]:
    """Per workload dataset, the regions holding a copy (None: the network does not know it)."""
    net = placement.network
    known = {d.id for d in net.datasets}
    out: list[IntArray | None] = []
    for name in placement.tasks.datasets:
        if name not in known:
            out.append(None)
            continue
        regions = {net.region_index(net.site(s).region) for s in net.dataset(name).sites}
        out.append(np.array(sorted(regions), np.int64))
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
