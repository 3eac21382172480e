"""Sites and their pools: where work can run, and what a unit of it costs in money and power.

A pool is a set of identical devices; it is the smallest thing a task is placed on. Prices are set
per pool in micro-units per CU-hour, so one tariff covers any device on one scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from computility.domain.devices import DeviceType

MILLI = 1000
"""Accelerator pools count thousandths of a device, so fractional shares fit the same queue."""


@dataclass(frozen=True, slots=True)
class Pool:
    """`count` devices of one type (cores, for a CPU pool) at one price.

    Attributes:
        id: unique within its site.
        device: the catalogue entry of every device in the pool.
        count: how many devices (cores for a CPU pool).
        price_per_cu_hour: micro-units of currency per CU-hour of use.
    """

    id: str
    device: DeviceType
    count: int
    price_per_cu_hour: int

    def __post_init__(self) -> None:
        if self.count <= 0:
            raise ValueError(f"pool '{self.id}': count must be positive, got {self.count}")
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
    """

    id: str
    region: str
    owner: str
    pools: tuple[Pool, ...]
    pue: float
    electricity_price_per_kwh: int
    carbon_kg_per_kwh: float

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError(f"site '{self.id}' has no pools")
        if self.pue < 1.0:
            raise ValueError(f"site '{self.id}': PUE must be at least 1, got {self.pue}")

    @property
    def total_cu(self) -> float:
        return sum(p.total_cu for p in self.pools)
