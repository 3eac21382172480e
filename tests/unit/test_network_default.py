"""The embedded default network: the national clusters and demand cities the contract names."""

from __future__ import annotations

import importlib.util
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from computility.domain.network import Network
from computility.network import default_network, load_network
from computility.network.geo import IP_PRIVATE_EXTRA_MS, great_circle_km, optical_latency_ms
from computility.testing.data import find_shared_data_dir

CLUSTERS = ("ZJK", "YRD", "WUHU", "SG", "TF", "CQ", "HLGE", "GA", "QY", "ZW")
CITIES = ("BJ", "SH", "GZ", "SZ", "HZ", "WH", "XA", "CD")
TOPOLOGY = (find_shared_data_dir() or Path("/nonexistent-shared-data")) / "national_topology"


@pytest.fixture(scope="module")
def network() -> Network:
    return default_network()


def test_default_has_the_ten_clusters_as_regions_each_with_a_site(network: Network) -> None:
    assert tuple(r.id for r in network.regions) == CLUSTERS
    assert sorted(s.region for s in network.sites) == sorted(CLUSTERS)


def test_default_has_the_eight_demand_cities(network: Network) -> None:
    assert tuple(d.id for d in network.demand) == CITIES
    beijing = network.demand_location("BJ")
    assert (beijing.lat, beijing.lon) == (39.90, 116.40)


def test_load_network_default_is_the_embedded_network(network: Network) -> None:
    assert load_network("default") is network
    assert network.name == "default"
    assert network.currency == "CNY"


def test_every_region_pair_has_a_link_both_ways(network: Network) -> None:
    assert len(network.links) == 10 * 9
    assert network.link("ZJK", "GA").latency_ms == network.link("GA", "ZJK").latency_ms


def test_latency_model_reproduces_caict_calibration_between_cluster_cities(
    network: Network,
) -> None:
    # clusters.json: CAICT measured mean 9.7 ms, max 17.1; the model gives 9.8 / 16.0.
    optical = [
        network.link(a, b).latency_ms - IP_PRIVATE_EXTRA_MS for a, b in combinations(CLUSTERS, 2)
    ]
    assert np.mean(optical) == pytest.approx(9.8, abs=0.05)
    assert max(optical) == pytest.approx(16.0, abs=0.05)


def test_latency_model_is_distance_times_route_factor_at_fibre_speed() -> None:
    # Beijing to Shanghai is about 1,068 km: 1068 x 1.8 x 5 us = 9.6 ms.
    km = great_circle_km(39.90, 116.40, 31.23, 121.47)
    assert km == pytest.approx(1068, rel=0.01)
    assert optical_latency_ms(km) == pytest.approx(9.6, rel=0.01)


def test_pue_and_electricity_price_level_are_the_topologys(network: Network) -> None:
    if not TOPOLOGY.exists():
        pytest.skip("shared topology data not present")
    clusters = json.loads((TOPOLOGY / "clusters.json").read_text(encoding="utf-8"))["clusters"]
    for cluster in clusters:
        (site,) = network.sites_in(cluster["id"])
        assert site.pue == cluster["pue_target"]
        mean_price = site.electricity_price_per_kwh / 1e6
        assert mean_price == pytest.approx(cluster["electricity_price"], rel=0.01)


def test_greener_clusters_have_lower_carbon_intensity(network: Network) -> None:
    (tianfu,) = network.sites_in("TF")
    (yangtze,) = network.sites_in("YRD")
    assert tianfu.carbon_kg_per_kwh < 0.25 < 0.5 < yangtze.carbon_kg_per_kwh


def test_default_mixes_cpu_and_several_gpu_types_in_whole_nodes(network: Network) -> None:
    devices = {pool.device.id for _, pool in network.pools}
    assert any(not pool.device.is_accelerator for _, pool in network.pools)
    assert len(devices - {"XEON-8380", "EPYC-7763", "KUNPENG-920"}) >= 6
    for _, pool in network.pools:
        assert pool.count % pool.devices_per_node == 0
        if pool.device.is_accelerator:
            assert pool.devices_per_node in (4, 8)


def test_the_committed_yaml_is_what_the_build_script_makes_from_the_shared_data() -> None:
    data = TOPOLOGY.parent
    if not (data / "carbon_electricity").exists():
        pytest.skip("shared data not present")
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "build_default_network", root / "scripts" / "build_default_network.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    committed = root / "src" / "computility" / "data" / "network-default.yaml"
    assert script.build(data) == committed.read_text(encoding="utf-8")
