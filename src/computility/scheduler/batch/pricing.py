"""Pricing one task of each class on its candidate pools, as the class model approximates it.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from computility.domain.cost import JOULES_PER_KWH, SECONDS_PER_HOUR
from computility.domain.workload import NO_INDEX
from computility.scheduler.batch.classes import _worst
from computility.scheduler.candidates import BoolArray, FloatArray, IntArray
from computility.scheduler.placement import BALANCED_WEIGHTS, DEADLINE_POLICIES, Placement

COST_POLICIES: Final = frozenset({"cheapest", "fastest", "greenest", "balanced"})
"""Policies whose figure depends on run time, data and price, so classes must separate those."""
CURVE_STEP: Final = 2.0**0.25
"""Ratio of the run-length grid that hourly curves are averaged over (see the module)."""
_CHUNK_ENTRIES: Final = 1 << 16
"""(class, pool) entries priced at once: temporaries of this size stay in cache."""


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


def _row_min(values: FloatArray, ok: BoolArray, every: bool) -> FloatArray:
    """Per row, the least value where `ok` (`every`: all are), as a column, at least 1e-9."""
    least = values if every else np.where(ok, values, np.inf)
    out: FloatArray = np.maximum(least.min(axis=1, keepdims=True), 1e-9)
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
