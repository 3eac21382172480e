"""Sites and their pools: where work can run, and what a unit of it costs in money and power.

A pool is a set of identical devices; it is the smallest thing a task is placed on. Prices are set
per pool in micro-units per CU-hour, so one tariff covers any device on one scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from computility.domain.devices import DeviceType

MILLI = 1000
"""Accelerator pools count thousandths of a device, so fractional shares fit the same queue."""

HOURS_PER_DAY = 24
HOURS_PER_YEAR = 8760
CURVE_LENGTHS = (HOURS_PER_DAY, HOURS_PER_YEAR)
"""An hourly curve is a typical day or a (non-leap) year of hours, nothing in between."""


@dataclass(frozen=True, slots=True)
class Pool:
    """`count` devices of one type (cores, for a CPU pool) at one price.

    Attributes:
        id: unique within its site.
        device: the catalogue entry of every device in the pool.
        count: how many devices (cores for a CPU pool).
        price_per_cu_hour: micro-units of currency per CU-hour of use.
        devices_per_node: the node shape (devices, or cores for a CPU pool, on one machine):
            a task that needs one node must fit in this many; ``count`` is a multiple of it.
    """

    id: str
    device: DeviceType
    count: int
    price_per_cu_hour: int
    devices_per_node: int = 1

    def __post_init__(self) -> None:
        if self.count <= 0:
            raise ValueError(f"pool '{self.id}': count must be positive, got {self.count}")
        if self.devices_per_node <= 0 or self.count % self.devices_per_node:
            raise ValueError(
                f"pool '{self.id}': devices_per_node must be a positive divisor of count "
                f"{self.count}, got {self.devices_per_node}"
            )
        if self.price_per_cu_hour < 0:
            raise ValueError(f"pool '{self.id}': price must not be negative")

    @property
    def is_cpu(self) -> bool:
        return not self.device.is_accelerator

    @property
    def units(self) -> int:
        """Scheduling units: cores for CPU pools, thousandths of a device for accelerators."""
        return self.count if self.is_cpu else self.count * MILLI

    @property
    def cu_per_unit(self) -> float:
        return self.device.cu if self.is_cpu else self.device.cu / MILLI

    @property
    def watts_per_unit(self) -> float:
        return self.device.tdp_w if self.is_cpu else self.device.tdp_w / MILLI

    @property
    def total_cu(self) -> float:
        return self.device.cu * self.count

    @property
    def nodes(self) -> int:
        """How many machines the pool is made of."""
        return self.count // self.devices_per_node


@dataclass(frozen=True, slots=True)
class Site:
    """One facility with one owner in one region, behind one execution backend.

    Attributes:
        id: unique in the network.
        region: the region (cluster) it belongs to.
        owner: who provides it.
        pools: its pools, in a fixed order (pool indices refer to it).
        pue: power usage effectiveness: facility energy / IT energy (>= 1).
        electricity_price_per_kwh: micro-units per kWh of facility energy.
        carbon_kg_per_kwh: grid carbon intensity, kg CO2e per kWh.
        lat: latitude of the facility, degrees north (0 where unknown, as for a local site).
        lon: longitude, degrees east.
        electricity_price_curve: micro-units per kWh for each hour of a typical day (24 values)
            or of a year (8760); empty means flat at ``electricity_price_per_kwh``, 24 values.
            ``computility.domain.network.hour_index`` maps a simulated time to an entry.
        carbon_curve: kg CO2e per kWh per hour, the same shape rules; empty means flat at
            ``carbon_kg_per_kwh``.
    """

    id: str
    region: str
    owner: str
    pools: tuple[Pool, ...]
    pue: float
    electricity_price_per_kwh: int
    carbon_kg_per_kwh: float
    lat: float = 0.0
    lon: float = 0.0
    electricity_price_curve: tuple[int, ...] = ()
    carbon_curve: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError(f"site '{self.id}' has no pools")
        if self.pue < 1.0:
            raise ValueError(f"site '{self.id}': PUE must be at least 1, got {self.pue}")
        # A site built for one machine (sim.single) names only flat values; the curves that
        # placement reads are filled from them, so every site answers the same questions.
        if not self.electricity_price_curve:
            flat_price = (self.electricity_price_per_kwh,) * HOURS_PER_DAY
            object.__setattr__(self, "electricity_price_curve", flat_price)
        if not self.carbon_curve:
            object.__setattr__(self, "carbon_curve", (self.carbon_kg_per_kwh,) * HOURS_PER_DAY)
        for name, curve in (
            ("electricity_price_curve", self.electricity_price_curve),
            ("carbon_curve", self.carbon_curve),
        ):
            if len(curve) not in CURVE_LENGTHS:
                raise ValueError(
                    f"site '{self.id}': {name} must have 24 or 8760 values, got {len(curve)}"
                )
            if min(curve) < 0:
                raise ValueError(f"site '{self.id}': {name} must not be negative")

    @property
    def total_cu(self) -> float:
        return sum(p.total_cu for p in self.pools)
