"""The compute network as data: regions, sites, links, datasets and where users are.

Placement weighs compute, network, data and electricity together, so all of them live in one
immutable value that a scheduler can hold without I/O. The dataclasses are for reading and
explaining; the numpy arrays (built once, read-only) are for scoring many tasks against many
pools at once. Indices are positional and stable: pool ``i`` of `Network.pools` is row ``i`` of
every per-pool array, site ``j`` of `Network.sites` is row ``j`` of every per-site array, and
region ``k`` of `Network.regions` is row and column ``k`` of every region matrix.

Hourly curves (electricity price, carbon intensity) hold 24 values for a typical day or 8760 for a
(non-leap) year, in the network's local time (`Network.utc_offset_minutes`). `hour_index` maps
simulated seconds since the run's start time onto an entry.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Final

import numpy as np
import numpy.typing as npt

from computility.domain.money import DEFAULT_CURRENCY
from computility.domain.site import HOURS_PER_DAY, HOURS_PER_YEAR, Pool, Site

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CHINA_UTC_OFFSET_MINUTES: Final = 8 * 60
"""The embedded default network's curves are in China Standard Time (UTC+8)."""


@dataclass(frozen=True, slots=True)
class Region:
    """A place sites share: data moves freely inside it, and links join it to other regions."""

    id: str
    name: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Link:
    """The path from one region to another, one way.

    Attributes:
        src: region data leaves.
        dst: region data arrives at.
        latency_ms: one-way latency, milliseconds.
        bandwidth_gbps: throughput available to one transfer, Gbit/s.
        egress_per_gb: micro-units of currency per GB (10^9 bytes) sent.
    """

    src: str
    dst: str
    latency_ms: float
    bandwidth_gbps: float
    egress_per_gb: int

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.bandwidth_gbps <= 0 or self.egress_per_gb < 0:
            raise ValueError(f"link {self.src}->{self.dst}: negative latency/price or no bandwidth")

    def transfer_s(self, size_gb: float) -> float:
        """Seconds to move `size_gb` over this link: latency plus size over bandwidth."""
        return self.latency_ms / 1000.0 + size_gb * 8.0 / self.bandwidth_gbps


@dataclass(frozen=True, slots=True)
class Dataset:
    """Named input data of `size_gb` GB, with a full copy at each of `sites`."""

    id: str
    size_gb: float
    sites: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DemandLocation:
    """Where users are: the origin of `max_latency_ms` bounds (task spec ``user_location``).

    Attributes:
        latency_ms: one-way milliseconds to each region id (every region of the network).
    """

    id: str
    name: str
    lat: float
    lon: float
    latency_ms: Mapping[str, float]


def hour_index(
    start: datetime,
    t_s: float | npt.ArrayLike,
    hours: int,
    utc_offset_minutes: int = CHINA_UTC_OFFSET_MINUTES,
) -> npt.NDArray[np.int64]:
    """Entry of an hourly curve that simulated time `t_s` falls in.

    The wall-clock time is ``start + t_s`` seconds, read in the curve's local time (UTC plus
    `utc_offset_minutes`). A 24-value curve is indexed by the local hour of day; an 8760-value
    curve by the hour of the local year that `start` begins in, wrapping after 8760 hours (so a
    leap year's 31 December reuses 1 January, and a run longer than a year starts over).

    Args:
        start: wall-clock time of simulated time 0 (``--start``); a naive time is taken as
            already in the curve's local time.
        t_s: seconds since `start`, a number or an array of them.
        hours: 24 or 8760, the curve's length.
        utc_offset_minutes: the curve's time zone.

    Returns:
        An int64 array of the shape of `t_s` (0-d for a number); use ``int(...)`` on a scalar.
    """
    if hours not in (HOURS_PER_DAY, HOURS_PER_YEAR):
        raise ValueError(f"a curve has 24 or 8760 hours, not {hours}")
    zone = timezone(timedelta(minutes=utc_offset_minutes))
    local = start.astimezone(zone) if start.tzinfo is not None else start.replace(tzinfo=zone)
    year_start = local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    base_s = (local - year_start).total_seconds()
    elapsed = base_s + np.asarray(t_s, dtype=np.float64)
    return np.asarray(np.floor(elapsed / 3600.0), dtype=np.int64) % hours


