"""The network and the pending work as the core sees them, built from the database's rows.

The service and the simulator share one scheduler: here the registered sites become a
`Network` (regions, links and user locations from the configured topology, the base network),
the tasks waiting for a place become a `Workload`, and `Placement` with the batch assignment of
`computility.scheduler.batch` decides, exactly as in a simulated replay. Prices, energy and carbon
of quotes and bills come from the same `CostModel`, so a run that matches its quote is billed
the quoted amount to the micro-unit.

Choices made here (see docs/control-plane.md):

- A site's region must be one of the topology's regions; its electricity and carbon curves
  default to those of the topology's sites in that region (flat figures if it has none).
- An accelerator request with several choices is placed on the devices of every choice whose
  count equals the first choice's count (the workload model has one device count per task).
- Time 0 of the cost model is `EPOCH`; a price at wall time ``t`` reads the curves at ``t``.
- A dataset is held by every registered site that declares it (online or not: a site that is
  away keeps its disks), at the largest size any of them declares. A task reads its spec's first
  input: ``residency: local`` keeps it to the holders; ``residency: any`` may run elsewhere and
  is charged the cost model's transfer (time before the start, egress on the bill). A dataset no
  site holds makes the task wait, as the core's feasibility rules it out everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from computility.domain.cost import CostModel, Price, Transfer
from computility.domain.devices import DeviceType, default_catalogue
from computility.domain.network import Dataset, Network
from computility.domain.site import MILLI, Pool, Site
from computility.domain.speed import SpeedModel
from computility.domain.throughput import default_throughput_table
from computility.domain.workload import ANY_GPU, NO_INDEX, Workload
from computility.scheduler.candidates import SiteRules
from computility.scheduler.placement import Placement
from computility.wire.spec import TaskSpec

EPOCH = datetime.fromisoformat("2024-01-01T00:00:00+08:00")
EPOCH_TS = EPOCH.timestamp()
DEFAULT_TIMEOUT_S = 24 * 3600.0
"""A task that names no timeout is stopped after a day; its quote's maximum assumes that."""


def cost_time(wall_ts: float) -> float:
    """Seconds since `EPOCH`: where a wall-clock time falls on the cost model's curves."""
    return wall_ts - EPOCH_TS


@dataclass(frozen=True, slots=True)
class SiteRow:
    id: str
    owner: str
    region: str
    lat: float
    lon: float
    pue: float
    electricity_price_micro: int
    carbon_kg_per_kwh: float
    electricity_curve: tuple[int, ...] | None
    carbon_curve: tuple[float, ...] | None
    allowed_tenants: frozenset[str] | None
    online: bool
    datasets: tuple[tuple[str, float], ...] = ()
    """(id, GB) of each dataset the site holds."""


@dataclass(frozen=True, slots=True)
class PoolRow:
    site: str
    pool: str
    device: str
    count: int
    devices_per_node: int
    price_micro: int
    free_units: int


class Demand(NamedTuple):
    """What one task needs, as the scheduler counts it (from its spec).

    A named tuple: a scheduling cycle builds one per pending task (10^5 of them)."""

    cpus: int
    gpu_milli: int
    devices: tuple[str, ...] | None
    run_s: float
    timeout_s: float
    ref_device: str | None
    policy: str
    location: str | None
    rules: dict[str, Any] | None
    precision: str
    dataset: str | None = None
    data_local: bool = False
    deadline_at: float | None = None
    """UNIX seconds the task should finish by (None: no deadline)."""


def deadline_of(spec: TaskSpec, submitted_ts: float) -> float | None:
    """The spec's deadline as UNIX seconds: an ISO time as stated, a duration from submission."""
    p = spec.placement
    if p.deadline_at is not None:
        return p.deadline_at.timestamp()
    if p.deadline_in_s is not None:
        return submitted_ts + p.deadline_in_s
    return None


