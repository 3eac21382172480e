"""The cost model: hourly curves averaged over a run, and what a run costs in money and carbon.

Every figure here is worked by hand or recomputed from scratch (a per-second average of the step
curve, a local clock from `datetime`), never read back from the model under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from computility.domain.cost import CostModel
from computility.domain.devices import DeviceType
from computility.domain.network import DemandLocation, Link, Network, Region
from computility.domain.site import Pool, Site

CST = timezone(timedelta(hours=8))
START = datetime(2024, 1, 1, tzinfo=CST)  # local midnight of 1 January: curve hour 0
HOUR = 3600.0

# Round figures so that every bill below can be worked by hand.
CORE = DeviceType(
    id="TEST-CORE",
    name="test core",
    kind="cpu",
    vendor="test",
    family="TESTCORE",
    unit="core",
    memory_gb=4.0,
    fp64=None,
    fp32=0.1,
    fp16=None,
    int8=None,
    tdp_w=5.0,
)
ACCEL = DeviceType(
    id="TEST-ACCEL",
    name="test accelerator",
    kind="gpu",
    vendor="test",
    family="TESTACCEL",
    unit="device",
    memory_gb=80.0,
    fp64=None,
    fp32=20.0,
    fp16=None,
    int8=None,
    tdp_w=400.0,
)
CPU_PRICE = 2_000_000  # micro-units per CU-hour
GPU_PRICE = 100_000
PUE = 1.25
FLAT_ELECTRICITY = 600_000  # micro-units per kWh
FLAT_CARBON = 0.5  # kg per kWh

# Irregular 24-hour curves, so a wrong hour shows up as a wrong number.
DAY_CARBON = tuple(0.05 + 0.03 * ((7 * h) % 24) for h in range(24))
DAY_PRICE = tuple(300_000 + 11_000 * ((5 * h + 3) % 24) for h in range(24))
YEAR_CARBON = tuple(((37 * h) % 101) / 100 for h in range(8760))
YEAR_PRICE = tuple(200_000 + 1_000 * ((13 * h) % 97) for h in range(8760))


def site(
    name: str = "s",
    region: str = "A",
    *,
    price_curve: tuple[int, ...] = (),
    carbon_curve: tuple[float, ...] = (),
) -> Site:
    cpu = Pool("cpu", CORE, 64, CPU_PRICE, devices_per_node=32)
    gpu = Pool("gpu", ACCEL, 8, GPU_PRICE, devices_per_node=8)
    return Site(
        name,
        region,
        "owner",
        (cpu, gpu),
        PUE,
        FLAT_ELECTRICITY,
        FLAT_CARBON,
        electricity_price_curve=price_curve,
        carbon_curve=carbon_curve,
    )


def one_site_network(
    utc_offset_minutes: int = 8 * 60,
    *,
    price_curve: tuple[int, ...] = (),
    carbon_curve: tuple[float, ...] = (),
) -> Network:
    only = site(price_curve=price_curve, carbon_curve=carbon_curve)
    regions = (Region("A", "a", 30.0, 120.0),)
    return Network("one", regions, (only,), (), utc_offset_minutes=utc_offset_minutes)


def two_site_network(first_carbon: tuple[float, ...], second_carbon: tuple[float, ...]) -> Network:
    regions = (Region("A", "a", 30.0, 120.0), Region("B", "b", 35.0, 110.0))
    links = (Link("A", "B", 20.0, 10.0, 0), Link("B", "A", 20.0, 10.0, 0))
    sites = (
        site("s1", "A", carbon_curve=first_carbon),
        site("s2", "B", carbon_curve=second_carbon),
    )
    return Network("two", regions, sites, links)


# ------------------------------------------------------------------ a from-scratch reference


def local_seconds_since_new_year(start: datetime, utc_offset_hours: int = 8) -> float:
    local = start.astimezone(timezone(timedelta(hours=utc_offset_hours)))
    new_year = datetime(local.year, 1, 1, tzinfo=local.tzinfo)
    return (local - new_year).total_seconds()


def sampled_mean(
    curve: tuple[float, ...], start: datetime, t0: float, t1: float, step: float = 1.0
) -> float:
    """Average of the step curve sampled in the middle of every `step` seconds of [t0, t1].

    With hour boundaries on whole steps this is the exact mean, computed the slow way.
    """
    base = local_seconds_since_new_year(start)
    middles = np.arange(t0, t1, step) + step / 2
    hours = np.floor((base + middles) / HOUR).astype(np.int64) % len(curve)
    return float(np.asarray(curve, np.float64)[hours].mean())


# ------------------------------------------------------------------ curve means


DAY_WINDOWS = [
    pytest.param(START, 600.0, 1800.0, id="inside-one-hour"),
    pytest.param(START, 1000.0, 3 * HOUR + 1234.0, id="across-hour-boundaries"),
    pytest.param(datetime(2024, 3, 5, 22, 30, tzinfo=CST), 0.0, 3 * HOUR, id="across-midnight"),
    pytest.param(
        datetime(2024, 3, 5, 14, 30, tzinfo=UTC), 0.0, 3 * HOUR, id="across-midnight-utc-start"
    ),
    pytest.param(START, 5000.0, 30 * HOUR + 17.0, id="longer-than-a-day"),
]


@pytest.mark.parametrize(("start", "t0", "t1"), DAY_WINDOWS)
@pytest.mark.parametrize("which", ["price", "carbon"])
def test_the_mean_of_a_daily_curve_equals_the_per_second_average(
    which: str, start: datetime, t0: float, t1: float
) -> None:
    curve = DAY_PRICE if which == "price" else DAY_CARBON
    model = CostModel(one_site_network(price_curve=DAY_PRICE, carbon_curve=DAY_CARBON), start)
    got = float(model.mean_over(which, [0], [t0], [t1])[0])
    assert got == pytest.approx(sampled_mean(curve, start, t0, t1), rel=1e-9)


@pytest.mark.parametrize("which", ["price", "carbon"])
def test_the_mean_of_a_yearly_curve_wraps_from_the_last_hour_of_the_year_to_the_first(
    which: str,
) -> None:
    start = datetime(2023, 12, 31, 21, 15, tzinfo=CST)  # 2023 has 8760 hours; hour 8757 now
    curve = YEAR_PRICE if which == "price" else YEAR_CARBON
    model = CostModel(one_site_network(price_curve=YEAR_PRICE, carbon_curve=YEAR_CARBON), start)
    got = float(model.mean_over(which, [0], [0.0], [4 * HOUR])[0])
    # 45 min of hour 8757, hours 8758 and 8759, then 1 January 2024: hours 0 and a quarter of 1.
    by_hand = (0.75 * curve[8757] + curve[8758] + curve[8759] + curve[0] + 0.25 * curve[1]) / 4
    assert got == pytest.approx(by_hand, rel=1e-9)
    assert got == pytest.approx(sampled_mean(curve, start, 0.0, 4 * HOUR), rel=1e-9)


def test_the_mean_over_more_than_a_year_counts_every_lap_of_the_curve() -> None:
    start = datetime(2023, 6, 1, 7, 0, tzinfo=CST)
    model = CostModel(one_site_network(carbon_curve=YEAR_CARBON), start)
    t1 = (8760 + 30) * HOUR + 1800.0
    got = float(model.mean_over("carbon", [0], [0.0], [t1])[0])
    assert got == pytest.approx(sampled_mean(YEAR_CARBON, start, 0.0, t1, step=60.0), rel=1e-9)


def test_a_zero_length_window_is_the_value_of_the_hour_it_falls_in() -> None:
    model = CostModel(one_site_network(price_curve=DAY_PRICE, carbon_curve=DAY_CARBON), START)
    times = [13.5 * HOUR, 5 * HOUR, 23 * HOUR + 3599.0, 49 * HOUR]
    carbon = model.mean_over("carbon", [0] * 4, times, times)
    price = model.mean_over("price", [0] * 4, times, times)
    hours = [13, 5, 23, 1]
    assert carbon.tolist() == pytest.approx([DAY_CARBON[h] for h in hours])
    assert price.tolist() == pytest.approx([DAY_PRICE[h] for h in hours])


def test_means_of_many_sites_and_windows_come_from_one_vectorised_call() -> None:
    reversed_carbon = tuple(reversed(DAY_CARBON))
    net = two_site_network(DAY_CARBON, reversed_carbon)
    model = CostModel(net, START)
    t0 = np.array([0.0, 1800.0, 7 * HOUR + 5.0])
    t1 = np.array([2 * HOUR, 26 * HOUR, 9 * HOUR])
    sites = np.array([0, 1, 1])
    got = model.mean_over("carbon", sites, t0, t1)
    curves = (DAY_CARBON, reversed_carbon)
    expected = [sampled_mean(curves[s], START, a, b) for s, a, b in zip(sites, t0, t1, strict=True)]
    assert got.tolist() == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------ --start


def test_a_start_at_local_1300_reads_hour_13_of_a_daily_curve() -> None:
    net = one_site_network(price_curve=DAY_PRICE, carbon_curve=DAY_CARBON)
    for start in (
        datetime(2024, 5, 20, 13, 0, tzinfo=CST),
        datetime(2024, 5, 20, 5, 0, tzinfo=UTC),  # the same instant, written in UTC
    ):
        model = CostModel(net, start)
        assert float(model.mean_over("carbon", [0], [0.0], [0.0])[0]) == DAY_CARBON[13]
        assert float(model.mean_over("price", [0], [0.0], [HOUR])[0]) == DAY_PRICE[13]


def test_the_start_is_read_in_the_networks_own_time_zone() -> None:
    # 13:00 in China is 05:00 UTC: a network whose curves are in UTC reads hour 5.
    net = one_site_network(utc_offset_minutes=0, carbon_curve=DAY_CARBON)
    model = CostModel(net, datetime(2024, 5, 20, 13, 0, tzinfo=CST))
    assert float(model.mean_over("carbon", [0], [0.0], [0.0])[0]) == DAY_CARBON[5]


def test_energy_is_priced_at_the_hours_the_start_puts_the_run_in() -> None:
    net = one_site_network(price_curve=DAY_PRICE, carbon_curve=DAY_CARBON)
    model = CostModel(net, datetime(2024, 5, 20, 13, 0, tzinfo=CST))
    bill = model.price([0], [16], [HOUR], [0.0])
    kwh = 16 * 5.0 * 1.0 * PUE / 1000  # 0.1 kWh
    assert float(bill.energy[0]) == pytest.approx(kwh * DAY_PRICE[13])
    assert float(bill.carbon_kg[0]) == pytest.approx(kwh * DAY_CARBON[13])


# ------------------------------------------------------------------ money, energy, carbon


def test_a_cpu_run_is_billed_cores_times_cu_per_core_times_hours_times_price() -> None:
    model = CostModel(one_site_network(), START)
    bill = model.price([0], [16], [2 * HOUR], [0.0])
    # 16 cores x 0.1 CU x 2 h = 3.2 CU-h; x 2.0 currency/CU-h = 6.4 (6,400,000 micro-units).
    assert float(bill.cu_hours[0]) == pytest.approx(3.2)
    assert float(bill.compute[0]) == pytest.approx(6_400_000)
    # 16 cores x 5 W x 2 h x PUE 1.25 = 200 Wh = 0.2 kWh; x 0.6/kWh; x 0.5 kg/kWh.
    assert float(bill.kwh[0]) == pytest.approx(0.2)
    assert float(bill.energy[0]) == pytest.approx(120_000)
    assert float(bill.carbon_kg[0]) == pytest.approx(0.1)
    assert float(bill.egress[0]) == 0.0
    assert float(bill.money[0]) == pytest.approx(6_520_000)


def test_a_gpu_run_counts_thousandths_of_a_device() -> None:
    model = CostModel(one_site_network(), START)
    bill = model.price([1], [2000], [1.5 * HOUR], [0.0])
    # 2 devices x 20 CU x 1.5 h = 60 CU-h x 0.1/CU-h = 6.0.
    assert float(bill.cu_hours[0]) == pytest.approx(60.0)
    assert float(bill.compute[0]) == pytest.approx(6_000_000)
    # 2 x 400 W x 1.5 h x 1.25 = 1.5 kWh.
    assert float(bill.kwh[0]) == pytest.approx(1.5)
    assert float(bill.energy[0]) == pytest.approx(900_000)
    assert float(bill.carbon_kg[0]) == pytest.approx(0.75)


def test_a_fractional_gpu_share_pays_for_its_share() -> None:
    model = CostModel(one_site_network(), START)
    bill = model.price([1], [250], [HOUR], [0.0])
    assert float(bill.cu_hours[0]) == pytest.approx(5.0)  # a quarter of 20 CU for an hour
    assert float(bill.kwh[0]) == pytest.approx(0.25 * 0.4 * PUE)


def test_pricing_several_pools_at_once_bills_each_as_if_alone() -> None:
    model = CostModel(one_site_network(), START)
    both = model.price([0, 1], [16, 2000], [2 * HOUR, 1.5 * HOUR], [0.0, 0.0])
    assert both.compute.tolist() == pytest.approx([6_400_000, 6_000_000])
    assert both.kwh.tolist() == pytest.approx([0.2, 1.5])


def test_energy_and_carbon_are_averaged_over_the_hours_the_run_spans() -> None:
    price = tuple(100_000 + 1_000 * h * h for h in range(24))
    carbon = tuple(0.01 * h for h in range(24))
    model = CostModel(one_site_network(price_curve=price, carbon_curve=carbon), START)
    bill = model.price([0], [16], [2 * HOUR], [12.5 * HOUR])  # 12:30 to 14:30
    # Half of hour 12, all of 13, half of 14: (0.5*244,000 + 269,000 + 0.5*296,000) / 2.
    assert float(bill.energy[0]) == pytest.approx(0.2 * 269_500)
    assert float(bill.carbon_kg[0]) == pytest.approx(0.2 * 0.13)


def test_egress_is_gigabytes_moved_times_the_links_price() -> None:
    model = CostModel(one_site_network(), START)
    bill = model.price([0], [16], [2 * HOUR], [0.0], moved_gb=500.0, egress_per_gb=500_000)
    assert float(bill.egress[0]) == pytest.approx(250_000_000)
    assert float(bill.money[0]) == pytest.approx(6_400_000 + 120_000 + 250_000_000)


# ------------------------------------------------------------------ data transfer and latency


def three_regions(a_to_c: tuple[float, float, int], b_to_c: tuple[float, float, int]) -> Network:
    """Regions A, B, C with one site each; the links into C are given, the others are slow."""
    regions = tuple(Region(r, r.lower(), 30.0, 100.0 + i) for i, r in enumerate("ABC"))
    links = (
        Link("A", "C", *a_to_c),
        Link("B", "C", *b_to_c),
        Link("A", "B", 20.0, 10.0, 100_000),
        Link("B", "A", 20.0, 10.0, 100_000),
        Link("C", "A", 20.0, 10.0, 100_000),
        Link("C", "B", 20.0, 10.0, 100_000),
    )
    sites = tuple(site(f"s{r}", r) for r in "ABC")
    demand = (DemandLocation("user", "user", 31.0, 101.0, {"A": 5.0, "B": 25.0, "C": 60.0}),)
    return Network("three", regions, sites, links, demand=demand)


def test_data_is_fetched_from_the_copy_that_arrives_first() -> None:
    # 100 GB into C: from A 0.03 s + 800 Gbit / 10 Gbit/s = 80.03 s; from B 0.05 + 20 = 20.05 s.
    net = three_regions(a_to_c=(30.0, 10.0, 100_000), b_to_c=(50.0, 40.0, 300_000))
    move = CostModel(net, START).transfer([0, 1], [2], 100.0)
    assert int(move.src_region[0]) == 1
    assert float(move.seconds[0]) == pytest.approx(20.05)
    assert float(move.egress_per_gb[0]) == 300_000  # dearer, but faster
    assert float(move.moved_gb[0]) == 100.0
    same = CostModel(net, START).transfer([1, 0], [2], 100.0)  # holders in another order
    assert int(same.src_region[0]) == 1


def test_of_two_equally_fast_copies_the_cheaper_link_wins() -> None:
    net = three_regions(a_to_c=(30.0, 10.0, 300_000), b_to_c=(30.0, 10.0, 100_000))
    move = CostModel(net, START).transfer([0, 1], [2], 100.0)
    assert int(move.src_region[0]) == 1
    assert float(move.egress_per_gb[0]) == 100_000


def test_a_region_holding_a_copy_moves_nothing() -> None:
    net = three_regions(a_to_c=(30.0, 10.0, 100_000), b_to_c=(50.0, 40.0, 300_000))
    move = CostModel(net, START).transfer([0, 1], [0, 1, 2], 100.0)
    assert move.src_region.tolist() == [0, 1, 1]
    assert move.moved_gb.tolist() == [0.0, 0.0, 100.0]
    assert move.seconds.tolist() == pytest.approx([0.0, 0.0, 20.05])
    assert move.egress_per_gb.tolist() == [0.0, 0.0, 300_000]


def test_the_egress_of_a_transfer_is_billed_at_its_links_price() -> None:
    net = three_regions(a_to_c=(30.0, 10.0, 100_000), b_to_c=(50.0, 40.0, 300_000))
    model = CostModel(net, START)
    move = model.transfer([0, 1], [2], 100.0)
    pool_at_c = net.pool_index("sC", "cpu")
    bill = model.price([pool_at_c], [1], [HOUR], [0.0], move.moved_gb, move.egress_per_gb)
    assert float(bill.egress[0]) == pytest.approx(100 * 300_000)


def test_latency_is_read_from_the_users_location_to_each_pools_region() -> None:
    net = three_regions(a_to_c=(30.0, 10.0, 100_000), b_to_c=(50.0, 40.0, 300_000))
    model = CostModel(net, START)
    pools = [net.pool_index("sC", "gpu"), net.pool_index("sA", "cpu"), net.pool_index("sB", "cpu")]
    assert model.latency_ms(0, pools).tolist() == [60.0, 5.0, 25.0]
    assert model.latency_ms(-1, pools).tolist() == [0.0, 0.0, 0.0]  # a task with no location
