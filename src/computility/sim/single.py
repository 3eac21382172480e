"""`--network single`: one site that is one pool of processors, plus accelerator pools if asked.

The machine of a classic HPC log. Its size comes from the command line, else from the trace's own
header, so an SWF log replays on the machine it was recorded on with no other flag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from computility.domain.devices import Catalogue
from computility.domain.errors import UsageError
from computility.domain.money import to_micro
from computility.domain.network import Network, Region
from computility.domain.site import Pool, Site
from computility.domain.workload import Workload

# Estimates for a lone site with no tariff of its own, written down before any policy is measured:
# a price per CU-hour in line with Chinese public-cloud list prices for general compute and
# A100-class GPUs (about 1 CNY per CU-hour), a typical PUE, an industrial electricity price and the
# national grid's average emission factor (MEE, 2022: 0.5703 t CO2 / MWh).
SINGLE_PRICE_PER_CU_HOUR = 0.80
SINGLE_PUE = 1.3
SINGLE_ELECTRICITY_PER_KWH = 0.60
SINGLE_CARBON_KG_PER_KWH = 0.5703

_GPU_ARG = re.compile(r"^\s*([^:\s]+)\s*:\s*(\d+)\s*$")


def parse_gpu_args(values: Sequence[str]) -> list[tuple[str, int]]:
    """``TYPE:N`` strings (repeatable, or comma-separated) -> [(TYPE, N)], validated."""
    out: list[tuple[str, int]] = []
    for value in values:
        for part in value.split(","):
            m = _GPU_ARG.match(part)
            if not m or int(m.group(2)) <= 0:
                raise UsageError(
                    f"--gpus: expected TYPE:N with N a positive integer (e.g. A100-80GB:8), "
                    f"got '{part}'"
                )
            out.append((m.group(1), int(m.group(2))))
    return out


def processors_for(workload: Workload, cpus: int | None) -> int:
    """Processor count of the single machine: --cpus, else MaxProcs, else MaxNodes."""
    if cpus is not None:
        if cpus <= 0:
            raise UsageError(f"--cpus: expected a positive integer, got {cpus}")
        return cpus
    for key in ("MaxProcs", "MaxNodes"):
        raw = workload.header.get(key)
        if raw is not None:
            try:
                value = int(raw.split()[0])
            except (ValueError, IndexError):
                continue
            if value > 0:
                return value
    raise UsageError(
        f"--network single needs the machine size: give --cpus N ({workload.name} has no "
        "MaxProcs or MaxNodes header)"
    )


def single_site(
    workload: Workload,
    catalogue: Catalogue,
    cpus: int | None = None,
    gpus: Sequence[tuple[str, int]] = (),
) -> Site:
    """The one-site network for `workload`, with a CPU pool and one pool per ``--gpus`` entry."""
    price = to_micro(SINGLE_PRICE_PER_CU_HOUR)
    pools = [Pool("cpu", catalogue.default_cpu, processors_for(workload, cpus), price)]
    seen: set[str] = set()
    for name, count in gpus:
        matches = catalogue.match(name)
        if len(matches) > 1:
            variants = ", ".join(d.id for d in matches)
            raise UsageError(f"--gpus: '{name}' is a family ({variants}): name one of them")
        device = matches[0]
        if device.id in seen:
            raise UsageError(f"--gpus: {device.id} given twice")
        if not device.is_accelerator:
            raise UsageError(f"--gpus: '{name}' is a CPU, not an accelerator")
        seen.add(device.id)
        pools.append(Pool(device.id, device, count, price))
    return lone_site("single", pools)


def lone_site(site_id: str, pools: Sequence[Pool]) -> Site:
    """A site of region ``local`` with the estimated PUE, electricity price and carbon intensity
    above: the facility of any one-machine replay (this module's, Gavel's cluster)."""
    return Site(
        id=site_id,
        region="local",
        owner="operator",
        pools=tuple(pools),
        pue=SINGLE_PUE,
        electricity_price_per_kwh=to_micro(SINGLE_ELECTRICITY_PER_KWH),
        carbon_kg_per_kwh=SINGLE_CARBON_KG_PER_KWH,
    )


SINGLE_NETWORK_NAME = "single"


def single_network(site: Site) -> Network:
    """The one-site `Network` around `site`: one region of the same name, no links, no data.

    The shape `computility network show --network single` shows and synthetic workloads for
    ``--network single`` are drawn against.
    """
    region = Region(site.region, site.region, 0.0, 0.0)
    return Network(name=SINGLE_NETWORK_NAME, regions=(region,), sites=(site,), links=())
