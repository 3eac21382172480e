"""Placement: which site and pool a task runs on, and from when, weighing everything that matters.

Two steps, both pure functions of the task and the state at decision time:

1. **Feasibility.** A pool is a candidate when the task fits one of its nodes (cores or devices),
   the device is one the task accepts, the task's data may be read there (``residency: local``
   data runs only where a copy is), and the site is allowed (regions, sites, owners, latency bound
   to the user; constraints a task spec may carry). Feasibility does not change with load, so it
   is computed once per distinct kind of task, not per task.
2. **Score.** Each candidate is priced by the one cost model (`computility.domain.cost`):
   estimated finish = transfer + queue wait + run time on that device; money = compute + energy +
   egress; carbon over the run's hours; latency to the user. The policy picks the best.

Policies (`POLICIES`):

- ``fastest``: earliest estimated finish.
- ``cheapest`` / ``greenest``: least money / carbon; ties by finish.
- ``balanced``: least weighted sum of finish time, money and carbon, each divided by the best
  candidate's figure (so the weights compare like with like). Weights `BALANCED_WEIGHTS` are
  fixed here, none above 0.6.
- baselines: ``random`` (uniform over candidates, seeded), ``round_robin`` (the next candidate
  pool after the last one chosen), ``least_loaded`` (largest share of units not spoken for, blind
  to speed and price), ``nearest`` (least latency to the user; ties least loaded).

The three that value money or carbon honour deadlines: a task with a deadline goes only to a
candidate whose estimated finish meets it (if one does; else the fastest). Under ``cheapest`` and
``greenest`` it may also be **held** for cheaper or greener hours when the estimate leaves room
(`HOLD_MARGIN_*`); it is held at most once, at its first placement, so a task whose estimate
proves wrong is not held again.

Queue wait is estimated from each pool's backlog: zero if the units are free and nobody waits for
them, else (work queued + work left on running tasks) / capacity, the fluid approximation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from computility.domain.cost import SECONDS_PER_HOUR, CostModel, Price
from computility.domain.network import Network
from computility.domain.site import MILLI
from computility.domain.speed import SpeedModel
from computility.domain.workload import ANY_GPU, NO_INDEX, Workload

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

POLICIES: Final = (
    "cheapest",
    "fastest",
    "greenest",
    "balanced",
    "random",
    "round_robin",
    "least_loaded",
    "nearest",
)
DEADLINE_POLICIES: Final = frozenset({"cheapest", "greenest", "balanced"})
"""Policies that value money or carbon, and so rule out a candidate that would miss a deadline
while another meets it (the others ignore deadlines, or, for ``fastest``, already finish first)."""

SHIFTING_POLICIES: Final = frozenset({"cheapest", "greenest"})
"""Policies that may hold a task with a deadline for cheaper or greener hours. ``balanced`` does
not: it weighs finish time at 0.4, so a hold must save more than 0.4 x the delay's share of the
run in money and carbon together, which the hourly curves' swings seldom give; measured while it
could (docs/placement.md), it held no task of the policy table's 1,500 deadline tasks."""

BALANCED_WEIGHTS: Final = {"finish": 0.4, "money": 0.3, "carbon": 0.3}
"""Weights of `balanced`, fixed before any policy was measured: time first, money and carbon
equal. Each term is a candidate's figure over the best candidate's, so 1.0 is best."""

HOLD_MARGIN_S: Final = 900.0
HOLD_MARGIN_RUN_SHARE: Final = 0.5
"""A task is held only while its estimated finish stays this far before its deadline: the larger
of 15 minutes and half its run time, room for a queue that has grown in the meantime."""

MAX_HOLD_HOURS: Final = 24

FAST_PATH_MIN_POOLS: Final = 64
"""From this many pools on, placement walks a cached best-first ranking (see
`Placement.static_order`) instead of scoring every candidate: on 1,000 sites scoring all of them
for every task would cost a millisecond each. Smaller networks are always scored in full."""

PRUNED_CANDIDATES: Final = 16
"""On a large network, a task scored in full (deadline under a shifting policy, data to move, no
room anywhere) is scored among the first this many pools of its ranking plus the first this many
with room now."""


