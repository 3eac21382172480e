"""The one cost model: what running a task somewhere, at some time, costs in time, money and carbon.

The scheduler scores candidates with it, the simulator bills replayed tasks with it, and quotes
and the ledger price live tasks with it, so an estimate and the bill that follows it can differ
only in their inputs (estimated versus actual start and run time), never in their arithmetic.

Every function works on numpy arrays that broadcast together, so one call prices every candidate
pool of one task or every task of a finished replay.

Definitions (all per task):

- compute money = CU-hours x the pool's price per CU-hour, where CU-hours = units x CU per unit
  x run time (units are cores on a CPU pool, thousandths of a device on an accelerator pool);
- energy = units x TDP per unit x run time x the site's PUE (facility kWh); devices are taken to
  draw their TDP while busy, the usual planning assumption where no power telemetry exists;
- energy money and carbon = energy x the site's electricity price / carbon intensity *averaged
  over the hours the run spans*, read from the site's hourly curves with the run's wall-clock
  start (``--start`` + simulated time);
- egress money = GB moved x the link's price per GB, from the region holding the data to the
  region of the site; moving data takes latency + size / bandwidth, before the task can start;
- latency = one-way milliseconds from the user's location to the site's region.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import numpy.typing as npt

from computility.domain.network import Network

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
MILLI = 1000.0
SECONDS_PER_HOUR = 3600.0
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class Price:
    """What running on each candidate costs (arrays of one shape).

    Money is in micro-units of the network's currency, as floats: round only on billing.
    """

    cu_hours: FloatArray
    kwh: FloatArray
    carbon_kg: FloatArray
    compute: FloatArray
    energy: FloatArray
    egress: FloatArray

    @property
    def money(self) -> FloatArray:
        total: FloatArray = self.compute + self.energy + self.egress
        return total


@dataclass(frozen=True, slots=True)
class Transfer:
    """Moving a task's input to each candidate: from where, how long, and at what price per GB."""

    src_region: IntArray
    seconds: FloatArray
    egress_per_gb: FloatArray
    moved_gb: FloatArray


