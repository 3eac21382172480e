"""The large-network path: cached best-first rankings instead of scoring every candidate.

On a network of `FAST_PATH_MIN_POOLS` pools or more, scoring every candidate of every task costs
about a millisecond per decision at 1,000 sites. For the policies whose ranking of idle candidates
does not depend on load, placement keeps one ranking per kind of task and curve hour and walks it
(docs/placement.md, section 5). `RankingMixin` is one part of
`computility.scheduler.placement.Placement`.
"""

from __future__ import annotations

import math

import numpy as np

from computility.domain.cost import SECONDS_PER_HOUR, CostModel, Price
from computility.domain.network import Network
from computility.domain.speed import SpeedModel
from computility.domain.workload import NO_INDEX, Workload
from computility.scheduler.candidates import (
    NO_LOAD,
    BoolArray,
    Choice,
    FloatArray,
    IntArray,
    LoadView,
    Ranking,
    flag_col,
    index_col,
)
from computility.scheduler.policies import (
    BALANCED_WEIGHTS,
    FAST_PATH_MIN_POOLS,
    PRUNED_CANDIDATES,
    REFERENCE_RUN_S,
    SHIFTING_POLICIES,
    STATIC_POLICIES,
)


class RankingMixin:
    """The ranking half of `Placement` (it sets these attributes up)."""

    network: Network
    tasks: Workload
    policy: str
    mode: str
    cost: CostModel
    speed: SpeedModel
    pool_is_cpu: BoolArray
    pool_site: IntArray
    pool_region: IntArray
    _orders: dict[tuple[int, int, int, int], Ranking]
    _holder_sites: dict[int, list[int]]
    _site_pools: list[list[int]]
    _lat: list[list[float]]
    _bw: list[list[float]]
    _eg: list[list[float]]
    _dataset_regions: list[IntArray | None]
    _class_l: list[int]
    _speed_l: list[int]

    def candidates_mask(self, task: int) -> BoolArray:
        raise NotImplementedError

    def user_location(self, task: int) -> int:
        raise NotImplementedError

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
        raise NotImplementedError

    def static_order(self, task: int, now: float) -> IntArray:
        """Candidate pools of `task` best first, as the policy ranks them with no queue wait.

        The ranking depends only on the kind of task (feasibility and speed class, and the
        user's location for ``nearest``) and the hour of the curves a run starting now reads,
        so it is computed once per such key and reused: the large-network path of
        `Scheduler` walks it and takes the first pool with room. It is scored for a reference
        run of `REFERENCE_RUN_S` starting now, the hour that key stands for.
        """
        return self._ranking(task, now).order

    def ranking(self, task: int, now: float) -> Ranking:
        """The cached ranking of `task`'s kind at this hour (see `static_order`)."""
        return self._ranking(task, now)

    def _ranking(self, task: int, now: float) -> Ranking:
        hour = math.floor(self.cost.base_hours + now / SECONDS_PER_HOUR) % self.cost.hours
        loc = self.user_location(task) if self.policy == "nearest" else NO_INDEX
        key = (self._class_l[task], self._speed_l[task], hour, loc)
        ranking = self._orders.get(key)
        if ranking is None:
            ranking = self._rank_statically(task, now)
            self._orders[key] = ranking
        return ranking

    def _rank_statically(self, task: int, now: float) -> Ranking:
        t = self.tasks
        pools = np.flatnonzero(self.candidates_mask(task)).astype(np.int64)
        factor = self.speed.of(task)[pools]
        pools, factor = pools[np.isfinite(factor)], factor[np.isfinite(factor)]
        if pools.shape[0] == 0:
            return Ranking(np.zeros(0, np.int64), {})
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
                task, pools, finish, price, latency, NO_LOAD, math.nan, now
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
        return Ranking(ranked, parts)

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
        k = best_index(
            self.policy,
            [r[0] for r in pool_rows],
            [r[1] for r in pool_rows],
            [r[2] for r in pool_rows],
            [r[3] for r in pool_rows],
            [r[4] for r in pool_rows],
        )
        p, _, _, _, _, run, seconds, src = pool_rows[k]
        moved = size if seconds > 0 else 0.0
        return Choice(
            pool=p,
            ready_s=now + seconds,
            run_s=run,
            moved_gb=moved,
            src_region=src if moved else NO_INDEX,
            held_s=0.0,
        )

    def _holder_pools(self, task: int, dataset: int, ranking: Ranking) -> list[int]:
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
        moves = (index_col(t.dataset, n) >= 0) & ~flag_col(t.data_local, n)
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


def best_index(
    policy: str,
    pools: list[int],
    finish: list[float],
    money: list[float],
    carbon: list[float],
    latency: list[float],
) -> int:
    """Which of a few candidates (parallel lists) the policy ranks first, as `Placement.score`
    ranks them: by finish, money or carbon (ties by finish), latency, or the balanced sum of
    each figure over the best one; ties by pool. Pure Python: the large-network path calls it on
    a handful of candidates per decision, where numpy's per-call cost would dominate."""
    if policy == "fastest":
        keys: list[tuple[float, ...]] = [(f, p) for f, p in zip(finish, pools, strict=True)]
    elif policy == "cheapest":
        keys = [(m, f, p) for m, f, p in zip(money, finish, pools, strict=True)]
    elif policy == "greenest":
        keys = [(c, f, p) for c, f, p in zip(carbon, finish, pools, strict=True)]
    elif policy == "nearest":
        keys = [(lat, p) for lat, p in zip(latency, pools, strict=True)]
    else:
        w = BALANCED_WEIGHTS
        f_min = max(min(finish), 1e-9)
        m_min = max(min(money), 1e-9)
        c_min = max(min(carbon), 1e-9)
        keys = [
            (w["finish"] * f / f_min + w["money"] * m / m_min + w["carbon"] * c / c_min, p)
            for f, m, c, p in zip(finish, money, carbon, pools, strict=True)
        ]
    return min(range(len(keys)), key=keys.__getitem__)