REFERENCE_RUN_S: Final = 3600.0
WEIGH_BUSY: Final = 1
"""How many better-ranked busy pools the large-network path weighs, with their waits, against the
first pool with room."""
PLACEMENT_MODES: Final = ("auto", "full")
"""How placement decides: ``auto`` takes the large-network path from `FAST_PATH_MIN_POOLS` pools
on; ``full`` scores every candidate of every task whatever the network's size (slower on a large
network; what the large-network path is validated against)."""

STATIC_POLICIES: Final = frozenset({"cheapest", "fastest", "greenest", "balanced", "nearest"})
"""Policies whose ranking of idle candidates does not depend on load or on earlier choices."""
"""Temporal shifting looks at most a day ahead: curves repeat daily in shape."""


@dataclass(frozen=True, slots=True)
class Candidates:
    """Every candidate pool of one task with its estimates, in pool order.

    Attributes:
        pools: pool rows of the network.
        wait_s: estimated queue wait once the task is ready.
        transfer_s: time to bring its input data there.
        run_s: run time on that pool's device.
        hold_s: how long the task would be held for better hours (0: not held).
        finish_s: estimated finish, seconds after now: max(hold, transfer) + wait + run.
        price: money, energy and carbon of the run starting at the estimated start.
        moved_gb: data moved to run there.
        src_region: region the data comes from (`NO_INDEX` when nothing moves).
        latency_ms: one-way latency from the task's user.
        score: the policy's figure (lower is better); the chosen candidate has the least.
    """

    pools: IntArray
    wait_s: FloatArray
    transfer_s: FloatArray
    run_s: FloatArray
    hold_s: FloatArray
    finish_s: FloatArray
    price: Price
    moved_gb: FloatArray
    src_region: IntArray
    latency_ms: FloatArray
    score: FloatArray


@dataclass(frozen=True, slots=True)
class _Ranking:
    """A cached best-first ranking and, per candidate pool, its figures for the reference run:
    (run s, money, carbon kg, latency ms)."""

    order: IntArray
    parts: dict[int, tuple[float, float, float, float]]


@dataclass(frozen=True, slots=True)
class Choice:
    """Where a task goes: its pool, when it may join the pool's queue, and what that took."""

    pool: int
    ready_s: float
    run_s: float
    moved_gb: float
    src_region: int
    held_s: float


@dataclass(frozen=True, slots=True)
class LoadView:
    """Per-pool load that waits are estimated from (arrays over every pool of the network)."""

    capacity: IntArray
    free: IntArray
    queued: IntArray
    backlog: FloatArray

    def wait_s(self, pools: IntArray, demand: IntArray) -> FloatArray:
        """Estimated wait of a newcomer needing `demand` units of each of `pools`."""
        room = self.free[pools] - self.queued[pools] >= demand
        fluid = self.backlog[pools] / self.capacity[pools]
        wait: FloatArray = np.where(room, 0.0, fluid)
        return wait

    def spare_share(self, pools: IntArray) -> FloatArray:
        share: FloatArray = (self.free[pools] - self.queued[pools]) / self.capacity[pools]
        return share


@dataclass(frozen=True, slots=True)
class SiteRules:
    """Constraints a task spec may put on where it runs (all optional)."""

    regions: frozenset[str] | None = None
    sites: frozenset[str] | None = None
    owners: frozenset[str] | None = None
    exclude_sites: frozenset[str] = frozenset()
    max_latency_ms: float | None = None


