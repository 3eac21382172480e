"""``generated:N`` networks meet the contract for every N and seed, and are deterministic."""

from __future__ import annotations

import pytest

from computility.domain.errors import UsageError
from computility.domain.network import Network
from computility.network import generated_network, load_network


def device_types(network: Network) -> set[str]:
    return {pool.device.id for _, pool in network.pools}


@pytest.mark.parametrize("n", [1, 5, 30, 40, 200])
@pytest.mark.parametrize("seed", [0, 7])
def test_generated_network_meets_the_contract(n: int, seed: int) -> None:
    network = generated_network(n, seed=seed)
    prices = network.arrays.pool_price
    assert len(network.sites) == n
    assert len(network.regions) >= 30
    assert len(device_types(network)) >= 10
    assert prices.max() / prices.min() >= 3.0


def test_forty_sites_spread_over_at_least_thirty_regions() -> None:
    network = generated_network(40, seed=1)
    assert len({site.region for site in network.sites}) >= 30


def test_the_same_seed_gives_the_same_network() -> None:
    assert generated_network(40, seed=3) == generated_network(40, seed=3)


def test_different_seeds_give_different_networks() -> None:
    assert generated_network(40, seed=3) != generated_network(40, seed=4)


def test_load_network_reads_generated_n_with_the_seed() -> None:
    network = load_network("generated:12", seed=5)
    assert network.name == "generated:12"
    assert network == generated_network(12, seed=5)


@pytest.mark.parametrize("spec", ["generated:", "generated:0", "generated:x", "generated:-3",
                                  "generated:²", "generated:١٢"])
def test_a_malformed_generated_spec_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError, match="generated:N"):
        load_network(spec)


def test_single_is_left_to_the_simulator() -> None:
    with pytest.raises(UsageError, match="single"):
        load_network("single")


def test_generated_networks_are_complete_and_consistent() -> None:
    network = generated_network(35, seed=2)
    regions = len(network.regions)
    assert len(network.links) == regions * (regions - 1)
    assert network.arrays.demand_latency_ms.shape == (8, regions)
    for dataset in network.datasets:
        assert all(network.site(site).id == site for site in dataset.sites)
    for _, pool in network.pools:
        assert pool.count % pool.devices_per_node == 0