class CostModel:
    """Prices work on one network for runs that begin at a given wall-clock time."""

    def __init__(self, network: Network, start: datetime) -> None:
        a = network.arrays
        self.network = network
        self.arrays = a
        self.hours = network.hours
        self.base_hours = _hours_since_year_start(start, network.utc_offset_minutes)
        unit_scale = np.where(a.pool_is_cpu, 1.0, 1.0 / MILLI)
        self.cu_per_unit: FloatArray = a.pool_cu * unit_scale
        self.watts_per_unit: FloatArray = a.pool_watts * unit_scale
        self.pool_price: FloatArray = a.pool_price.astype(np.float64)
        self.pool_region: IntArray = a.site_region[a.pool_site]
        self.pool_pue: FloatArray = a.site_pue[a.pool_site]
        self._price_cum = _cumulative(a.electricity.astype(np.float64))
        self._carbon_cum = _cumulative(a.carbon)
        self._price_curve = a.electricity.astype(np.float64)
        self._carbon_curve = a.carbon
        # Flat copies for `_means`: one-dimensional takes are the cheapest gather.
        self._flat_price = self._price_curve.ravel()
        self._flat_carbon = np.ascontiguousarray(self._carbon_curve).ravel()
        self._flat_price_cum = self._price_cum.ravel()
        self._flat_carbon_cum = self._carbon_cum.ravel()

    # ---------------------------------------------------------------------- curves

    def mean_over(
        self, which: str, sites: npt.ArrayLike, t0_s: npt.ArrayLike, t1_s: npt.ArrayLike
    ) -> FloatArray:
        """Mean of a site's hourly curve (``price`` or ``carbon``) over [t0, t1] simulated s."""
        cum, curve = (
            (self._price_cum, self._price_curve)
            if which == "price"
            else (self._carbon_cum, self._carbon_curve)
        )
        s = np.asarray(sites, np.int64)
        x0 = self.base_hours + np.asarray(t0_s, np.float64) / SECONDS_PER_HOUR
        x1 = self.base_hours + np.asarray(t1_s, np.float64) / SECONDS_PER_HOUR
        f0 = _integral(cum, curve, self.hours, s, x0)
        f1 = _integral(cum, curve, self.hours, s, x1)
        width = x1 - x0
        at = curve[s, np.floor(x0).astype(np.int64) % self.hours]
        safe = np.where(width > 1e-12, width, 1.0)
        mean: FloatArray = np.where(width > 1e-12, (f1 - f0) / safe, at)
        return mean

    def _means(self, sites: IntArray, t0_s: FloatArray, t1_s: FloatArray) -> FloatArray:
        """`mean_over` of price and carbon at once: shape of the inputs plus a last axis of 2.

        Reads flat copies of the curves with one-dimensional takes, the cheapest gather numpy
        has: placement prices a task's candidates with it on every decision.
        """
        hours = self.hours
        x0 = self.base_hours + t0_s / SECONDS_PER_HOUR
        x1 = self.base_hours + t1_s / SECONDS_PER_HOUR
        row_cum = sites * (hours + 1)
        row = sites * hours
        laps0 = np.floor(x0 / hours)
        laps1 = np.floor(x1 / hours)
        y0 = x0 - laps0 * hours
        y1 = x1 - laps1 * hours
        i0 = np.minimum(y0.astype(np.int64), hours - 1)
        i1 = np.minimum(y1.astype(np.int64), hours - 1)
        width = x1 - x0
        positive = width > 1e-12
        safe = np.where(positive, width, 1.0)
        out = np.empty((*np.shape(width), 2))
        for k, (cum, curve) in enumerate(((self._flat_price_cum, self._flat_price),
                                          (self._flat_carbon_cum, self._flat_carbon))):
            total = cum[row_cum + hours]
            at0 = curve[row + i0]
            # Integrals from the start of t0's lap, not from hour 0: the difference of two
            # large totals would lose the last digits of a flat curve's exact mean.
            f0 = cum[row_cum + i0] + (y0 - i0) * at0
            f1 = (laps1 - laps0) * total + cum[row_cum + i1] + (y1 - i1) * curve[row + i1]
            out[..., k] = np.where(positive, (f1 - f0) / safe, at0)
        return out

    # ---------------------------------------------------------------------- pricing

    def price(
        self,
        pools: npt.ArrayLike,
        units: npt.ArrayLike,
        run_s: npt.ArrayLike,
        start_s: npt.ArrayLike,
        moved_gb: npt.ArrayLike = 0.0,
        egress_per_gb: npt.ArrayLike = 0.0,
    ) -> Price:
        """Price runs of `run_s` seconds on `pools` holding `units`, starting at `start_s`."""
        p = np.asarray(pools, np.int64)
        u = np.asarray(units, np.float64)
        run = np.asarray(run_s, np.float64)
        t0 = np.asarray(start_s, np.float64)
        site = self.arrays.pool_site[p]
        cu_hours = u * self.cu_per_unit[p] * run / SECONDS_PER_HOUR
        kwh = u * self.watts_per_unit[p] * run / JOULES_PER_KWH * self.pool_pue[p]
        both = self._means(site, t0, t0 + run)
        price, carbon = both[..., 0], both[..., 1]
        egress = np.asarray(moved_gb, np.float64) * np.asarray(egress_per_gb, np.float64)
        return Price(
            cu_hours=cu_hours,
            kwh=kwh,
            carbon_kg=kwh * carbon,
            compute=cu_hours * self.pool_price[p],
            energy=kwh * price,
            egress=np.broadcast_to(egress, cu_hours.shape).astype(np.float64),
        )

    def transfer(
        self, holders: npt.ArrayLike, dst_regions: npt.ArrayLike, size_gb: float
    ) -> Transfer:
        """Best copy to fetch `size_gb` from, for each destination region.

        `holders` are the regions holding a copy; the copy with the shortest transfer wins
        (the cheaper one at equal times). A destination that holds a copy moves nothing.
        """
        src = np.asarray(holders, np.int64).reshape(-1, 1)
        dst = np.asarray(dst_regions, np.int64).reshape(1, -1)
        a = self.arrays
        same = src == dst
        seconds = np.where(
            same, 0.0, a.latency_ms[src, dst] / 1000.0 + size_gb * 8.0 / a.bandwidth_gbps[src, dst]
        )
        egress = np.where(same, 0.0, a.egress_per_gb[src, dst].astype(np.float64))
        best = np.lexsort((egress, seconds), axis=0)[0]
        cols = np.arange(dst.shape[1])
        moved = np.where(same[best, cols], 0.0, size_gb)
        return Transfer(
            src_region=src[best, 0],
            seconds=seconds[best, cols],
            egress_per_gb=egress[best, cols],
            moved_gb=moved,
        )

    def latency_ms(self, location: int, pools: npt.ArrayLike) -> FloatArray:
        """One-way latency from user location row `location` to each pool's region (0 if none)."""
        p = np.asarray(pools, np.int64)
        if location < 0 or self.arrays.demand_latency_ms.shape[0] == 0:
            return np.zeros(p.shape)
        lat: FloatArray = self.arrays.demand_latency_ms[location, self.pool_region[p]]
        return lat


def _hours_since_year_start(start: datetime, utc_offset_minutes: int) -> float:
    zone = timezone(timedelta(minutes=utc_offset_minutes))
    local = start.astimezone(zone) if start.tzinfo is not None else start.replace(tzinfo=zone)
    year_start = local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return (local - year_start).total_seconds() / SECONDS_PER_HOUR


def _cumulative(curve: FloatArray) -> FloatArray:
    out = np.zeros((curve.shape[0], curve.shape[1] + 1))
    np.cumsum(curve, axis=1, out=out[:, 1:])
    return out


def _integral(
    cum: FloatArray, curve: FloatArray, hours: int, sites: IntArray, x: FloatArray
) -> FloatArray:
    """Integral of a periodic hourly step curve from hour 0 to hour `x` (value x hours)."""
    laps = np.floor(x / hours)
    y = x - laps * hours
    i = np.minimum(np.floor(y).astype(np.int64), hours - 1)
    total = cum[sites, hours]
    out: FloatArray = laps * total + cum[sites, i] + (y - i) * curve[sites, i]
    return out