class Placement:
    """Feasibility and scoring for one workload on one network under one policy."""

    def __init__(
        self,
        network: Network,
        workload: Workload,
        policy: str,
        cost: CostModel,
        speed: SpeedModel,
        seed: int = 0,
        rules: dict[int, SiteRules] | None = None,
        mode: str = "auto",
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown placement policy '{policy}'")
        self.network = network
        self.tasks = workload
        self.policy = policy
        self.cost = cost
        self.speed = speed
        self.rules = rules or {}
        if mode not in PLACEMENT_MODES:
            raise ValueError(f"unknown placement mode '{mode}'")
        self.mode = mode
        self._rng = np.random.default_rng(seed)
        self._last_rr = -1
        self._orders: dict[tuple[int, int, int, int], _Ranking] = {}
        self._holder_sites: dict[int, list[int]] = {}
        self._site_pools: list[list[int]] = [[] for _ in network.sites]
        for row, site_row in enumerate(network.arrays.pool_site.tolist()):
            self._site_pools[site_row].append(row)
        self._lat: list[list[float]] = network.arrays.latency_ms.tolist()
        self._bw: list[list[float]] = network.arrays.bandwidth_gbps.tolist()
        self._eg: list[list[float]] = network.arrays.egress_per_gb.astype(np.float64).tolist()
        a = network.arrays
        self.pool_is_cpu: BoolArray = a.pool_is_cpu
        self.pool_site = a.pool_site
        self.pool_region = cost.pool_region
        self.pool_units = np.array([p.units for _, p in network.pools], np.int64)
        self.node_units = np.array(
            [
                (p.count if p.devices_per_node == 1 else p.devices_per_node)
                * (1 if p.is_cpu else int(MILLI))
                for _, p in network.pools
            ],
            np.int64,
        )
        self._device_ids = [p.device.id for _, p in network.pools]
        self._dataset_regions = self._dataset_holders()
        # Workload location index -> the network's demand row, matched by id (not position).
        demand_ids = {d.id: row for row, d in enumerate(network.demand)}
        self._location_row = [demand_ids.get(name, NO_INDEX) for name in workload.locations]
        self._class_of, self._class_mask = self._feasibility_classes()
        self.feasible_count: IntArray = self._class_mask.sum(axis=1)[self._class_of]
        self._class_l: list[int] = self._class_of.tolist()
        self._speed_l: list[int] = speed.task_class.tolist()

    # ------------------------------------------------------------------ feasibility

    def user_location(self, task: int) -> int:
        """The network's demand row for the task's user (`NO_INDEX` when unknown or none)."""
        t = self.tasks
        if not t.location.shape[0]:
            return NO_INDEX
        k = int(t.location[task])
        return self._location_row[k] if 0 <= k < len(self._location_row) else NO_INDEX

    def _dataset_holders(self) -> list[IntArray | None]:
        """Per workload dataset: regions holding a copy; None if the network has no such data."""
        out: list[IntArray | None] = []
        known = {d.id for d in self.network.datasets}
        for name in self.tasks.datasets:
            if name not in known:
                out.append(None)
                continue
            sites = self.network.dataset(name).sites
            out.append(
                np.array(
                    sorted({self.network.region_index(self.network.site(s).region) for s in sites}),
                    np.int64,
                )
            )
        return out

    def _feasibility_classes(self) -> tuple[IntArray, BoolArray]:
        t = self.tasks
        n = len(t)
        any_ds = _index_col(t.dataset, n)
        local_ds = np.where(_flag_col(t.data_local, n), any_ds, NO_INDEX)
        keys = np.stack(
            (
                t.cpus,
                t.gpu_milli,
                t.gpu_types.astype(np.int64),
                local_ds.astype(np.int64),
                # Data that may move only matters to feasibility when the network lacks it.
                np.isin(any_ds, self._unknown_datasets()).astype(np.int64),
                np.isin(np.arange(n), list(self.rules)).astype(np.int64) * (np.arange(n) + 1),
            ),
            axis=1,
        )
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, len(self._device_ids)), np.bool_)
        uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        masks = np.stack([self.mask_of(int(first[k])) for k in range(uniq.shape[0])])
        return inverse.reshape(-1).astype(np.int64), masks

    def _unknown_datasets(self) -> IntArray:
        """Workload dataset indices the network holds no copy of."""
        return np.array(
            [k for k, holders in enumerate(self._dataset_regions) if holders is None], np.int64
        )

    def mask_of(self, task: int) -> BoolArray:
        """Candidate pools of `task` (every rule of the module's step 1)."""
        return self._reasons(task, explain=False)[0]

    def rejections(self, task: int) -> dict[str, str]:
        """For each site with no candidate pool for `task`, the reason in a user's words."""
        return self._reasons(task, explain=True)[1]

    def _reasons(self, task: int, explain: bool) -> tuple[BoolArray, dict[str, str]]:
        t = self.tasks
        gpu = int(t.gpu_milli[task])
        cpus = int(t.cpus[task])
        if gpu == 0:
            kind_ok = self.pool_is_cpu.copy()
            fits = kind_ok & (self.node_units >= cpus)
        else:
            kind_ok = ~self.pool_is_cpu
            types = int(t.gpu_types[task])
            if types != ANY_GPU:
                allowed = set(t.gpu_type_sets[types])
                kind_ok = kind_ok & np.array([d in allowed for d in self._device_ids], np.bool_)
            fits = kind_ok & (self.node_units >= gpu)
        ok = fits.copy()
        data_ok = np.ones_like(ok)
        ds = int(t.dataset[task]) if t.dataset.shape[0] else NO_INDEX
        if ds != NO_INDEX:
            holders = self._dataset_regions[ds]
            if holders is None:
                data_ok[:] = False
            elif t.data_local.shape[0] and bool(t.data_local[task]):
                sites = {
                    self.network.site_index(s)
                    for s in self.network.dataset(t.datasets[ds]).sites
                }
                data_ok = np.isin(self.pool_site, list(sites))
        ok &= data_ok
        rules = self.rules.get(task)
        rule_ok = np.ones_like(ok)
        rule_why: dict[int, str] = {}
        if rules is not None:
            rule_ok, rule_why = self._apply_rules(task, rules)
        ok &= rule_ok
        if not explain:
            return ok, {}
        why: dict[str, str] = {}
        for s, site in enumerate(self.network.sites):
            rows = np.flatnonzero(self.pool_site == s)
            if ok[rows].any():
                continue
            if s in rule_why:
                why[site.id] = rule_why[s]
            elif not kind_ok[rows].any():
                why[site.id] = (
                    "has no CPU pool"
                    if gpu == 0
                    else f"has no accelerator of the allowed types ({self._allowed(task)})"
                )
            elif not fits[rows].any():
                largest = int(self.node_units[rows][kind_ok[rows]].max())
                if gpu == 0:
                    why[site.id] = f"largest node holds {largest} cores; the task needs {cpus}"
                else:
                    why[site.id] = (
                        f"largest node holds {largest / MILLI:g} of the allowed accelerators; "
                        f"the task needs {gpu / MILLI:g}"
                    )
            else:
                name = t.datasets[ds]
                why[site.id] = (
                    f"dataset '{name}' is not known to the network"
                    if self._dataset_regions[ds] is None
                    else f"does not hold dataset '{name}' (residency: local)"
                )
        return ok, why

    def _allowed(self, task: int) -> str:
        types = int(self.tasks.gpu_types[task])
        return "any accelerator" if types == ANY_GPU else "|".join(self.tasks.gpu_type_sets[types])

    def _apply_rules(self, task: int, rules: SiteRules) -> tuple[BoolArray, dict[int, str]]:
        ok = np.ones(len(self._device_ids), np.bool_)
        why: dict[int, str] = {}
        for s, site in enumerate(self.network.sites):
            reason = None
            if rules.regions is not None and site.region not in rules.regions:
                reason = f"region {site.region} is not among the allowed regions"
            elif rules.sites is not None and site.id not in rules.sites:
                reason = "not among the allowed sites"
            elif site.id in rules.exclude_sites:
                reason = "excluded by the task"
            elif rules.owners is not None and site.owner not in rules.owners:
                reason = f"owner {site.owner} is not among the allowed owners"
            elif rules.max_latency_ms is not None:
                loc = self.user_location(task)
                if loc != NO_INDEX:
                    lat = float(self.network.arrays.demand_latency_ms[loc, self.pool_region[
                        int(np.flatnonzero(self.pool_site == s)[0])]])
                    if lat > rules.max_latency_ms:
                        reason = (
                            f"latency {lat:.1f} ms from the user exceeds max_latency_ms "
                            f"{rules.max_latency_ms:g}"
                        )
            if reason is not None:
                why[s] = reason
                ok[self.pool_site == s] = False
        return ok, why

    def candidates_mask(self, task: int) -> BoolArray:
        """Candidate pools of `task`, from the per-kind table."""
        mask: BoolArray = self._class_mask[self._class_of[task]]
        return mask

    # ------------------------------------------------------------------ large networks

    def static_order(self, task: int, now: float) -> NDArray[np.int64]:
        """Candidate pools of `task` best first, as the policy ranks them with no queue wait.

        The ranking depends only on the kind of task (feasibility and speed class, and the
        user's location for ``nearest``) and the hour of the curves a run starting now reads,
        so it is computed once per such key and reused: the large-network path of
        `Scheduler` walks it and takes the first pool with room. It is scored for a reference
        run of `REFERENCE_RUN_S` starting now, the hour that key stands for.
        """
        return self._ranking(task, now).order

    def ranking(self, task: int, now: float) -> _Ranking:
        """The cached ranking of `task`'s kind at this hour (see `static_order`)."""
        return self._ranking(task, now)

    def best_row(self, rows: list[tuple[int, float, float, float, float]]) -> int:
        """The pool of the best (pool, finish, money, carbon, latency) row under the policy, as
        `score` ranks candidates (the first row's pool when the list has one)."""
        if len(rows) == 1:
            return rows[0][0]
        full = [(p, f, m, c, lat, 0.0, 0.0, NO_INDEX) for p, f, m, c, lat in rows]
        return min(full, key=self._row_key(full))[0]

    def _ranking(self, task: int, now: float) -> _Ranking:
        hour = math.floor(self.cost.base_hours + now / SECONDS_PER_HOUR) % self.cost.hours
        loc = self.user_location(task) if self.policy == "nearest" else NO_INDEX
        key = (self._class_l[task], self._speed_l[task], hour, loc)
        ranking = self._orders.get(key)
        if ranking is None:
            ranking = self._rank_statically(task, now)
            self._orders[key] = ranking
        return ranking

    def _rank_statically(self, task: int, now: float) -> _Ranking:
        t = self.tasks
        pools = np.flatnonzero(self.candidates_mask(task)).astype(np.int64)
        factor = self.speed.of(task)[pools]
        pools, factor = pools[np.isfinite(factor)], factor[np.isfinite(factor)]
        if pools.shape[0] == 0:
            return _Ranking(np.zeros(0, np.int64), {})
        demand = np.where(self.pool_is_cpu[pools], t.cpus[task], t.gpu_milli[task])
        run = REFERENCE_RUN_S * factor
        finish = run[None, :]
        price = self.cost.price(pools[None, :], demand[None, :], finish, now)
        loc = self.user_location(task)
        latency = self.cost.latency_ms(loc, pools)
        policy = self.policy
        if policy == "nearest":
            score = latency
        else:
            score = self._policy_score(
                task, pools, finish, price, latency, _NO_LOAD, math.nan, now
            )[0]
        ranked = pools[np.argsort(score, kind="stable")]
        parts = dict(
            zip(
                pools.tolist(),
                zip(run.tolist(), price.money[0].tolist(), price.carbon_kg[0].tolist(),
                    latency.tolist(), strict=True),
                strict=True,
            )
        )
        return _Ranking(ranked, parts)

    def choose_moving(
        self, task: int, now: float, spare: IntArray, demand: int
    ) -> Choice | None:
        """The large-network decision for a task whose input must move to most candidates.

        Candidates are the pools with room (`spare` units >= its `demand`) at the sites holding
        its data, and the first `PRUNED_CANDIDATES` pools with room in its ranking. Each is
        priced from the ranking's cached figures for a reference run, scaled to the task's run
        time, plus the transfer time and egress of its data there, and the policy picks among
        them exactly as in `score` with no queue wait. None when no candidate has room (then
        it is scored in full).
        """
        t = self.tasks
        ranking = self._ranking(task, now)
        ds = int(t.dataset[task])
        holders = self._dataset_regions[ds]
        if holders is None:
            return None
        candidates = [p for p in self._holder_pools(task, ds, ranking) if spare[p] >= demand]
        order = ranking.order
        head = order[: 4 * PRUNED_CANDIDATES]
        found = head[spare[head] >= demand][:PRUNED_CANDIDATES]
        if found.shape[0] < PRUNED_CANDIDATES:
            found = order[spare[order] >= demand][:PRUNED_CANDIDATES]
        candidates += found.tolist()
        if not candidates:
            return None
        size = float(t.data_gb[task])
        scale = float(t.run[task]) / REFERENCE_RUN_S
        deadline = float(t.deadline[task]) if t.deadline.shape[0] else math.nan
        rows = []
        for p in dict.fromkeys(candidates):
            run0, money0, carbon0, latency = ranking.parts[p]
            seconds, egress, src = self._fetch(holders, int(self.pool_region[p]), size)
            run = run0 * scale
            rows.append(
                (p, seconds + run, money0 * scale + egress, carbon0 * scale, latency, run,
                 seconds, src)
            )
        meets = [r for r in rows if not now + r[1] > deadline]  # NaN deadline: all meet
        pool_rows = meets or [min(rows, key=lambda r: r[1])]
        best = min(pool_rows, key=self._row_key(pool_rows))
        p, _, _, _, _, run, seconds, src = best
        moved = size if seconds > 0 else 0.0
        return Choice(
            pool=p,
            ready_s=now + seconds,
            run_s=run,
            moved_gb=moved,
            src_region=src if moved else NO_INDEX,
            held_s=0.0,
        )

    def _row_key(
        self, rows: list[tuple[int, float, float, float, float, float, float, int]]
    ) -> Callable[[tuple[int, float, float, float, float, float, float, int]], tuple[float, ...]]:
        """How `choose_moving` ranks (pool, finish, money, carbon, latency, ...) rows."""
        policy = self.policy
        if policy == "fastest":
            return lambda r: (r[1], r[0])
        if policy == "cheapest":
            return lambda r: (r[2], r[1], r[0])
        if policy == "greenest":
            return lambda r: (r[3], r[1], r[0])
        if policy == "nearest":
            return lambda r: (r[4], r[0])
        w = BALANCED_WEIGHTS
        tiny = 1e-9
        f_min = max(min(r[1] for r in rows), tiny)
        m_min = max(min(r[2] for r in rows), tiny)
        c_min = max(min(r[3] for r in rows), tiny)
        return lambda r: (
            w["finish"] * r[1] / f_min + w["money"] * r[2] / m_min + w["carbon"] * r[3] / c_min,
            r[0],
        )

    def _holder_pools(self, task: int, dataset: int, ranking: _Ranking) -> list[int]:
        """Candidate pools of `task` at the sites holding `dataset` (no transfer there)."""
        sites = self._holder_sites.get(dataset)
        if sites is None:
            sites = [
                self.network.site_index(s)
                for s in self.network.dataset(self.tasks.datasets[dataset]).sites
            ]
            self._holder_sites[dataset] = sites
        parts = ranking.parts
        return [p for s in sites for p in self._site_pools[s] if p in parts]

    def _fetch(self, holders: IntArray, region: int, size_gb: float) -> tuple[float, float, int]:
        """(seconds, egress money, source region) of bringing `size_gb` to `region`: the
        fastest copy, then the cheapest; nothing moves when `region` holds one."""
        best: tuple[float, float, int] | None = None
        for h in holders.tolist():
            if h == region:
                return 0.0, 0.0, NO_INDEX
            seconds = self._lat[h][region] / 1000.0 + size_gb * 8.0 / self._bw[h][region]
            egress = self._eg[h][region] * size_gb
            if best is None or (seconds, egress) < best[:2]:
                best = (seconds, egress, h)
        assert best is not None
        return best

    def fast_path(self) -> tuple[BoolArray, BoolArray]:
        """Tasks the large-network path may place without scoring in full: (walking
        `static_order`, through `choose_moving`). A policy whose ranking is static, and no
        deadline a shifting policy could hold for (those are scored in full, among the pruned
        candidates `PRUNED_CANDIDATES`); the second set are those whose input may move."""
        t = self.tasks
        n = len(t)
        if not self._large():
            return np.zeros(n, np.bool_), np.zeros(n, np.bool_)
        moves = (_index_col(t.dataset, n) >= 0) & ~_flag_col(t.data_local, n)
        holds = np.isfinite(t.deadline) if self.policy in SHIFTING_POLICIES else np.zeros(n, bool)
        return ~moves & ~holds, moves & ~holds

    @property
    def prunes(self) -> bool:
        """Whether scoring in full looks only at a pruned set of candidates (large networks)."""
        return self._large()

    def _large(self) -> bool:
        """The large-network path applies: mode ``auto``, a static policy, many pools."""
        return (
            self.mode == "auto"
            and self.policy in STATIC_POLICIES
            and len(self.pool_site) >= FAST_PATH_MIN_POOLS
        )

    def save_state(self) -> tuple[Mapping[str, Any], int]:
        """What scoring may change (the random policy's generator, round robin's position)."""
        return self._rng.bit_generator.state, self._last_rr

    def restore_state(self, state: tuple[Mapping[str, Any], int]) -> None:
        self._rng.bit_generator.state = state[0]
        self._last_rr = state[1]

    def first_candidate(self) -> IntArray:
        """Per task: its first candidate pool (meaningful where it has any)."""
        first: IntArray = np.argmax(self._class_mask, axis=1)[self._class_of]
        return first

    def needs_scoring(self) -> BoolArray:
        """Tasks whose pool or start is a real choice: several candidates, data to move, or
        a deadline a shifting policy may use. The others go straight to their one pool."""
        t = self.tasks
        n = len(t)
        several = self.feasible_count > 1
        moves = (_index_col(t.dataset, n) >= 0) & ~_flag_col(t.data_local, n)
        shifts = np.isfinite(t.deadline) if self.policy in SHIFTING_POLICIES else np.zeros(n, bool)
        out: BoolArray = several | moves | shifts
        return out

    # ------------------------------------------------------------------ scoring

    def score(
        self,
        task: int,
        now: float,
        load: LoadView,
        allow_hold: bool = True,
        among: IntArray | None = None,
    ) -> Candidates:
        """Estimate every candidate of `task` at `now` (or only those `among`) and score them."""
        t = self.tasks
        pools = (
            np.flatnonzero(self.candidates_mask(task)).astype(np.int64)
            if among is None
            else among
        )
        runnable = np.isfinite(self.speed.of(task)[pools])
        if not runnable.all() and runnable.any():
            pools = pools[runnable]  # measured as unable to run on some device types
        demand = np.where(self.pool_is_cpu[pools], t.cpus[task], t.gpu_milli[task]).astype(
            np.int64
        )
        run = float(t.run[task]) * self.speed.of(task)[pools]
        wait = load.wait_s(pools, demand)
        transfer_s = np.zeros(pools.shape[0])
        moved = np.zeros(pools.shape[0])
        egress = np.zeros(pools.shape[0])
        src = np.full(pools.shape[0], NO_INDEX, np.int64)
        ds = int(t.dataset[task]) if t.dataset.shape[0] else NO_INDEX
        if ds != NO_INDEX and pools.shape[0]:
            holders = self._dataset_regions[ds]
            if holders is not None:
                move = self.cost.transfer(holders, self.pool_region[pools], float(t.data_gb[task]))
                transfer_s, moved, egress = move.seconds, move.moved_gb, move.egress_per_gb
                src = np.where(moved > 0, move.src_region, NO_INDEX)
        loc = self.user_location(task)
        latency = self.cost.latency_ms(loc, pools)
        deadline = float(t.deadline[task]) if t.deadline.shape[0] else math.nan
        shifting = self.policy in SHIFTING_POLICIES and math.isfinite(deadline)

        holds = np.zeros(1)
        if shifting and allow_hold and pools.shape[0]:
            holds = self._hold_options(now)
            # Only holds some candidate could take and still keep its margin to the deadline.
            shortest = float(np.min(run + np.maximum(HOLD_MARGIN_S, HOLD_MARGIN_RUN_SHARE * run)))
            holds = holds[now + holds + shortest <= deadline]
            if holds.shape[0] == 0 or holds[0] != 0.0:
                holds = np.concatenate(([0.0], holds))
        # Grid of (hold, candidate): row 0 is "no hold".
        hold = holds[:, None] * np.ones((1, pools.shape[0]))
        ready = np.maximum(hold, transfer_s[None, :])
        start = ready + wait[None, :]
        finish = start + run[None, :]
        price = self.cost.price(
            pools[None, :], demand[None, :], run[None, :], now + start, moved[None, :],
            egress[None, :],
        )
        ok = np.ones(finish.shape, np.bool_)
        if holds.shape[0] > 1:
            margin = np.maximum(HOLD_MARGIN_S, HOLD_MARGIN_RUN_SHARE * run[None, :])
            room = now + finish + margin <= deadline
            ok[1:] = room[1:] & (wait[None, :] == 0.0)
        score = self._policy_score(task, pools, finish, price, latency, load, deadline, now)
        score = np.where(ok, score, np.inf)
        # Keep, per candidate, its best hold option (the one the task would get there).
        best_row = np.argmin(score, axis=0)
        cols = np.arange(pools.shape[0])
        pick = (best_row, cols)
        return Candidates(
            pools=pools,
            wait_s=wait,
            transfer_s=transfer_s,
            run_s=run,
            hold_s=hold[pick],
            finish_s=finish[pick],
            price=_pick(price, finish.shape, pick),
            moved_gb=moved,
            src_region=src,
            latency_ms=latency,
            score=score[pick],
        )

    def _hold_options(self, now: float) -> FloatArray:
        """0, then the next hour boundaries (wall clock) up to `MAX_HOLD_HOURS` ahead, in s."""
        x = self.cost.base_hours + now / SECONDS_PER_HOUR
        first = (math.floor(x) + 1 - x) * SECONDS_PER_HOUR
        return np.concatenate(
            ([0.0], first + SECONDS_PER_HOUR * np.arange(MAX_HOLD_HOURS, dtype=np.float64))
        )

    def _policy_score(
        self,
        task: int,
        pools: IntArray,
        finish: FloatArray,
        price: Price,
        latency: FloatArray,
        load: LoadView,
        deadline: float,
        now: float,
    ) -> FloatArray:
        policy = self.policy
        tiny = 1e-9
        if policy == "fastest":
            return finish
        if policy in DEADLINE_POLICIES:
            # A deadline the estimate would miss rules a candidate out while another meets it.
            late = (now + finish > deadline) if math.isfinite(deadline) else np.zeros_like(finish)
            if policy == "cheapest":
                primary = price.money + finish * 1e-9
            elif policy == "greenest":
                primary = price.carbon_kg + finish * 1e-12
            else:
                w = BALANCED_WEIGHTS
                primary = (
                    w["finish"] * finish / max(float(finish.min()), tiny)
                    + w["money"] * price.money / max(float(price.money.min()), tiny)
                    + w["carbon"] * price.carbon_kg / max(float(price.carbon_kg.min()), tiny)
                )
            if late.all():
                return finish  # nothing meets the deadline: finish as early as possible
            out: FloatArray = np.where(late, np.inf, primary)
            return out
        k = pools.shape[0]
        base = np.full(finish.shape, 1.0)
        if policy == "random":
            pick = int(self._rng.integers(k)) if k else 0
            base[:, :] = np.inf
            base[:, pick] = 0.0
            return base
        if policy == "round_robin":
            after = pools > self._last_rr
            pick = int(np.argmax(after)) if after.any() else 0
            base[:, :] = np.inf
            base[:, pick] = 0.0
            return base
        spare = load.spare_share(pools)
        if policy == "least_loaded":
            return base * (-spare)[None, :]
        # nearest: least latency, ties least loaded
        return base * (latency - spare * 1e-6)[None, :]

    def choose(
        self,
        task: int,
        now: float,
        load: LoadView,
        allow_hold: bool = True,
        among: IntArray | None = None,
    ) -> Choice:
        """The candidate the policy ranks first (see `score`).

        With `allow_hold` False the task is placed to join a queue now: what happens when a hold
        ends, so a task is held at most once. `among` restricts the candidates (the pruned
        path of a large network).
        """
        c = self.score(task, now, load, allow_hold=allow_hold, among=among)
        k = int(np.argmin(c.score))
        pool = int(c.pools[k])
        if self.policy == "round_robin":
            self._last_rr = pool
        ready = now + max(float(c.hold_s[k]), float(c.transfer_s[k]))
        return Choice(
            pool=pool,
            ready_s=ready,
            run_s=float(c.run_s[k]),
            moved_gb=float(c.moved_gb[k]),
            src_region=int(c.src_region[k]),
            held_s=float(c.hold_s[k]),
        )


def _pick(price: Price, shape: tuple[int, ...], pick: tuple[IntArray, IntArray]) -> Price:
    """Each candidate's figures at its chosen hold row (row 0 when there is only one)."""
    if shape[0] == 1:
        return Price(*(np.broadcast_to(getattr(price, f), shape)[0] for f in Price.__slots__))
    return Price(*(np.broadcast_to(getattr(price, f), shape)[pick] for f in Price.__slots__))


_NO_LOAD = LoadView(
    capacity=np.ones(1, np.int64), free=np.ones(1, np.int64), queued=np.zeros(1, np.int64),
    backlog=np.zeros(1),
)
"""Load for static rankings: only the baselines read it, and they are never ranked statically."""


def _index_col(values: npt.NDArray[np.int32], n: int) -> npt.NDArray[np.int32]:
    """A per-task index column, or `NO_INDEX` for every task where the workload lacks it."""
    return values if values.shape[0] == n else np.full(n, NO_INDEX, np.int32)


def _flag_col(values: BoolArray, n: int) -> BoolArray:
    """A per-task flag column, or False for every task where the workload lacks it."""
    return values if values.shape[0] == n else np.zeros(n, np.bool_)