def demand_of(spec: TaskSpec, submitted_ts: float | None = None) -> Demand:
    """The scheduler's view of a spec: units, allowed devices, expected and longest run, and
    the deadline (a relative one counted from `submitted_ts`; none without it)."""
    catalogue = default_catalogue()
    r = spec.resources
    gpu_milli = 0
    devices: tuple[str, ...] | None = None
    ref: str | None = None
    if r.accelerators is not None:
        first = r.accelerators.choices[0]
        gpu_milli = first.count * MILLI
        ids: list[str] = []
        for choice in r.accelerators.choices:
            if choice.count == first.count:
                ids.extend(d.id for d in catalogue.match(choice.device))
        devices = tuple(sorted(set(ids)))
        ref = catalogue.match(first.device)[0].id
    if r.estimate_on is not None:
        ref = catalogue.match(r.estimate_on)[0].id
    timeout = spec.timeout_s or DEFAULT_TIMEOUT_S
    run = r.estimate_s or timeout
    p = spec.placement
    rules: dict[str, Any] = {}
    for name in ("regions", "sites", "owners"):
        value = getattr(p, name)
        if value is not None:
            rules[name] = sorted(value)
    if p.exclude_sites:
        rules["exclude_sites"] = sorted(p.exclude_sites)
    if p.max_latency_ms is not None:
        rules["max_latency_ms"] = p.max_latency_ms
    # The workload model reads one dataset per task: the first input.
    data = spec.inputs[0] if spec.inputs else None
    return Demand(
        cpus=r.cpus, gpu_milli=gpu_milli, devices=devices, run_s=min(run, timeout),
        timeout_s=timeout, ref_device=ref, policy=p.policy, location=p.user_location,
        rules=rules or None, precision=r.precision,
        dataset=data.dataset if data else None,
        data_local=data is not None and data.residency == "local",
        deadline_at=None if submitted_ts is None else deadline_of(spec, submitted_ts),
    )


def site_rules(rules: Mapping[str, Any] | None) -> SiteRules | None:
    if not rules:
        return None

    def fs(name: str) -> frozenset[str] | None:
        v = rules.get(name)
        return None if v is None else frozenset(v)

    return SiteRules(
        regions=fs("regions"), sites=fs("sites"), owners=fs("owners"),
        exclude_sites=fs("exclude_sites") or frozenset(),
        max_latency_ms=rules.get("max_latency_ms"),
    )


