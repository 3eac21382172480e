"""Heterogeneity pays: on Gavel's 36 V100 + 36 P100 + 36 K80, placing each job by its measured
speed shortens jobs, and a job goes to the device it really runs fastest on, not the biggest one.

The full experiment (6,000 jobs, three rates, three seeds) is ``benchmarks/gavel_heterogeneity``;
this is its small, fast form, plus the placement of single jobs that it rests on.
"""

from __future__ import annotations

import numpy as np
import pytest

from computility.domain.devices import default_catalogue
from computility.domain.throughput import default_throughput_table
from computility.domain.workload import ANY_GPU, Workload
from computility.sim.engine import Schedule, replay
from computility.sim.gavel import REFERENCE_DEVICE, gavel_network, gavel_site, gavel_workload
from computility.sim.run import DEFAULT_START, network_scheduler, parse_start

AWARE = "fastest"  # earliest estimated finish, run times from the measured throughput table
AGNOSTIC = "least_loaded"  # most spare units, blind to speed
POOLS = ("v100", "p100", "k80")
V100_RUN_S = 3600.0


def run(workload: Workload, policy: str) -> Schedule:
    network = gavel_network(gavel_site())
    scheduler = network_scheduler(workload, network, policy, "fcfs", parse_start(DEFAULT_START))
    return replay(workload, scheduler)


def one_job(profile: str) -> Workload:
    """A single one-GPU job of `profile`, an hour long on a V100, arriving at an idle site."""
    profiles = default_throughput_table().profiles
    return Workload.from_columns(
        f"one {profile}",
        ids=[1],
        submit=[0.0],
        run=[V100_RUN_S],
        cpus=[1],
        gpu_milli=[1000],
        gpu_types=[ANY_GPU],
        ref_device=[0],
        ref_devices=(REFERENCE_DEVICE,),
        profile=[profiles.index(profile)],
        profiles=profiles,
    )


def steps_per_s(profile: str, device: str) -> float:
    rate = default_throughput_table().steps_per_s(profile, 1, default_catalogue().get(device))
    assert rate is not None
    return rate


def test_a_resnet_50_job_on_an_idle_site_goes_to_the_v100s_and_runs_at_v100_speed() -> None:
    profile = "ResNet-50 (batch size 64)"  # 4.4 steps/s on a V100, 2.6 on a P100, 0.6 on a K80
    schedule = run(one_job(profile), AWARE)
    assert POOLS[int(schedule.pool[0])] == "v100"
    assert schedule.start[0] == 0.0 and schedule.end[0] == pytest.approx(V100_RUN_S)


def test_a_recommendation_job_avoids_the_v100s_where_it_is_measured_slowest() -> None:
    profile = "Recommendation (batch size 512)"
    v100, p100, k80 = (steps_per_s(profile, d) for d in ("V100-16GB", "P100-16GB", "K80"))
    assert v100 < k80 < p100  # the table's own finding, which a peak-FLOPS model would invert
    schedule = run(one_job(profile), AWARE)
    assert POOLS[int(schedule.pool[0])] != "v100"
    assert POOLS[int(schedule.pool[0])] == "p100"
    assert schedule.end[0] == pytest.approx(V100_RUN_S * v100 / p100)  # under half an hour


def test_under_load_throughput_aware_fifo_finishes_jobs_sooner_than_speed_blind_fifo() -> None:
    # Gavel's mix at its highest rate, 2.6 jobs/h; the last 500 of 1,500 jobs (ids 1001..1500)
    # are measured, once a queue has had time to form.
    workload = gavel_workload(1500, 2.6, seed=0)
    first, end = 1000, 1500

    def mean_jct(policy: str) -> float:
        schedule = run(workload, policy)
        jct = (schedule.end - workload.submit)[first:end]
        assert np.all(np.isfinite(jct))  # every measured job ran to completion
        return float(jct.mean())

    assert mean_jct(AWARE) < mean_jct(AGNOSTIC)
