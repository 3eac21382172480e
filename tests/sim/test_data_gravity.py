"""Data gravity: where a task's input lives decides where it may run and what it costs to move.

A task reading a 500 GB dataset with ``residency: local`` runs only where a copy is; with
``residency: any`` the transfer time and the egress are part of every candidate's score and of the
task's bill.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from computility.domain.cost import CostModel
from computility.domain.devices import default_catalogue
from computility.domain.money import to_micro
from computility.domain.network import Dataset, Link, Network, Region
from computility.domain.site import Pool, Site
from computility.domain.workload import Workload
from computility.scheduler.placement import LoadView
from computility.sim.engine import replay
from computility.sim.metrics import meter
from computility.sim.run import network_scheduler

START = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=8)))
DATASET_GB = 500.0
BANDWIDTH_GBPS = 10.0
EGRESS_PER_GB = to_micro(0.5)
RUN_S = 10 * 3600.0
CORES = 64


def two_sites() -> Network:
    """`home` holds the data and is dear; `away` is a tenth of its price, one link away."""
    cpu = default_catalogue().default_cpu

    def site(name: str, region: str, price: float) -> Site:
        pool = Pool("cpu", cpu, 128, to_micro(price), devices_per_node=64)
        return Site(name, region, "owner", (pool,), 1.2, to_micro(0.5), 0.5)

    return Network(
        name="gravity",
        regions=(Region("H", "home", 30.0, 110.0), Region("A", "away", 40.0, 116.0)),
        sites=(site("home", "H", 50.0), site("away", "A", 5.0)),
        links=(
            Link("H", "A", 20.0, BANDWIDTH_GBPS, EGRESS_PER_GB),
            Link("A", "H", 20.0, BANDWIDTH_GBPS, EGRESS_PER_GB),
        ),
        datasets=(Dataset("big", DATASET_GB, ("home",)),),
    )


def one_reader(residency_local: bool) -> Workload:
    return Workload.from_columns(
        "reader",
        ids=[1],
        submit=[0.0],
        run=[RUN_S],
        cpus=[CORES],
        dataset=[0],
        datasets=("big",),
        data_gb=[DATASET_GB],
        data_local=[residency_local],
    )


@pytest.mark.parametrize("policy", ["cheapest", "fastest", "balanced", "least_loaded", "random"])
def test_local_residency_runs_only_where_the_data_is(policy: str) -> None:
    net, w = two_sites(), one_reader(residency_local=True)
    scheduler = network_scheduler(w, net, policy, "easy", START)
    assert scheduler.placement is not None
    assert scheduler.placement.candidates_mask(0).tolist() == [True, False]
    assert scheduler.placement.rejections(0) == {
        "away": "does not hold dataset 'big' (residency: local)"
    }
    s = replay(w, scheduler)
    site = net.pools[int(s.pool[0])][0]
    assert site.id == "home"
    assert s.moved_gb is not None and float(s.moved_gb[0]) == 0.0
    assert float(s.start[0]) == 0.0


def test_any_residency_puts_transfer_time_and_egress_in_the_score() -> None:
    net, w = two_sites(), one_reader(residency_local=False)
    scheduler = network_scheduler(w, net, "cheapest", "easy", START)
    assert scheduler.placement is not None
    idle = LoadView(
        capacity=np.array([128, 128]), free=np.array([128, 128]), queued=np.array([0, 0]),
        backlog=np.zeros(2),
    )
    c = scheduler.placement.score(0, 0.0, idle)
    transfer_s = 20.0 / 1000.0 + DATASET_GB * 8.0 / BANDWIDTH_GBPS  # 400.02 s
    assert c.transfer_s.tolist() == [0.0, pytest.approx(transfer_s)]
    assert c.moved_gb.tolist() == [0.0, DATASET_GB]
    assert c.price.egress.tolist() == [0.0, DATASET_GB * EGRESS_PER_GB]
    assert c.finish_s.tolist() == [RUN_S, pytest.approx(transfer_s + RUN_S)]


def test_any_residency_bills_the_egress_and_starts_after_the_transfer() -> None:
    net, w = two_sites(), one_reader(residency_local=False)
    s = replay(w, network_scheduler(w, net, "cheapest", "easy", START))
    # 94 CU-hours at a tenth of the price save about 4,200 CNY; egress costs 250: the data moves.
    assert net.pools[int(s.pool[0])][0].id == "away"
    transfer_s = 20.0 / 1000.0 + DATASET_GB * 8.0 / BANDWIDTH_GBPS
    assert float(s.start[0]) == pytest.approx(transfer_s)
    assert float(s.end[0] - s.start[0]) == pytest.approx(RUN_S)
    usage = meter(w, s, net, START)
    assert float(usage.moved_gb[0]) == DATASET_GB
    cost = CostModel(net, START)
    price = cost.price([1], [CORES], [RUN_S], [transfer_s], [DATASET_GB], [EGRESS_PER_GB])
    expected = (
        round(float(price.compute[0])) + round(float(price.energy[0])) + DATASET_GB * EGRESS_PER_GB
    )
    assert int(usage.cost_micro[0]) == expected
    assert to_micro(250.0) == DATASET_GB * EGRESS_PER_GB


def test_egress_dearer_than_the_saving_keeps_the_task_at_home() -> None:
    net = two_sites()
    dear = Link("H", "A", 20.0, BANDWIDTH_GBPS, to_micro(100.0))
    net = Network(
        name=net.name, regions=net.regions, sites=net.sites,
        links=(dear, net.links[1]), datasets=net.datasets,
    )
    w = one_reader(residency_local=False)
    s = replay(w, network_scheduler(w, net, "cheapest", "easy", START))
    assert net.pools[int(s.pool[0])][0].id == "home"
    assert s.moved_gb is not None and float(s.moved_gb[0]) == 0.0
