"""``generated:N`` networks: seeded, synthetic, and wide enough to stress placement.

The contract (CONTRACT.md, ``--synthetic N``) asks for >= 10 device types, >= 30 regions and
prices spread >= 3x, so that policies have real choices to make; this module guarantees all three
for every N and seed rather than hoping a random draw gives them. Randomness comes from
`random.Random(seed)`, whose sequence Python keeps stable across versions, so a seed names one
network everywhere.
"""

from __future__ import annotations

import math
import random
from typing import Final

from computility.domain.devices import Catalogue, default_catalogue
from computility.domain.errors import UsageError
from computility.domain.money import to_micro
from computility.domain.network import Dataset, DemandLocation, Link, Network, Region
from computility.domain.site import Pool, Site
from computility.network.geo import great_circle_km, latency_ms

MIN_REGIONS: Final = 30
MIN_ACCELERATOR_POOLS: Final = 10
PRICE_FACTOR_RANGE: Final = (0.4, 2.5)  # spread 6.25x, pinned at both ends
BASE_PRICE_PER_CU_HOUR: Final = 0.4  # CNY, the same scale as the default network's estimates
DEMAND_LOCATIONS: Final = 8
# Daily shapes (mean 1) so that shifting in time matters: prices peak in the evening, carbon
# dips at midday when solar is high.
_PRICE_SHAPE: Final = tuple(1 + 0.25 * math.cos(2 * math.pi * (h - 19) / 24) for h in range(24))
_CARBON_SHAPE: Final = tuple(1 + 0.15 * math.cos(2 * math.pi * (h - 1) / 24) for h in range(24))


def parse_generated(spec: str) -> int:
    """N of ``generated:N`` (a whole number >= 1).

    Raises:
        UsageError: anything else after ``generated:``.
    """
    _, _, text = spec.partition(":")
    # ASCII digits only: str.isdigit() also admits "²" and "١", which int() refuses.
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise UsageError(f"--network {spec}: expected generated:N with N a whole number >= 1")
    return int(text)


def generated_network(n: int, seed: int = 0, catalogue: Catalogue | None = None) -> Network:
    """A network of `n` sites over max(30, ceil(n / 3)) regions, the same for the same seed.

    Site ``i`` is in region ``i mod R``, so for n >= 30 every region has a site; with fewer
    sites the remaining regions are places with links but no compute. Every site has one CPU pool
    and one to three accelerator pools; accelerator types cycle through a seeded order of the
    catalogue so that at least ten pools, and therefore ten types, always exist.
    """
    if n < 1:
        raise UsageError(f"generated:{n}: expected at least one site")
    rng = random.Random(seed)
    devices = catalogue if catalogue is not None else default_catalogue()
    cpus = [d for d in devices if not d.is_accelerator]
    accelerators = [d for d in devices if d.is_accelerator]
    rng.shuffle(accelerators)
    regions = tuple(
        Region(f"R{i:02d}", f"region {i}", round(rng.uniform(20, 46), 2),
               round(rng.uniform(85, 125), 2))
        for i in range(max(MIN_REGIONS, math.ceil(n / 3)))
    )  # fmt: skip
    per_site = [rng.randint(1, 3) for _ in range(n)]
    for extra in range(max(0, MIN_ACCELERATOR_POOLS - sum(per_site))):
        per_site[extra % n] += 1
    factors = [
        math.exp(rng.uniform(*map(math.log, PRICE_FACTOR_RANGE))) for _ in range(n + sum(per_site))
    ]
    factors[min(range(len(factors)), key=factors.__getitem__)] = PRICE_FACTOR_RANGE[0]
    factors[max(range(len(factors)), key=factors.__getitem__)] = PRICE_FACTOR_RANGE[1]
    prices = iter(to_micro(BASE_PRICE_PER_CU_HOUR * f) for f in factors)
    sites = []
    next_accelerator = 0
    for i in range(n):
        cpu = rng.choice(cpus)
        pools = [Pool("cpu", cpu, 64 * rng.randint(8, 64), next(prices), 64)]
        for j in range(per_site[i]):
            device = accelerators[(next_accelerator + j) % len(accelerators)]
            per_node = rng.choice((4, 8))
            pools.append(Pool(f"acc{j}", device, per_node * rng.randint(2, 32), next(prices),
                              per_node))  # fmt: skip
        next_accelerator += per_site[i]
        region = regions[i % len(regions)]
        price, carbon = rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.8)
        price_curve = tuple(to_micro(price * s) for s in _PRICE_SHAPE)
        sites.append(
            Site(
                id=f"S{i:03d}", region=region.id, owner=f"owner-{rng.randint(1, 5)}",
                pools=tuple(pools), pue=round(rng.uniform(1.1, 1.5), 2),
                electricity_price_per_kwh=round(sum(price_curve) / 24),
                carbon_kg_per_kwh=carbon, lat=region.lat, lon=region.lon,
                electricity_price_curve=price_curve,
                carbon_curve=tuple(round(carbon * s, 4) for s in _CARBON_SHAPE),
            )
        )  # fmt: skip
    return Network(
        name=f"generated:{n}",
        regions=regions,
        sites=tuple(sites),
        links=_links(regions, rng),
        datasets=tuple(
            Dataset(f"data{k}", float(rng.randint(10, 500)), (sites[rng.randrange(n)].id,))
            for k in range(min(5, n))
        ),
        demand=_demand(regions, rng),
    )


def _links(regions: tuple[Region, ...], rng: random.Random) -> tuple[Link, ...]:
    links = []
    for a in regions:
        for b in regions:
            if a.id < b.id:
                km = great_circle_km(a.lat, a.lon, b.lat, b.lon)
                bandwidth = float(rng.choice((100, 200, 400)))
                egress = to_micro(round(0.10 + 0.10 * km / 1000, 2))
                latency = round(latency_ms(km), 2)
                links.append(Link(a.id, b.id, latency, bandwidth, egress))
                links.append(Link(b.id, a.id, latency, bandwidth, egress))
    return tuple(links)


def _demand(regions: tuple[Region, ...], rng: random.Random) -> tuple[DemandLocation, ...]:
    locations = []
    for k in range(DEMAND_LOCATIONS):
        lat, lon = round(rng.uniform(20, 46), 2), round(rng.uniform(85, 125), 2)
        latency = {
            r.id: round(latency_ms(great_circle_km(lat, lon, r.lat, r.lon)), 2) for r in regions
        }
        locations.append(DemandLocation(f"U{k}", f"users {k}", lat, lon, latency))
    return tuple(locations)
