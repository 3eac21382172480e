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

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from computility.domain.cost import SECONDS_PER_HOUR, CostModel, Price
from computility.domain.network import Network
from computility.domain.site import MILLI
from computility.domain.speed import SpeedModel
from computility.domain.workload import NO_INDEX, Workload
from computility.scheduler.candidates import (
    BoolArray,
    Candidates,
    Choice,
    FloatArray,
    IntArray,
    LoadView,
    Ranking,
    SiteRules,
    pick_rows,
)
from computility.scheduler.feasibility import FeasibilityMixin
from computility.scheduler.policies import (
    BALANCED_WEIGHTS,
    DEADLINE_POLICIES,
    FAST_PATH_MIN_POOLS,
    HOLD_MARGIN_RUN_SHARE,
    HOLD_MARGIN_S,
    MAX_HOLD_HOURS,
    PLACEMENT_MODES,
    POLICIES,
    PRUNED_CANDIDATES,
    REFERENCE_RUN_S,
    SHIFTING_POLICIES,
    STATIC_POLICIES,
    WEIGH_BUSY,
)
from computility.scheduler.ranking import RankingMixin

__all__ = [
    "BALANCED_WEIGHTS",
    "DEADLINE_POLICIES",
    "FAST_PATH_MIN_POOLS",
    "PLACEMENT_MODES",
    "POLICIES",
    "PRUNED_CANDIDATES",
    "REFERENCE_RUN_S",
    "SHIFTING_POLICIES",
    "STATIC_POLICIES",
    "WEIGH_BUSY",
    "Candidates",
    "Choice",
    "LoadView",
    "Placement",
    "SiteRules",
]


class Placement(FeasibilityMixin, RankingMixin):
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
        self._orders: dict[tuple[int, int, int, int], Ranking] = {}
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

    def with_policy(self, policy: str, seed: int = 0) -> Placement:
        """This placement under another policy, sharing what no policy changes: feasibility,
        the speed and cost models and the network's tables (building them is most of the cost
        of a `Placement` over a large batch). Per-policy caches and draws start afresh."""
        if policy not in POLICIES:
            raise ValueError(f"unknown placement policy '{policy}'")
        other = copy.copy(self)
        other.policy = policy
        other._rng = np.random.default_rng(seed)
        other._last_rr = -1
        other._orders = {}
        return other

    # ------------------------------------------------------------------ feasibility

    def save_state(self) -> tuple[Mapping[str, Any], int]:
        """What scoring may change (the random policy's generator, round robin's position)."""
        return self._rng.bit_generator.state, self._last_rr

    def restore_state(self, state: tuple[Mapping[str, Any], int]) -> None:
        self._rng.bit_generator.state = state[0]
        self._last_rr = state[1]

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
            price=pick_rows(price, finish.shape, pick),
            moved_gb=moved,
            src_region=src,
            latency_ms=latency,
            score=score[pick],
        )

    def may_hold(self, task: int, now: float) -> bool:
        """Whether `score` could offer `task` any hold at `now`: a shifting policy, a deadline,
        and room before it for the next hour boundary plus the run on its fastest device plus
        the margin (the filter `score` applies, taken on the fastest device of any pool, so it
        never rules out a hold `score` would offer). A driver deciding holds for many tasks at
        once (the control plane's scheduling loop) scores only those it is true for."""
        t = self.tasks
        deadline = float(t.deadline[task]) if t.deadline.shape[0] else math.nan
        if self.policy not in SHIFTING_POLICIES or not math.isfinite(deadline):
            return False
        factors = self.speed.of(task)
        finite = factors[np.isfinite(factors)]
        if finite.shape[0] == 0:
            return False
        run = float(t.run[task]) * float(finite.min())
        first = float(self._hold_options(now)[1])
        return now + first + run + max(HOLD_MARGIN_S, HOLD_MARGIN_RUN_SHARE * run) <= deadline

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