@dataclass(frozen=True)
class Network:
    """Everything placement needs to know about the network, checked to be consistent.

    Attributes:
        name: what reports call it (``default``, ``generated:40``, a file name).
        regions: every region, in index order.
        sites: every site, in index order; each site's region is in `regions`.
        links: a link for every ordered pair of distinct regions.
        datasets: named data and where copies are.
        demand: user locations with latency to every region.
        currency: the currency that every price's micro-units count.
        utc_offset_minutes: the time zone of every hourly curve.
        intra_region_latency_ms: one-way latency between two sites of one region (or a user
            and data at the same site), ms.
        intra_region_bandwidth_gbps: bandwidth inside a region, Gbit/s.
    """

    name: str
    regions: tuple[Region, ...]
    sites: tuple[Site, ...]
    links: tuple[Link, ...]
    datasets: tuple[Dataset, ...] = ()
    demand: tuple[DemandLocation, ...] = ()
    currency: str = DEFAULT_CURRENCY
    utc_offset_minutes: int = CHINA_UTC_OFFSET_MINUTES
    intra_region_latency_ms: float = 1.0
    intra_region_bandwidth_gbps: float = 400.0
    _index: dict[str, dict[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {
            "region": _unique("region", [r.id for r in self.regions]),
            "site": _unique("site", [s.id for s in self.sites]),
            "dataset": _unique("dataset", [d.id for d in self.datasets]),
            "demand": _unique("demand location", [d.id for d in self.demand]),
        }
        object.__setattr__(self, "_index", index)
        for site in self.sites:
            if site.region not in index["region"]:
                raise ValueError(f"site '{site.id}': unknown region '{site.region}'")
            _unique(f"pool of site '{site.id}'", [p.id for p in site.pools])
        pairs = {(link.src, link.dst) for link in self.links}
        for region in self.regions:
            for other in self.regions:
                if region.id != other.id and (region.id, other.id) not in pairs:
                    raise ValueError(f"no link from region '{region.id}' to '{other.id}'")
        for dataset in self.datasets:
            for site_id in dataset.sites:
                if site_id not in index["site"]:
                    raise ValueError(f"dataset '{dataset.id}': unknown site '{site_id}'")
        for location in self.demand:
            missing = set(index["region"]) - set(location.latency_ms)
            if missing:
                raise ValueError(f"demand '{location.id}': no latency to {sorted(missing)}")

    # ------------------------------------------------------------------ look-ups

    def site(self, site_id: str) -> Site:
        """The site called `site_id` (KeyError if none)."""
        return self.sites[self._index["site"][site_id]]

    def region(self, region_id: str) -> Region:
        """The region called `region_id` (KeyError if none)."""
        return self.regions[self._index["region"][region_id]]

    def dataset(self, dataset_id: str) -> Dataset:
        """The dataset called `dataset_id` (KeyError if none)."""
        return self.datasets[self._index["dataset"][dataset_id]]

    def demand_location(self, location_id: str) -> DemandLocation:
        """The user location called `location_id` (KeyError if none)."""
        return self.demand[self._index["demand"][location_id]]

    def site_index(self, site_id: str) -> int:
        """Row of `site_id` in the per-site arrays."""
        return self._index["site"][site_id]

    def region_index(self, region_id: str) -> int:
        """Row and column of `region_id` in the region matrices."""
        return self._index["region"][region_id]

    def pool_index(self, site_id: str, pool_id: str) -> int:
        """Row of a site's pool in the per-pool arrays (KeyError if none)."""
        return self._pool_rows[(site_id, pool_id)]

    def link(self, src: str, dst: str) -> Link:
        """The link between two regions; inside one region, the intra-region path (no egress)."""
        if src == dst:
            self.region(src)
            return Link(src, dst, self.intra_region_latency_ms, self.intra_region_bandwidth_gbps, 0)
        return self._links[(src, dst)]

    def sites_in(self, region_id: str) -> tuple[Site, ...]:
        """The sites of one region, in index order."""
        return tuple(site for site in self.sites if site.region == region_id)

    @property
    def pools(self) -> tuple[tuple[Site, Pool], ...]:
        """Every (site, pool) pair in index order: the rows of the per-pool arrays."""
        return self._pools

    @functools.cached_property
    def hours(self) -> int:
        """Columns of the curve arrays: 8760 if any site has a yearly curve, else 24."""
        lengths = {len(s.carbon_curve) for s in self.sites}
        lengths |= {len(s.electricity_price_curve) for s in self.sites}
        return HOURS_PER_YEAR if HOURS_PER_YEAR in lengths else HOURS_PER_DAY

    def hour_index(self, start: datetime, t_s: float | npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Column of the curve arrays for simulated time `t_s` (see the module `hour_index`)."""
        return hour_index(start, t_s, self.hours, self.utc_offset_minutes)

    # ------------------------------------------------------------------ cached tables

    @functools.cached_property
    def _pools(self) -> tuple[tuple[Site, Pool], ...]:
        return tuple((site, pool) for site in self.sites for pool in site.pools)

    @functools.cached_property
    def _pool_rows(self) -> dict[tuple[str, str], int]:
        return {(s.id, p.id): row for row, (s, p) in enumerate(self._pools)}

    @functools.cached_property
    def _links(self) -> dict[tuple[str, str], Link]:
        return {(link.src, link.dst): link for link in self.links}

    @functools.cached_property
    def arrays(self) -> NetworkArrays:
        """The vectorised view, built on first use and shared afterwards."""
        return _build_arrays(self)


@dataclass(frozen=True, slots=True)
class NetworkArrays:
    """Read-only numpy tables of a `Network`, for scoring many candidates at once.

    Per pool (rows = `Network.pools`): ``pool_site`` site row, ``pool_capacity`` devices (cores
    for CPU pools), ``pool_devices_per_node``, ``pool_cu`` CU per device, ``pool_price`` micro-
    units per CU-hour, ``pool_watts`` TDP per device, ``pool_is_cpu``.
    Per site: ``site_region`` region column, ``site_pue``, ``electricity`` (sites x hours,
    micro-units per kWh) and ``carbon`` (sites x hours, kg/kWh), 24-value curves repeated to
    8760 when any site has a yearly curve.
    Per region pair (src row, dst column): ``latency_ms``, ``bandwidth_gbps``, ``egress_per_gb``
    (micro-units), the diagonal being the intra-region path.
    Per user location (rows = `Network.demand`): ``demand_latency_ms`` to each region.
    """

    pool_site: IntArray
    pool_capacity: IntArray
    pool_devices_per_node: IntArray
    pool_cu: FloatArray
    pool_price: IntArray
    pool_watts: FloatArray
    pool_is_cpu: npt.NDArray[np.bool_]
    site_region: IntArray
    site_pue: FloatArray
    electricity: IntArray
    carbon: FloatArray
    latency_ms: FloatArray
    bandwidth_gbps: FloatArray
    egress_per_gb: IntArray
    demand_latency_ms: FloatArray


def _build_arrays(network: Network) -> NetworkArrays:
    pools = network.pools
    hours = network.hours

    def curve(values: tuple[float, ...] | tuple[int, ...]) -> list[float]:
        return list(values) * (hours // len(values))

    regions = len(network.regions)
    latency = np.full((regions, regions), network.intra_region_latency_ms)
    bandwidth = np.full((regions, regions), network.intra_region_bandwidth_gbps)
    egress = np.zeros((regions, regions), dtype=np.int64)
    for link in network.links:
        src, dst = network.region_index(link.src), network.region_index(link.dst)
        latency[src, dst] = link.latency_ms
        bandwidth[src, dst] = link.bandwidth_gbps
        egress[src, dst] = link.egress_per_gb
    region_ids = [r.id for r in network.regions]
    demand = np.array(
        [[loc.latency_ms[r] for r in region_ids] for loc in network.demand], dtype=np.float64
    ).reshape(len(network.demand), regions)
    tables = NetworkArrays(
        pool_site=np.array([network.site_index(s.id) for s, _ in pools], dtype=np.int64),
        pool_capacity=np.array([p.count for _, p in pools], dtype=np.int64),
        pool_devices_per_node=np.array([p.devices_per_node for _, p in pools], dtype=np.int64),
        pool_cu=np.array([p.device.cu for _, p in pools], dtype=np.float64),
        pool_price=np.array([p.price_per_cu_hour for _, p in pools], dtype=np.int64),
        pool_watts=np.array([p.device.tdp_w for _, p in pools], dtype=np.float64),
        pool_is_cpu=np.array([p.is_cpu for _, p in pools], dtype=np.bool_),
        site_region=np.array([network.region_index(s.region) for s in network.sites], np.int64),
        site_pue=np.array([s.pue for s in network.sites], dtype=np.float64),
        electricity=np.array(
            [curve(s.electricity_price_curve) for s in network.sites], dtype=np.int64
        ).reshape(len(network.sites), hours),
        carbon=np.array([curve(s.carbon_curve) for s in network.sites], dtype=np.float64).reshape(
            len(network.sites), hours
        ),
        latency_ms=latency,
        bandwidth_gbps=bandwidth,
        egress_per_gb=egress,
        demand_latency_ms=demand,
    )
    for name in NetworkArrays.__slots__:
        getattr(tables, name).setflags(write=False)
    return tables


def _unique(what: str, ids: list[str]) -> dict[str, int]:
    """Position of each id, refusing repeats: two things with one name make look-ups ambiguous."""
    index: dict[str, int] = {}
    for position, item in enumerate(ids):
        if item in index:
            raise ValueError(f"{what} '{item}' is defined twice")
        index[item] = position
    return index
