"""A site's pools as the agent offers them, and which cores and devices each task gets.

The control plane counts CPU pools in cores and accelerator pools in thousandths of a device
(``units`` of a lease); the agent keeps the concrete ids: the cores a task is pinned to and the
GPU ids in its ``CUDA_VISIBLE_DEVICES``. Ids are handed out lowest first and returned when the
task ends; a task whose units are not whole devices shares the device it is given.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from computility.agent.config import PoolConfig, SiteConfig
from computility.agent.hardware import Hardware
from computility.domain.devices import default_catalogue
from computility.domain.errors import BadInput

MILLI = 1000


@dataclass
class Pool:
    id: str
    device: str
    count: int
    devices_per_node: int
    price_per_cu_hour: float
    accelerator: bool
    ids: tuple[str, ...]  # concrete ids (cores or GPUs); empty: not pinned
    used_units: int = 0
    taken: dict[int, tuple[str, ...]] = field(default_factory=dict)  # attempt -> ids

    @property
    def capacity_units(self) -> int:
        return self.count * (MILLI if self.accelerator else 1)

    def wire(self) -> dict[str, object]:
        return {"id": self.id, "device": self.device, "count": self.count,
                "devices_per_node": self.devices_per_node,
                "price_per_cu_hour": self.price_per_cu_hour}


class Pools:
    """The pools of one site and what is in use; thread-safe."""

    def __init__(self, pools: list[Pool]) -> None:
        self._lock = threading.Lock()
        self.by_id = {p.id: p for p in pools}

    def free(self) -> dict[str, float]:
        """Free devices per pool, in the protocol's terms (cores; fractional accelerators)."""
        with self._lock:
            return {p.id: max(0, p.capacity_units - p.used_units) / (MILLI if p.accelerator
                                                                     else 1)
                    for p in self.by_id.values()}

    def take(self, attempt: int, pool_id: str, units: int) -> tuple[str, ...]:
        """Reserve `units` of the pool for `attempt`; the concrete ids it may use."""
        with self._lock:
            pool = self.by_id[pool_id]
            pool.used_units += units
            want = units if not pool.accelerator else max(1, -(-units // MILLI))
            busy = {i for ids in pool.taken.values() for i in ids}
            free_ids = [i for i in pool.ids if i not in busy]
            if len(free_ids) < want:  # shared (fractional) or over-declared: reuse ids
                free_ids += [i for i in pool.ids if i not in free_ids]
            chosen = tuple(free_ids[:want]) if pool.ids else ()
            pool.taken[attempt] = chosen
            return chosen

    def restore(self, attempt: int, pool_id: str, units: int, ids: tuple[str, ...]) -> None:
        with self._lock:
            pool = self.by_id.get(pool_id)
            if pool is not None:
                pool.used_units += units
                pool.taken[attempt] = ids

    def give_back(self, attempt: int, pool_id: str, units: int) -> None:
        with self._lock:
            pool = self.by_id.get(pool_id)
            if pool is not None and attempt in pool.taken:
                pool.used_units = max(0, pool.used_units - units)
                del pool.taken[attempt]


def resolve_pools(site: SiteConfig, hardware: Hardware,
                  discovered: list[dict[str, object]] | None = None) -> list[Pool]:
    """The site's pools: as configured, counts filled in from what the machine or cluster has.

    With no pools configured, a local site offers its cores and each catalogued GPU model;
    a cluster site (``discovered``, e.g. Slurm's nodes) offers what its scheduler reports.
    """
    catalogue = default_catalogue()
    configs: list[PoolConfig] = list(site.pools)
    if not configs:
        if discovered:
            configs = [PoolConfig.model_validate(d) for d in discovered]
        else:
            configs = [PoolConfig(id="cpu", device=hardware.cpu_device,
                                  count=len(hardware.cores))]
            models = sorted({g.device for g in hardware.gpus if g.device})
            for model in models:
                found = tuple(str(g.index) for g in hardware.gpus if g.device == model)
                configs.append(PoolConfig(id=model.lower(), device=model, count=len(found),
                                          devices=found))
    pools = []
    for i, c in enumerate(configs):
        try:
            device = catalogue.get(c.device)
        except BadInput:
            raise BadInput(f"site {site.id}: pools[{i}].device: expected a catalogue device id, "
                           f"got '{c.device}'") from None
        accelerator = device.is_accelerator
        count = c.count
        ids: tuple[str, ...]
        if accelerator:
            local = [str(g.index) for g in hardware.gpus if g.device == device.id]
            ids = c.devices if c.devices is not None else tuple(local)
            count = count if count is not None else len(ids)
        else:
            count = count if count is not None else len(hardware.cores)
            real = tuple(str(core) for core in hardware.cores)
            # Pin only where the declared cores exist; emulated capacity is not pinned.
            ids = real if not site.emulated and count <= len(real) and not discovered else ()
        if count < 1:
            raise BadInput(f"site {site.id}: pool {c.id} has no {device.id} to offer here; "
                           "declare its count in the site config")
        pools.append(Pool(c.id, device.id, count, c.devices_per_node, c.price_per_cu_hour,
                          accelerator, ids))
    return pools