class LiveNetwork:
    """The registered sites as one `Network`, with pool rows keyed by (site, pool)."""

    def __init__(self, base: Network, sites: Sequence[SiteRow], pools: Sequence[PoolRow]) -> None:
        catalogue = default_catalogue()
        by_site: dict[str, list[PoolRow]] = {}
        for p in pools:
            by_site.setdefault(p.site, []).append(p)
        built: list[Site] = []
        kept: list[SiteRow] = []
        for s in sites:
            rows = by_site.get(s.id, [])
            if not rows:
                continue
            built.append(Site(
                id=s.id, region=s.region, owner=s.owner, pue=s.pue, lat=s.lat, lon=s.lon,
                electricity_price_per_kwh=s.electricity_price_micro,
                carbon_kg_per_kwh=s.carbon_kg_per_kwh,
                electricity_price_curve=tuple(s.electricity_curve or ()),
                carbon_curve=tuple(s.carbon_curve or ()),
                pools=tuple(
                    Pool(id=p.pool, device=catalogue.get(p.device), count=p.count,
                         price_per_cu_hour=p.price_micro, devices_per_node=p.devices_per_node)
                    for p in rows
                ),
            ))
            kept.append(s)
        self.sites = tuple(kept)
        self.empty = not built
        holders: dict[str, list[str]] = {}
        self.dataset_gb: dict[str, float] = {}
        """GB of each dataset some registered site holds (the largest size declared)."""
        for s in kept:
            for name, size in s.datasets:
                holders.setdefault(name, []).append(s.id)
                self.dataset_gb[name] = max(size, self.dataset_gb.get(name, 0.0))
        self.network = Network(
            name="live", regions=base.regions, sites=tuple(built), links=base.links,
            datasets=tuple(Dataset(name, self.dataset_gb[name], tuple(sorted(ids)))
                           for name, ids in sorted(holders.items())),
            demand=base.demand, currency=base.currency,
            utc_offset_minutes=base.utc_offset_minutes,
            intra_region_latency_ms=base.intra_region_latency_ms,
            intra_region_bandwidth_gbps=base.intra_region_bandwidth_gbps,
        )
        self.pool_keys: list[tuple[str, str]] = [(s.id, p.id) for s, p in self.network.pools]
        self.row_of = {key: i for i, key in enumerate(self.pool_keys)}
        self.devices: list[DeviceType] = [p.device for _, p in self.network.pools]
        site_index = {s.id: i for i, s in enumerate(self.sites)}
        pool_site = [site_index[s] for s, _ in self.pool_keys]
        self.pool_site = np.asarray(pool_site, np.int64)
        self.online = np.array([self.sites[i].online for i in pool_site], np.bool_)
        free = {(p.site, p.pool): p.free_units for p in pools}
        self._free_reported = [free.get(key, 0) for key in self.pool_keys]
        self.cost = CostModel(self.network, EPOCH)
        self.location_ids = tuple(d.id for d in base.demand)
        self._location = {d: i for i, d in enumerate(self.location_ids)}

    def free_of(self, row: int) -> int:
        """Free units the site's agent reported for pool `row` when the network was built."""
        return self._free_reported[row]

    def pool_row(self, site: str, pool: str) -> int | None:
        return self.row_of.get((site, pool))

    def allowed_pools(self, tenant: str) -> npt.NDArray[np.bool_]:
        """Pools of online sites that let `tenant` use them."""
        ok = np.array(
            [s.allowed_tenants is None or tenant in s.allowed_tenants for s in self.sites],
            np.bool_,
        )
        out: npt.NDArray[np.bool_] = self.online & ok[self.pool_site]
        return out

    def workload(
        self,
        ids: Sequence[int],
        demands: Sequence[Demand],
        tenants: Sequence[str],
        now_ts: float,
    ) -> Workload:
        """The tasks `ids` as a workload submitted at `now_ts`, in the order given."""
        return self.workload_from_columns(
            ids, [d.cpus for d in demands], [d.gpu_milli for d in demands],
            [d.devices for d in demands], [d.run_s for d in demands],
            [d.timeout_s for d in demands], [d.ref_device for d in demands],
            [d.location for d in demands], tenants, now_ts,
            [d.dataset for d in demands], [d.data_local for d in demands],
            [d.deadline_at for d in demands])

    def workload_from_columns(
        self,
        ids: Sequence[int],
        cpus: Sequence[int],
        gpu_milli: Sequence[int],
        devices: Sequence[tuple[str, ...] | None],
        run_s: Sequence[float],
        timeout_s: Sequence[float],
        ref_device: Sequence[str | None],
        location: Sequence[str | None],
        tenants: Sequence[str],
        now_ts: float,
        dataset: Sequence[str | None] | None = None,
        data_local: Sequence[bool] | None = None,
        deadline_at: Sequence[float | None] | None = None,
    ) -> Workload:
        """`workload` from per-task columns (a scheduling cycle reads them so).

        `dataset` names each task's input (None: none) and `data_local` whether it may not move;
        its size is the registered one (0 for a dataset no site holds: it runs nowhere anyway).
        `deadline_at` is each task's deadline in UNIX seconds (None: none), put on the cost
        model's time axis as the workload's `deadline`, where placement reads it.
        """
        sets: dict[tuple[str, ...] | None, int] = {None: ANY_GPU}
        refs: dict[str | None, int] = {None: NO_INDEX}
        locs: dict[str | None, int] = {None: NO_INDEX}
        tenant_names: dict[str, int] = {}
        gpu_types = [sets.setdefault(d, len(sets) - 1) for d in devices]
        ref = [refs.setdefault(r, len(refs) - 1) for r in ref_device]
        loc = [locs[x] if x in locs else locs.setdefault(x, self._location.get(x or "", NO_INDEX))
               for x in location]
        ten = [tenant_names.setdefault(t, len(tenant_names)) for t in tenants]
        del sets[None], refs[None]
        n = len(ids)
        names: dict[str | None, int] = {None: NO_INDEX}
        data = [NO_INDEX] * n if dataset is None else [
            names[x] if x in names else names.setdefault(x, len(names) - 1) for x in dataset]
        del names[None]
        sizes = self.dataset_gb
        data_gb = [0.0] * n if dataset is None else [sizes.get(x, 0.0) if x else 0.0
                                                     for x in dataset]
        now = cost_time(now_ts)
        deadline = None  # none at all: the workload's default (NaN), without a pass over tasks
        if deadline_at is not None and list(deadline_at).count(None) != n:
            deadline = np.array([np.nan if x is None else cost_time(x) for x in deadline_at])
        return Workload.from_columns(
            "live",
            ids=np.asarray(ids, np.int64),
            submit=np.full(n, now),
            run=np.asarray(run_s, np.float64),
            requested=np.asarray(timeout_s, np.float64),
            cpus=np.asarray(cpus, np.int64),
            gpu_milli=np.asarray(gpu_milli, np.int64),
            gpu_types=np.asarray(gpu_types, np.int32),
            gpu_type_sets=tuple(k for k in sets if k is not None),
            tenant=np.asarray(ten, np.int32),
            tenants=tuple(tenant_names) or ("default",),
            location=np.asarray(loc, np.int32),
            locations=self.location_ids,
            ref_device=np.asarray(ref, np.int32),
            ref_devices=tuple(k for k in refs if k is not None),
            dataset=np.asarray(data, np.int32),
            datasets=tuple(k for k in names if k is not None),
            data_gb=np.asarray(data_gb, np.float64),
            data_local=np.zeros(n, np.bool_) if data_local is None
            else np.asarray(data_local, np.bool_),
            deadline=deadline,
        )

    def speed(self, workload: Workload) -> SpeedModel:
        device_of = {d.id: d for d in default_catalogue()}
        return SpeedModel(workload, self.devices, device_of, default_throughput_table())

    def placement(
        self, workload: Workload, policy: str, speed: SpeedModel,
        rules: dict[int, SiteRules] | None = None,
    ) -> Placement:
        return Placement(self.network, workload, policy, self.cost, speed, rules=rules)

    def price(
        self, pools: Iterable[int], units: Iterable[int], run_s: Iterable[float], start_ts: float,
        move: Transfer | None = None,
    ) -> Price:
        """What running there costs; with `move`, plus the egress of moving the input there."""
        return self.cost.price(
            np.fromiter(pools, np.int64), np.fromiter(units, np.int64),
            np.fromiter(run_s, np.float64), cost_time(start_ts),
            0.0 if move is None else move.moved_gb, 0.0 if move is None else move.egress_per_gb,
        )

    def data_move(self, dataset: str | None, local: bool, pools: Sequence[int]) -> Transfer:
        """Moving a task's input to each of `pools` from the nearest copy, as placement prices
        it (the cost model's transfer). Nothing moves for a task without a dataset, for
        ``residency: local`` data (it runs only where a copy is), or for data no site holds."""
        n = len(pools)
        rows = np.asarray(pools, np.int64)
        if dataset is None or local or dataset not in self.dataset_gb or n == 0:
            return Transfer(np.full(n, NO_INDEX, np.int64), np.zeros(n), np.zeros(n),
                            np.zeros(n))
        net = self.network
        holders = sorted({net.region_index(net.site(s).region)
                          for s in net.dataset(dataset).sites})
        return self.cost.transfer(holders, self.cost.pool_region[rows], self.dataset_gb[dataset])

    def dataset_reason(self, d: Demand) -> str | None:
        """Why a task's input keeps it from every site, in a user's words (None: it does not)."""
        if d.dataset is None:
            return None
        if d.dataset not in self.dataset_gb:
            return f"dataset '{d.dataset}' is not held by any site"
        if d.data_local:
            holders = ", ".join(self.network.dataset(d.dataset).sites)
            return (f"dataset '{d.dataset}' may not move (residency: local), and no site "
                    f"holding it ({holders}) can take this task")
        return None


