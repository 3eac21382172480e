"""`--synthetic N` draws the workload the contract describes, the same one for the same seed."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache

import numpy as np
import pytest

from computility.domain.devices import default_catalogue
from computility.domain.network import Network
from computility.domain.workload import ANY_GPU, NO_INDEX, Workload
from computility.network import default_network, generated_network
from computility.sim.single import single_network, single_site
from computility.sim.synthetic import (
    SyntheticWorkload,
    node_capacity,
    reference_cu,
    synthetic_workload,
)


def single(cpus: int = 256, gpus: tuple[tuple[str, int], ...] = (("A100-80GB", 16),)) -> Network:
    empty = Workload.from_columns("test", ids=[], submit=[], run=[])
    return single_network(single_site(empty, default_catalogue(), cpus, gpus))


@cache
def default_5000() -> SyntheticWorkload:
    return synthetic_workload(5000, default_network(), seed=7)


def networks() -> list[Network]:
    return [default_network(), generated_network(40, seed=3), single(), single(8, ())]


def same(a: Workload, b: Workload) -> bool:
    columns = ("ids", "submit", "run", "requested", "cpus", "gpu_milli", "gpu_types", "deadline",
               "location", "dataset", "data_gb", "data_local")
    return all(
        np.array_equal(getattr(a, c), getattr(b, c), equal_nan=c == "deadline") for c in columns
    ) and (a.gpu_type_sets, a.datasets, a.locations) == (b.gpu_type_sets, b.datasets, b.locations)


def test_the_same_seed_gives_the_same_workload_and_another_seed_another() -> None:
    net = default_network()
    first, again = synthetic_workload(500, net, seed=1), synthetic_workload(500, net, seed=1)
    assert same(first.workload, again.workload) and first.datasets == again.datasets
    assert not same(first.workload, synthetic_workload(500, net, seed=2).workload)


def test_about_60_percent_cpu_30_percent_gpu_and_10_percent_data_heavy_tasks() -> None:
    w = default_5000().workload
    gpu = w.gpu_milli > 0
    data = w.dataset != NO_INDEX
    assert len(w) == 5000
    assert abs(gpu.mean() - 0.30) < 0.01
    assert abs(data.mean() - 0.10) < 0.01
    assert abs((~gpu & ~data).mean() - 0.60) < 0.01
    assert not (gpu & data).any()


def test_cpu_tasks_take_1_to_64_cores_and_run_1_minute_to_4_hours() -> None:
    w = default_5000().workload
    cpu = w.gpu_milli == 0
    assert w.cpus[cpu].min() == 1 and w.cpus[cpu].max() == 64
    assert w.run.min() >= 60.0 and w.run.max() <= 4 * 3600.0
    assert np.array_equal(w.requested, w.run)
    # log-uniform: about half the run times lie below the geometric mean of the range (~16 min)
    assert abs((w.run < np.sqrt(60.0 * 4 * 3600.0)).mean() - 0.5) < 0.03


def test_gpu_tasks_take_1_2_4_or_8_devices_of_one_type_the_network_has() -> None:
    w = default_5000().workload
    net = default_network()
    gpu = w.gpu_milli > 0
    counts = w.gpu_milli[gpu] // 1000
    assert set(counts.tolist()) <= {1, 2, 4, 8}
    assert np.all(w.gpu_milli[gpu] % 1000 == 0)
    for k, p in ((1, 0.70), (2, 0.10), (4, 0.15), (8, 0.05)):
        assert abs((counts == k).mean() - p) < 0.03
    types = {p.device.id for _, p in net.pools if not p.is_cpu}
    assert all(len(s) == 1 and s[0] in types for s in w.gpu_type_sets)
    assert np.all(w.gpu_types[gpu] != ANY_GPU) and np.all(w.gpu_types[~gpu] == ANY_GPU)


@pytest.mark.parametrize("net", networks(), ids=lambda n: f"{n.name}-{len(n.pools)}")
def test_gpu_counts_never_exceed_a_node_and_every_task_fits_some_site(net: Network) -> None:
    w = synthetic_workload(2000, net, seed=5).workload
    for i in range(len(w)):
        if w.gpu_milli[i] > 0:
            device = w.gpu_type_sets[int(w.gpu_types[i])][0]
            largest = max(node_capacity(p) for _, p in net.pools if p.device.id == device)
            assert w.gpu_milli[i] // 1000 <= largest
        else:
            assert any(p.is_cpu and node_capacity(p) >= w.cpus[i] for _, p in net.pools)


def test_a_single_site_caps_cpu_tasks_at_its_processors_and_without_gpus_has_none() -> None:
    w = synthetic_workload(1000, single(8, ()), seed=0).workload
    assert w.cpus.max() <= 8
    assert not (w.gpu_milli > 0).any()
    assert w.gpu_type_sets == ()


def test_a_gpu_pool_of_one_machine_caps_gpu_tasks_at_its_size() -> None:
    w = synthetic_workload(3000, single(64, (("T4", 2),)), seed=0).workload
    assert (w.gpu_milli // 1000).max() == 2


@pytest.mark.parametrize("net", networks(), ids=lambda n: f"{n.name}-{len(n.pools)}")
def test_offered_load_is_about_80_percent_of_capacity(net: Network) -> None:
    w = synthetic_workload(5000, net, seed=11).workload
    per_device = np.where(w.gpu_milli > 0, w.gpu_milli / 1000, w.cpus)
    offered = float(np.sum(per_device * reference_cu(w, net) * w.run))
    capacity = sum(p.total_cu for _, p in net.pools)
    window = float(w.submit.max())  # the last arrival closes the window to within 1/N of it
    assert offered / (capacity * window) == pytest.approx(0.80, rel=0.03)
    assert float(w.header["offered_load"]) == pytest.approx(0.80)


def test_arrivals_are_poisson_over_the_window() -> None:
    w = default_5000().workload
    gaps = np.diff(w.submit)
    assert np.all(gaps >= 0) and w.submit.min() >= 0
    assert np.array_equal(w.ids, np.arange(1, 5001))
    # exponential gaps: the standard deviation equals the mean
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


def test_30_percent_of_tasks_have_a_deadline_of_1_5_to_4_times_their_run_time() -> None:
    w = default_5000().workload
    has = np.isfinite(w.deadline)
    assert abs(has.mean() - 0.30) < 0.01
    slack = (w.deadline[has] - w.submit[has]) / w.run[has]
    assert slack.min() >= 1.5 and slack.max() <= 4.0
    assert slack.min() < 1.6 and slack.max() > 3.9


def test_data_heavy_tasks_read_a_10_to_500_gb_dataset_held_at_one_site() -> None:
    syn = default_5000()
    w, net = syn.workload, default_network()
    data = w.dataset != NO_INDEX
    assert w.data_gb[data].min() >= 10.0 and w.data_gb[data].max() <= 500.0
    assert np.all(w.data_gb[~data] == 0.0)
    assert not w.data_local.any()  # residency: any
    assert w.datasets == tuple(d.id for d in syn.datasets)
    assert all(name.startswith("syn-ds-") for name in w.datasets)
    site_ids = {s.id for s in net.sites}
    assert all(site in site_ids for site in syn.dataset_sites.values())
    sizes = {d.id: d.size_gb for d in syn.datasets}
    assert all(w.data_gb[i] == sizes[w.datasets[w.dataset[i]]] for i in np.flatnonzero(data))
    assert set(w.dataset[data].tolist()) == set(range(len(syn.datasets)))
    placed = syn.network_with_datasets(net)
    assert placed.dataset(w.datasets[0]).sites == (syn.dataset_sites[w.datasets[0]],)


def test_users_spread_uniformly_over_the_eight_demand_cities() -> None:
    w = default_5000().workload
    assert w.locations == ("BJ", "SH", "GZ", "SZ", "HZ", "WH", "XA", "CD")
    counts = np.bincount(w.location, minlength=8)
    assert counts.sum() == 5000
    assert counts.min() > 0.8 * 625 and counts.max() < 1.2 * 625


def test_a_network_without_demand_locations_gives_tasks_no_location() -> None:
    w = synthetic_workload(100, single(), seed=0).workload
    assert w.locations == () and np.all(w.location == NO_INDEX)


def test_a_workload_from_columns_without_the_new_columns_has_none() -> None:
    w = Workload.from_columns("t", ids=[2, 1], submit=[5.0, 1.0], run=[1.0, 1.0],
                              dataset=[0, NO_INDEX], datasets=("d",), data_gb=[3.0, 0.0])
    assert w.ids.tolist() == [1, 2]
    assert w.dataset.tolist() == [NO_INDEX, 0] and w.data_gb.tolist() == [0.0, 3.0]
    assert w.location.tolist() == [NO_INDEX, NO_INDEX] and w.data_local.tolist() == [False] * 2


def test_a_non_positive_task_count_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        synthetic_workload(0, default_network(), seed=0)


def sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "computility", "sim", *args],
        capture_output=True, text=True, check=False,
    )


def test_the_sim_command_replays_a_synthetic_workload_on_a_single_site() -> None:
    p = sim("--synthetic", "500", "--network", "single", "--cpus", "256", "--gpus",
            "A100-80GB:16", "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["trace"] == "synthetic:500" and report["jobs"] == 500
    for result in report["results"]:
        assert result["completed"] + result["rejected"] == report["jobs"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "give exactly one of --trace PATH or --synthetic N"),
        (["--synthetic", "5", "--trace", "x.swf", "--cpus", "4"], "give exactly one of"),
        (["--synthetic", "5", "--network", "single"], "give --cpus N"),
        (["--synthetic", "0", "--cpus", "4"], "--synthetic: expected a positive integer"),
        (["--synthetic", "5", "--cpus", "4"], "--cpus and --gpus size the single site"),
    ],
)
def test_synthetic_usage_errors_are_one_line_exit_2(args: list[str], fragment: str) -> None:
    p = sim(*args)
    assert p.returncode == 2
    assert fragment in p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
