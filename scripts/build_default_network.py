"""Write the embedded default network YAML from ../shared/data, so its facts are reproducible.

The output is ``src/computility/data/network-default.yaml``.

Facts come from ``national_topology/clusters.json`` (clusters, cities, PUE targets, electricity
price estimates, green shares, the latency model) and ``carbon_electricity`` (the hourly shape of
carbon intensity and price). Pool sizes, prices per CU-hour, bandwidths and egress prices are our
estimates and are written here, labelled as such, before any policy is measured.

Usage: ``.venv/bin/python scripts/build_default_network.py [--data DIR] [--out FILE]``
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import datetime, timedelta
from itertools import combinations
from pathlib import Path

from computility.domain.devices import default_catalogue
from computility.network.geo import IP_PRIVATE_EXTRA_MS, great_circle_km, latency_ms

ROOT = Path(__file__).resolve().parent.parent
SHAPE_ZONE = "KR"  # Electricity Maps zone whose hourly series shapes the curves
SHAPE_YEAR = 2023  # measured (0.7 % estimated hours), unlike IN-WE (100 % modelled)
SHAPE_UTC_OFFSET_H = 9  # KR local time; its hour h is mapped onto China's local hour h
CN_MEAN_G_PER_KWH = 513.0  # Electricity Maps CN yearly mean 2024 (clusters.json policy_targets)
CN_LOW_CARBON_SHARE = 0.31  # estimate: 2024 wind+solar 18 % (Ember) + hydro ~13 %
INTRA_LATENCY_MS = 1.0  # policy target for intra-city latency (clusters.json)

# Estimates: list price per device-hour (CNY) in the eastern hubs; CPU per core-hour.
DEVICE_HOUR_CNY = {
    "XEON-8380": 0.10, "EPYC-7763": 0.07, "KUNPENG-920": 0.035,
    "A100-80GB": 9.0, "A100-40GB": 7.0, "H100-SXM": 22.0, "H200-SXM": 28.0, "L40S": 7.5,
    "A10": 3.5, "T4": 1.8, "V100-32GB": 4.5, "V100-16GB": 3.8, "ASCEND-910B": 7.0,
    "RTX-4090": 2.8,
}  # fmt: skip
WEST_DISCOUNT = 0.85  # western hubs price below the coast (cheaper power and land)
# Estimates: (pool id, device, count, devices per node) per cluster.
POOLS = {
    "ZJK": [("cpu", "XEON-8380", 20480, 80), ("a100", "A100-80GB", 1024, 8),
            ("h100", "H100-SXM", 512, 8)],
    "YRD": [("cpu", "EPYC-7763", 25600, 128), ("h100", "H100-SXM", 1024, 8),
            ("l40s", "L40S", 512, 4)],
    "WUHU": [("cpu", "XEON-8380", 12800, 80), ("a100", "A100-40GB", 512, 8),
             ("a10", "A10", 512, 4)],
    "SG": [("cpu", "EPYC-7763", 12800, 128), ("ascend", "ASCEND-910B", 1024, 8),
           ("t4", "T4", 512, 8)],
    "TF": [("cpu", "XEON-8380", 16000, 80), ("ascend", "ASCEND-910B", 512, 8),
           ("a100", "A100-80GB", 512, 8)],
    "CQ": [("cpu", "KUNPENG-920", 12288, 128), ("v100", "V100-32GB", 512, 8),
           ("t4", "T4", 256, 8)],
    "HLGE": [("cpu", "EPYC-7763", 25600, 128), ("h100", "H100-SXM", 2048, 8),
             ("a100", "A100-80GB", 1024, 8)],
    "GA": [("cpu", "KUNPENG-920", 24576, 128), ("ascend", "ASCEND-910B", 2048, 8),
           ("v100", "V100-16GB", 512, 8)],
    "QY": [("cpu", "XEON-8380", 12800, 80), ("a100", "A100-40GB", 1024, 8),
           ("rtx4090", "RTX-4090", 512, 8)],
    "ZW": [("cpu", "EPYC-7763", 12800, 128), ("h200", "H200-SXM", 512, 8),
           ("a100", "A100-80GB", 512, 8)],
}  # fmt: skip


def link_estimates(km: float, same_hub: bool) -> tuple[float, float]:
    """Estimated (bandwidth Gbit/s, egress CNY/GB) of a private inter-cluster link."""
    bandwidth = 400.0 if same_hub else (200.0 if km < 1500 else 100.0)
    egress = round(0.10 + 0.10 * km / 1000.0, 2)
    return bandwidth, egress


def hourly_shape(path: Path, zone: str) -> list[float]:
    """Mean of `zone` per local hour of day, divided by its annual mean (24 values, mean 1)."""
    sums, counts = [0.0] * 24, [0] * 24
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            utc = datetime.fromisoformat(row["datetime_utc"].replace("Z", "+00:00"))
            hour = (utc + timedelta(hours=SHAPE_UTC_OFFSET_H)).hour
            sums[hour] += float(row[zone])
            counts[hour] += 1
    means = [s / c for s, c in zip(sums, counts, strict=True)]
    overall = sum(means) / 24
    return [m / overall for m in means]


def flow(values: list[float], digits: int) -> str:
    return "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"


def build(data: Path) -> str:
    topo = json.loads((data / "national_topology" / "clusters.json").read_text(encoding="utf-8"))
    carbon_csv = data / "carbon_electricity" / "em_hourly_16zones"
    price_csv = data / "carbon_electricity" / "prices_hourly_22zones"
    carbon_shape = hourly_shape(carbon_csv / f"ci_direct_gco2_per_kwh_{SHAPE_YEAR}.csv", SHAPE_ZONE)
    price_shape = hourly_shape(price_csv / f"price_usd_per_mwh_{SHAPE_YEAR}.csv", SHAPE_ZONE)
    catalogue = default_catalogue()
    clusters, cities = topo["clusters"], topo["demand_cities"]
    header = HEADER.format(
        zone=SHAPE_ZONE, year=SHAPE_YEAR, cn=CN_MEAN_G_PER_KWH, low=CN_LOW_CARBON_SHARE,
        west=WEST_DISCOUNT, extra=IP_PRIVATE_EXTRA_MS,
    )  # fmt: skip
    out = [header]
    out.append(f"intra_region: {{latency_ms: {INTRA_LATENCY_MS}, bandwidth_gbps: 400}}\n")
    out.append("regions:  # facts: NDRC cluster list; lat/lon approximate centres of the zones\n")
    for c in clusters:
        out.append(f"  - {{id: {c['id']}, name: \"{c['name']}\", lat: {c['lat']}, "
                   f"lon: {c['lon']}}}\n")  # fmt: skip
    out.append("sites:\n")
    for c in clusters:
        annual_kg = CN_MEAN_G_PER_KWH * (1 - c["green_share"]) / (1 - CN_LOW_CARBON_SHARE) / 1000
        factor = 1.0 if c["serves_realtime"] else WEST_DISCOUNT
        out.append(f"  - id: {c['id']}-1\n    region: {c['id']}\n    owner: {c['hub']} hub\n")
        out.append(f"    pue: {c['pue_target']}  # fact: the hub's PUE target\n")
        out.append(f"    # estimate: clusters.json {c['electricity_price']} CNY/kWh x {SHAPE_ZONE}"
                   " hourly price shape\n")  # fmt: skip
        prices = [c["electricity_price"] * s for s in price_shape]
        out.append(f"    electricity_price_per_kwh: {flow(prices, 4)}\n")
        out.append(f"    # estimate: {annual_kg:.3f} kg/kWh mean (green share "
                   f"{c['green_share']}) x {SHAPE_ZONE} hourly carbon shape\n")  # fmt: skip
        out.append(f"    carbon_kg_per_kwh: {flow([annual_kg * s for s in carbon_shape], 4)}\n")
        out.append("    pools:  # estimates: sizes, node shapes and prices\n")
        for pool_id, device_id, count, per_node in POOLS[c["id"]]:
            cu = catalogue.get(device_id).cu
            price = DEVICE_HOUR_CNY[device_id] * factor / cu
            out.append(
                f"      - {{id: {pool_id}, device: {device_id}, count: {count}, "
                f"devices_per_node: {per_node}, price_per_cu_hour: {price:.4f}}}\n"
            )
    out.append("links:  # latency: model (fact-calibrated); bandwidth, egress: estimates\n")
    for a, b in combinations(clusters, 2):
        km = great_circle_km(a["lat"], a["lon"], b["lat"], b["lon"])
        bandwidth, egress = link_estimates(km, a["hub"] == b["hub"])
        out.append(f"  - {{from: {a['id']}, to: {b['id']}, latency_ms: {latency_ms(km):.2f}, "
                   f"bandwidth_gbps: {bandwidth:g}, egress_per_gb: {egress:.2f}}}"
                   f"  # {km:.0f} km\n")  # fmt: skip
    out.append("datasets: []\n")
    out.append("demand:  # facts: city centres; latency: the same model\n")
    for city in cities:
        lat = {c["id"]: latency_ms(great_circle_km(city["lat"], city["lon"], c["lat"], c["lon"]))
               for c in clusters}  # fmt: skip
        pairs = ", ".join(f"{k}: {v:.2f}" for k, v in lat.items())
        out.append(f"  - id: {city['id']}\n    name: {city['name']}\n    lat: {city['lat']}\n"
                   f"    lon: {city['lon']}\n    latency_ms: {{{pairs}}}\n")  # fmt: skip
    return "".join(out)


HEADER = """\
# The embedded default network: the ten national data-centre clusters of "East Data, West
# Computing" and eight demand cities. GENERATED by scripts/build_default_network.py from
# ../shared/data; edit the script, not this file. Format: docs/network.md.
#
# FACTS (national_topology/clusters.json): cluster ids, hubs, locations, PUE targets, city
#   locations, the latency model (great-circle km x 1.8 x 5 us, + {extra} ms IP private network).
# ESTIMATES (not tariffs, not measured; say so wherever a figure rests on them):
#   - pool sizes, node shapes and prices per CU-hour (device-hour list prices / CU; western
#     hubs x {west});
#   - link bandwidth and egress price per GB;
#   - electricity price level (clusters.json's own estimate), shaped per hour by the mean
#     day of {zone} {year} wholesale prices (prices_hourly_22zones), normalised to mean 1;
#   - carbon intensity: annual mean = {cn} g/kWh (CN 2024) x (1 - green_share) / (1 - {low}),
#     shaped per hour by the mean day of Electricity Maps {zone} {year} direct intensity
#     (em_hourly_16zones, ODbL), normalised to mean 1. No public hourly series for Chinese
#     grids exists in the data; {zone} (coal, gas, nuclear, solar; UTC+9) is the nearest
#     measured grid, and its local hour h is used as China's local hour h.
# Curves are typical days: 24 values, index = local hour (UTC+8).
format: computility-network/1
name: default
currency: CNY
utc_offset_minutes: 480
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "src" / "computility" / "data" / "network-default.yaml"
    )
    args = parser.parse_args()
    args.out.write_text(build(args.data), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