@dataclass(frozen=True, slots=True)
class Bill:
    """A priced run in whole micro-units, rounded once per component."""

    cu_hours: float
    device_hours: float
    kwh: float
    carbon_kg: float
    compute_micro: int
    energy_micro: int
    network_micro: int

    @property
    def total_micro(self) -> int:
        return self.compute_micro + self.energy_micro + self.network_micro


def bills(price: Price, device_hours: npt.ArrayLike) -> list[Bill]:
    """Round each component half-up to the micro-unit (quotes and bills share it: they agree)."""
    def micro(a: npt.NDArray[np.float64]) -> list[int]:
        # Rounded to a millionth of a micro-unit first, so float noise never flips a half.
        exact = np.round(np.asarray(a, np.float64), 6)
        out: list[int] = np.floor(exact + 0.5).astype(np.int64).tolist()
        return out

    compute, energy, egress = micro(price.compute), micro(price.energy), micro(price.egress)
    dh = np.broadcast_to(np.asarray(device_hours, np.float64), price.cu_hours.shape).tolist()
    return [
        Bill(float(cu), float(h), float(k), float(c), m1, m2, m3)
        for cu, h, k, c, m1, m2, m3 in zip(
            np.atleast_1d(price.cu_hours).tolist(), np.atleast_1d(dh).tolist(),
            np.atleast_1d(price.kwh).tolist(), np.atleast_1d(price.carbon_kg).tolist(),
            np.atleast_1d(compute).tolist(), np.atleast_1d(energy).tolist(),
            np.atleast_1d(egress).tolist(), strict=True,
        )
    ]
