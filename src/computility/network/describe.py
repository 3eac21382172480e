"""A network as plain data, for `computility network show --json` and its table.

The shape is pinned by ``schemas/cli/network-show.schema.json``; scripts rely on it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from computility.domain.money import from_micro
from computility.domain.network import Network


def describe(network: Network) -> dict[str, Any]:
    """Sites, pools, links, datasets and demand locations, money as decimal currency."""
    sites = []
    devices: Counter[str] = Counter()
    for site in network.sites:
        pools = []
        for pool in site.pools:
            devices[pool.device.id] += pool.count
            pools.append({
                "id": pool.id,
                "device": pool.device.id,
                "count": pool.count,
                "devices_per_node": pool.devices_per_node,
                "cu": round(pool.total_cu, 6),
                "price_per_cu_hour": from_micro(pool.price_per_cu_hour),
            })
        sites.append({
            "id": site.id,
            "region": site.region,
            "owner": site.owner,
            "pue": site.pue,
            "electricity_price_per_kwh": from_micro(site.electricity_price_per_kwh),
            "carbon_kg_per_kwh": round(site.carbon_kg_per_kwh, 6),
            "cu": round(site.total_cu, 6),
            "pools": pools,
        })
    return {
        "name": network.name,
        "currency": network.currency,
        "regions": [r.id for r in network.regions],
        "sites": sites,
        "links": [
            {"from": link.src, "to": link.dst, "latency_ms": round(link.latency_ms, 3),
             "bandwidth_gbps": link.bandwidth_gbps,
             "egress_per_gb": from_micro(link.egress_per_gb)}
            for link in network.links
        ],
        "datasets": [
            {"id": d.id, "size_gb": d.size_gb, "sites": list(d.sites)} for d in network.datasets
        ],
        "demand": [
            {"id": d.id, "name": d.name,
             "latency_ms": {k: round(v, 3) for k, v in d.latency_ms.items()}}
            for d in network.demand
        ],
        "totals": {
            "sites": len(network.sites),
            "pools": sum(len(s.pools) for s in network.sites),
            "cu": round(sum(s.total_cu for s in network.sites), 6),
            "devices": dict(sorted(devices.items())),
        },
    }
