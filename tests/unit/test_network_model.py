"""The network value types: hourly curves, time-to-hour mapping, sizes and the vectorised tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from computility.domain.devices import default_catalogue
from computility.domain.network import Link, Network, Region, hour_index
from computility.domain.site import Pool, Site
from computility.domain.units import parse_size_gb
from computility.network import default_network

CST = timezone(timedelta(hours=8))
CONTRACT_START = datetime(2024, 1, 1, tzinfo=CST)  # --start default 2024-01-01T00:00:00+08:00


def test_time_zero_at_the_default_start_is_hour_zero() -> None:
    assert int(hour_index(CONTRACT_START, 0, 24)) == 0
    assert int(hour_index(CONTRACT_START, 0, 8760)) == 0


def test_a_typical_day_curve_is_indexed_by_local_hour_of_day() -> None:
    assert int(hour_index(CONTRACT_START, 3599, 24)) == 0
    assert int(hour_index(CONTRACT_START, 3600, 24)) == 1
    assert int(hour_index(CONTRACT_START, 25 * 3600 + 10, 24)) == 1


def test_a_start_in_another_zone_is_read_in_the_curves_local_time() -> None:
    # 04:30 UTC is 12:30 in China (UTC+8): the noon entry.
    start = datetime(2024, 6, 1, 4, 30, tzinfo=UTC)
    assert int(hour_index(start, 0, 24)) == 12


def test_a_naive_start_is_taken_as_local_time() -> None:
    assert int(hour_index(datetime(2024, 6, 1, 12, 30), 0, 24)) == 12


def test_a_year_curve_counts_hours_from_local_new_year_and_wraps() -> None:
    start = datetime(2023, 1, 2, 0, 0, tzinfo=CST)
    assert int(hour_index(start, 0, 8760)) == 24
    assert int(hour_index(start, 8760 * 3600, 8760)) == 24


def test_hour_index_is_vectorised() -> None:
    times = np.array([0.0, 3600.0, 7200.0, 86400.0])
    assert hour_index(CONTRACT_START, times, 24).tolist() == [0, 1, 2, 0]


def test_other_curve_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="24 or 8760"):
        hour_index(CONTRACT_START, 0, 48)


def small_site(site_id: str = "s", region: str = "A", **curves: object) -> Site:
    cpu = Pool("cpu", default_catalogue().default_cpu, 64, 500_000, devices_per_node=32)
    return Site(site_id, region, "me", (cpu,), 1.2, 400_000, 0.5, **curves)  # type: ignore[arg-type]


def test_a_site_without_curves_gets_flat_24_hour_curves() -> None:
    site = small_site()
    assert site.electricity_price_curve == (400_000,) * 24
    assert site.carbon_curve == (0.5,) * 24


def test_a_site_curve_must_be_a_day_or_a_year() -> None:
    with pytest.raises(ValueError, match="24 or 8760"):
        small_site(carbon_curve=(0.5,) * 25)


def test_a_pool_is_made_of_whole_nodes() -> None:
    gpu = default_catalogue().get("A100-80GB")
    assert Pool("g", gpu, 16, 1, devices_per_node=8).nodes == 2
    assert Pool("g", gpu, 3, 1).devices_per_node == 1  # today's sites keep working
    with pytest.raises(ValueError, match="devices_per_node"):
        Pool("g", gpu, 12, 1, devices_per_node=8)


def two_region_network(**site_b: object) -> Network:
    regions = (Region("A", "a", 30.0, 120.0), Region("B", "b", 30.0, 104.0))
    links = (Link("A", "B", 20.0, 100.0, 200_000), Link("B", "A", 21.0, 50.0, 300_000))
    sites = (small_site("a1", "A"), small_site("b1", "B", **site_b))
    return Network("two", regions, sites, links)


def test_arrays_line_up_with_pools_sites_and_regions() -> None:
    network = two_region_network()
    arrays = network.arrays
    assert arrays.pool_site.tolist() == [0, 1]
    assert arrays.pool_capacity.tolist() == [64, 64]
    assert arrays.pool_devices_per_node.tolist() == [32, 32]
    assert arrays.site_region.tolist() == [0, 1]
    assert arrays.latency_ms.tolist() == [[1.0, 20.0], [21.0, 1.0]]
    assert arrays.egress_per_gb.tolist() == [[0, 200_000], [300_000, 0]]
    assert network.pool_index("b1", "cpu") == 1
    assert not arrays.latency_ms.flags.writeable


def test_a_yearly_curve_makes_every_site_row_a_year() -> None:
    network = two_region_network(carbon_curve=tuple(float(h % 7) for h in range(8760)))
    assert network.hours == 8760
    assert network.arrays.carbon.shape == (2, 8760)
    assert network.arrays.electricity.shape == (2, 8760)
    # A flat 24-hour curve repeats over the year.
    assert (network.arrays.electricity[0] == 400_000).all()
    assert network.arrays.carbon[1, 8759] == 8759 % 7


def test_curves_are_read_at_the_hour_a_time_falls_in() -> None:
    network = default_network()
    site = network.site("TF-1")
    noon = network.hour_index(CONTRACT_START, 12.5 * 3600)
    row = network.arrays.carbon[network.site_index("TF-1")]
    assert row[noon] == site.carbon_curve[12]
    assert network.arrays.carbon.shape == (10, 24)


def test_a_network_needs_every_link() -> None:
    regions = (Region("A", "a", 0, 0), Region("B", "b", 0, 1))
    with pytest.raises(ValueError, match="no link from region 'B' to 'A'"):
        Network("x", regions, (small_site("a1", "A"),), (Link("A", "B", 1, 1, 0),))


def test_link_inside_a_region_is_free_and_fast() -> None:
    link = two_region_network().link("A", "A")
    assert (link.latency_ms, link.egress_per_gb) == (1.0, 0)
    assert link.transfer_s(50) == pytest.approx(0.001 + 1.0)  # 400 Gbit/s


@pytest.mark.parametrize(
    ("text", "gb"),
    [
        ("500GB", 500.0),
        ("1TB", 1000.0),
        ("1.5 MB", 0.0015),
        ("1KiB", 1024 / 1e9),
        ("2GiB", 2 * 2**30 / 1e9),
        ("1tib", 2**40 / 1e9),
        (42, 42.0),
        ("7", 7.0),
    ],
)
def test_sizes_accept_decimal_and_binary_units(text: object, gb: float) -> None:
    assert parse_size_gb(text) == pytest.approx(gb)


@pytest.mark.parametrize("text", ["5 parsecs", "GB", "-1GB", True, None, "1e3GB"])
def test_malformed_sizes_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size_gb(text)
