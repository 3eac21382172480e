"""A burst of tasks arriving at one instant on a large network is placed in one vectorised pass.

Every task still lands on a pool it may use, no pool is ever given more than it has, and the
tasks the pass could not fit are placed one by one as usual.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from computility.domain.network import Network
from computility.domain.workload import Workload
from computility.network import load_network
from computility.scheduler.walk import BURST_MIN
from computility.sim.engine import replay
from computility.sim.run import network_scheduler
from computility.sim.synthetic import synthetic_workload

START = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=8)))


def burst(n: int, seed: int = 3) -> tuple[Workload, Network]:
    network = load_network("generated:40", seed)
    drawn = synthetic_workload(n, network, seed)
    w = drawn.workload
    # Everyone arrives at time 0: one TasksArrived event of n tasks.
    w = Workload.from_columns(
        w.name, ids=w.ids, submit=np.zeros(n), run=w.run, cpus=w.cpus, gpu_milli=w.gpu_milli,
        gpu_types=w.gpu_types, gpu_type_sets=w.gpu_type_sets, ref_device=w.ref_device,
        ref_devices=w.ref_devices, location=w.location, locations=w.locations,
    )
    return w, network


def test_a_burst_is_placed_in_one_pass_on_feasible_pools_without_over_commitment() -> None:
    w, network = burst(600)
    scheduler = network_scheduler(w, network, "balanced", "easy", START)
    assert scheduler.placement is not None and scheduler.placement.prunes
    schedule = replay(w, scheduler)
    assert scheduler.burst_placed >= BURST_MIN
    assert not schedule.rejected.any()
    for task in range(len(w)):
        assert scheduler.placement.candidates_mask(task)[schedule.pool[task]]
    # At time 0 the tasks started then hold at most each pool's units.
    now = schedule.start == 0.0
    units = np.where(network.arrays.pool_is_cpu[schedule.pool], w.cpus, w.gpu_milli)
    used = np.bincount(schedule.pool[now], weights=units[now], minlength=len(network.pools))
    capacity = np.array([p.units for _, p in network.pools])
    assert bool(np.all(used <= capacity))


def test_a_small_burst_is_placed_one_by_one() -> None:
    w, network = burst(BURST_MIN - 1)
    scheduler = network_scheduler(w, network, "balanced", "easy", START)
    replay(w, scheduler)
    assert scheduler.burst_placed == 0
