"""Gavel's job mix and cluster, drawn the way its generator draws them, the same for one seed."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from computility.domain.devices import default_catalogue
from computility.domain.money import to_micro
from computility.domain.throughput import ThroughputRow, ThroughputTable, default_throughput_table
from computility.domain.workload import ANY_GPU, Workload
from computility.sim.gavel import gavel_network, gavel_site, gavel_workload

N = 20_000
RATE = 10.0  # jobs per hour
COLUMNS = ("ids", "submit", "run", "requested", "cpus", "gpu_milli", "gpu_types", "ref_device",
           "profile")  # fmt: skip


@cache
def big() -> Workload:
    return gavel_workload(N, RATE, seed=3)


def same(a: Workload, b: Workload) -> bool:
    return all(np.array_equal(getattr(a, c), getattr(b, c)) for c in COLUMNS) and (
        a.profiles,
        a.ref_devices,
        a.header,
    ) == (b.profiles, b.ref_devices, b.header)


def distributed(w: Workload) -> np.ndarray:
    table = default_throughput_table()
    multi = np.array([table.scale_factors(p) != (1,) for p in w.profiles])
    return multi[w.profile]


def test_the_same_seed_gives_the_same_workload_and_another_seed_another() -> None:
    assert same(gavel_workload(500, RATE, seed=1), gavel_workload(500, RATE, seed=1))
    assert not same(gavel_workload(500, RATE, seed=1), gavel_workload(500, RATE, seed=2))


def test_tasks_are_numbered_in_arrival_order_from_a_first_job_at_time_zero() -> None:
    w = big()
    assert len(w) == N and w.name == f"gavel:{N}"
    assert np.array_equal(w.ids, np.arange(1, N + 1))
    assert w.submit[0] == 0.0 and np.all(np.diff(w.submit) >= 0)
    assert w.header == {"generator": "gavel", "jobs_per_hour": "10.0", "seed": "3"}


def test_job_types_are_uniform_over_the_tables_26_profiles() -> None:
    w = big()
    assert w.profiles == default_throughput_table().profiles and len(w.profiles) == 26
    share = np.bincount(w.profile, minlength=26) / N
    assert np.all(np.abs(share - 1 / 26) < 0.15 / 26)


def test_durations_on_a_v100_split_80_20_around_1000_minutes() -> None:
    w = big()
    assert np.array_equal(w.requested, w.run)
    assert w.run.min() >= 60 * 10**1.5 and w.run.max() <= 60 * 10**4
    assert abs((w.run > 60 * 10**3).mean() - 0.2) < 0.01
    # within each branch the exponent is uniform: half the short jobs lie below 10^2.25 minutes
    short = w.run[w.run <= 60 * 10**3]
    assert abs((short < 60 * 10**2.25).mean() - 0.5) < 0.02
    assert w.ref_devices == ("V100-16GB",) and np.all(w.ref_device == 0)


def test_distributed_types_take_1_2_4_8_gpus_at_70_10_15_5_percent_the_others_one() -> None:
    w = big()
    gpus = w.gpu_milli // 1000
    multi = distributed(w)
    assert np.all(gpus[~multi] == 1)
    for k, p in ((1, 0.70), (2, 0.10), (4, 0.15), (8, 0.05)):
        assert abs((gpus[multi] == k).mean() - p) < 0.015
    assert np.all(w.gpu_milli % 1000 == 0) and np.all(w.cpus == 1)
    assert np.all(w.gpu_types == ANY_GPU)


def test_without_multi_gpu_every_job_takes_one_gpu_and_nothing_else_changes() -> None:
    one = gavel_workload(2000, RATE, seed=4, multi_gpu=False)
    many = gavel_workload(2000, RATE, seed=4)
    assert np.all(one.gpu_milli == 1000)
    for column in ("submit", "run", "profile"):
        assert np.array_equal(getattr(one, column), getattr(many, column))


def test_arrivals_come_at_the_asked_rate() -> None:
    w = big()
    mean_gap = w.submit[-1] / (N - 1)
    assert abs(mean_gap / (3600 / RATE) - 1) < 0.03
    fast = gavel_workload(N, 4 * RATE, seed=3)
    assert abs(fast.submit[-1] / (N - 1) / (900 / RATE) - 1) < 0.03


def test_every_task_has_a_rate_on_all_three_gavel_devices_at_its_size() -> None:
    w = big()
    table = default_throughput_table()
    devices = [default_catalogue().get(d) for d in ("K80", "P100-16GB", "V100-16GB")]
    pairs = set(zip(w.profile.tolist(), (w.gpu_milli // 1000).tolist(), strict=True))
    for p, gpus in pairs:
        for device in devices:
            assert table.steps_per_s(w.profiles[p], gpus, device) is not None
        assert table.steps_per_s(w.profiles[p], gpus, devices[2])


def test_a_size_the_table_lacks_falls_to_the_largest_measured_below_it() -> None:
    rows = [ThroughputRow("solo", 1, "V100", 1.0)]
    rows += [ThroughputRow("gapped", s, "V100", float(s)) for s in (1, 2, 8)]
    w = gavel_workload(5000, RATE, seed=0, table=ThroughputTable(tuple(rows)))
    gpus = w.gpu_milli // 1000
    solo = w.profile == w.profiles.index("solo")
    assert np.all(gpus[solo] == 1)
    assert set(gpus[~solo].tolist()) == {1, 2, 8}
    assert abs((gpus[~solo] == 2).mean() - 0.25) < 0.03  # the drawn 2s and 4s


def test_a_table_without_a_v100_rate_for_a_size_it_would_draw_is_refused() -> None:
    table = ThroughputTable((ThroughputRow("job", 1, "K80", 1.0),))
    with pytest.raises(ValueError, match="no positive V100-16GB rate for 'job' at 1 GPUs"):
        gavel_workload(10, RATE, seed=0, table=table)


@pytest.mark.parametrize(("n", "rate"), [(0, RATE), (10, 0.0), (10, float("nan"))])
def test_a_non_positive_size_or_rate_is_refused(n: int, rate: float) -> None:
    with pytest.raises(ValueError):
        gavel_workload(n, rate, seed=0)


def test_gavels_cluster_is_36_v100_36_p100_36_k80_priced_at_its_dollar_rates() -> None:
    site = gavel_site()
    catalogue = default_catalogue()
    assert [(p.id, p.device.id, p.count, p.devices_per_node) for p in site.pools] == [
        ("v100", "V100-16GB", 36, 1),
        ("p100", "P100-16GB", 36, 1),
        ("k80", "K80", 36, 1),
    ]
    for pool, usd in zip(site.pools, (2.85, 1.68, 0.52), strict=True):
        assert pool.price_per_cu_hour == to_micro(usd * 7.2 / catalogue.get(pool.device.id).cu)
        device_hour_cny = pool.price_per_cu_hour / 1e6 * pool.device.cu
        assert device_hour_cny == pytest.approx(usd * 7.2, abs=1e-4)
    assert (site.id, site.region, site.pue) == ("gavel", "local", 1.3)
    assert site.electricity_price_per_kwh == to_micro(0.60)
    assert site.carbon_kg_per_kwh == 0.5703


def test_the_network_is_one_site_named_after_its_pools() -> None:
    net = gavel_network(gavel_site())
    assert net.name == "gavel-36x3"
    assert [s.id for s in net.sites] == ["gavel"] and net.links == ()
    assert gavel_network(gavel_site(per_type=8)).name == "gavel-8x3"
