"""Placement across a network: where each policy sends a task, and when a deadline lets it wait.

Every network here is built by hand with two to four sites that differ in exactly the respect the
policy under test weighs, and every workload is replayed through the scheduler the simulator uses
(`network_scheduler` + `replay`), so these are the decisions a user would see.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from computility.domain.devices import DeviceType, default_catalogue
from computility.domain.money import to_micro
from computility.domain.network import Dataset, DemandLocation, Link, Network, Region
from computility.domain.site import Pool, Site
from computility.domain.workload import Workload
from computility.scheduler.placement import POLICIES, Placement
from computility.sim.engine import Schedule, replay
from computility.sim.run import network_scheduler

START = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=8)))  # local 00:00: curve hour 0
HOUR = 3600.0


def device(name: str) -> DeviceType:
    return default_catalogue().get(name)


XEON = device("XEON-8380")  # 0.1472 CU per core
KUNPENG = device("KUNPENG-920")  # 0.0416 CU per core
A100 = device("A100-80GB")
V100 = device("V100-32GB")


def cpu_pool(
    cores: int = 64, per_node: int = 32, price: float = 1.0, dev: DeviceType = XEON
) -> Pool:
    return Pool("cpu", dev, cores, to_micro(price), devices_per_node=per_node)


def gpu_pool(dev: DeviceType, count: int = 8, per_node: int = 8, price: float = 1.0) -> Pool:
    return Pool("gpu", dev, count, to_micro(price), devices_per_node=per_node)


def site(
    name: str,
    *pools: Pool,
    region: str | None = None,
    carbon: float = 0.5,
    carbon_curve: tuple[float, ...] = (),
    price_curve: tuple[int, ...] = (),
) -> Site:
    return Site(
        name,
        region or name,
        "owner",
        pools or (cpu_pool(),),
        1.2,
        to_micro(0.5),
        carbon,
        electricity_price_curve=price_curve,
        carbon_curve=carbon_curve,
    )


def network(
    *sites: Site,
    datasets: tuple[Dataset, ...] = (),
    demand: tuple[DemandLocation, ...] = (),
) -> Network:
    """The sites, each region joined to every other by a 10 ms, 10 Gbit/s link without egress."""
    names = list(dict.fromkeys(s.region for s in sites))
    regions = tuple(Region(r, r, 30.0, 100.0 + i) for i, r in enumerate(names))
    links = tuple(Link(a, b, 10.0, 10.0, 0) for a in names for b in names if a != b)
    return Network("hand-built", regions, sites, links, datasets=datasets, demand=demand)


def tasks(n: int = 1, **columns: object) -> Workload:
    """`n` tasks of one core for an hour, one a second from time 0, unless columns say else."""
    base: dict[str, object] = {
        "ids": list(range(1, n + 1)),
        "submit": [float(i) for i in range(n)],
        "run": [HOUR] * n,
    }
    base.update(columns)
    return Workload.from_columns("hand-built", **base)  # type: ignore[arg-type]


def run(w: Workload, net: Network, policy: str, seed: int = 0) -> Schedule:
    return replay(w, network_scheduler(w, net, policy, "easy", START, seed))


def placement(w: Workload, net: Network, policy: str = "cheapest") -> Placement:
    scheduler = network_scheduler(w, net, policy, "easy", START)
    assert scheduler.placement is not None
    return scheduler.placement


def sites_of(net: Network, schedule: Schedule) -> list[str]:
    return [net.pools[int(p)][0].id if p >= 0 else "-" for p in schedule.pool]


# ------------------------------------------------------------------ what each policy values


def test_cheapest_sends_a_task_to_the_site_with_the_lower_price() -> None:
    net = network(site("dear", cpu_pool(price=5.0)), site("cheap", cpu_pool(price=1.0)))
    s = run(tasks(3, cpus=[8, 8, 8]), net, "cheapest")
    assert sites_of(net, s) == ["cheap"] * 3
    assert s.start.tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(("policy", "expected"), [("greenest", "clean"), ("cheapest", "dirty")])
def test_greenest_weighs_carbon_where_cheapest_weighs_money(policy: str, expected: str) -> None:
    net = network(
        site("dirty", cpu_pool(price=1.0), carbon=0.9),
        site("clean", cpu_pool(price=5.0), carbon=0.1),
    )
    s = run(tasks(cpus=[8]), net, policy)
    assert sites_of(net, s) == [expected]


def test_fastest_sends_a_task_to_the_faster_device_and_it_runs_at_that_speed() -> None:
    net = network(site("slow", cpu_pool(dev=KUNPENG, price=0.5)), site("fast", cpu_pool(dev=XEON)))
    # Task 1 was timed on a Xeon core, task 2 on a Kunpeng core; both go to the Xeons.
    w = tasks(
        2,
        cpus=[8, 8],
        run=[1000.0, 3538.0],
        ref_device=[0, 1],
        ref_devices=("XEON-8380", "KUNPENG-920"),
    )
    s = run(w, net, "fastest")
    assert sites_of(net, s) == ["fast", "fast"]
    took = (s.end - s.start).tolist()
    assert took == pytest.approx([1000.0, 3538.0 * 0.0416 / 0.1472])


def test_fastest_prefers_an_idle_slow_site_to_a_long_queue_at_a_fast_one() -> None:
    net = network(site("fast", cpu_pool(8, 8, dev=XEON)), site("slow", cpu_pool(8, 8, dev=KUNPENG)))
    # The first task fills the Xeons for 10,000 s; the second would wait ~9,999 s there but
    # takes only 100 x 0.1472 / 0.0416 = 354 s on the idle Kunpengs.
    w = tasks(2, cpus=[8, 8], run=[10_000.0, 100.0], ref_device=[0, 0], ref_devices=("XEON-8380",))
    s = run(w, net, "fastest")
    assert sites_of(net, s) == ["fast", "slow"]
    assert float(s.start[1]) == 1.0
    assert float(s.end[1] - s.start[1]) == pytest.approx(100.0 * 0.1472 / 0.0416)


def test_nearest_sends_each_task_to_the_site_nearest_its_user() -> None:
    demand = (
        DemandLocation("north", "north", 40.0, 116.0, {"A": 40.0, "B": 5.0, "C": 25.0}),
        DemandLocation("south", "south", 23.0, 113.0, {"A": 30.0, "B": 35.0, "C": 8.0}),
    )
    net = network(
        site("a", region="A"), site("b", region="B"), site("c", region="C"), demand=demand
    )
    w = tasks(3, location=[0, 1, 0], locations=("north", "south"))
    s = run(w, net, "nearest")
    assert sites_of(net, s) == ["b", "c", "b"]


def test_round_robin_takes_the_sites_in_turn() -> None:
    net = network(site("a"), site("b"), site("c"))
    s = run(tasks(7), net, "round_robin")
    assert sites_of(net, s) == ["a", "b", "c", "a", "b", "c", "a"]


def test_least_loaded_spreads_a_burst_in_proportion_to_free_capacity() -> None:
    net = network(site("big", cpu_pool(16, 16)), site("small", cpu_pool(8, 8)))
    # Six four-core tasks at once fill 16 + 8 cores exactly: four go big, two go small.
    w = tasks(6, submit=[0.0] * 6, cpus=[4] * 6)
    s = run(w, net, "least_loaded")
    placed = sites_of(net, s)
    assert placed.count("big") == 4
    assert placed.count("small") == 2
    assert s.start.tolist() == [0.0] * 6  # nobody waits while cores are free elsewhere


# ------------------------------------------------------------------ feasibility


@pytest.mark.parametrize("policy", POLICIES)
def test_a_gpu_task_naming_a_device_type_runs_only_where_that_type_is(policy: str) -> None:
    net = network(
        site("a100", gpu_pool(A100, price=1.0)),
        site("v100", gpu_pool(V100, price=5.0)),
    )
    w = tasks(gpu_milli=[1000], gpu_types=[0], gpu_type_sets=(("V100-32GB",),))
    s = run(w, net, policy)
    assert sites_of(net, s) == ["v100"]


def test_a_gpu_task_accepting_any_device_goes_where_the_policy_says() -> None:
    net = network(
        site("a100", gpu_pool(A100, price=1.0)),
        site("v100", gpu_pool(V100, price=5.0)),
    )
    s = run(tasks(gpu_milli=[1000]), net, "cheapest")
    assert sites_of(net, s) == ["a100"]


def test_a_task_wider_than_every_node_is_rejected_naming_every_site() -> None:
    # Each site has 64 cores, but in machines of 32: a 48-core task fits no machine.
    net = network(site("east", cpu_pool(64, 32)), site("west", cpu_pool(64, 32)))
    s = run(tasks(cpus=[48]), net, "cheapest")
    assert s.pool.tolist() == [-1]
    assert math.isnan(float(s.start[0]))
    reason = s.reasons[0]
    assert reason.startswith("no site can run it")
    for name in ("east", "west"):
        assert f"{name} largest node holds 32 cores; the task needs 48" in reason


def test_a_gpu_task_wider_than_every_node_is_rejected_naming_every_site() -> None:
    net = network(site("east", gpu_pool(A100, 16, 8)), site("west", gpu_pool(A100, 16, 8)))
    s = run(tasks(gpu_milli=[16_000]), net, "fastest")
    assert s.pool.tolist() == [-1]
    for name in ("east", "west"):
        assert (
            f"{name} largest node holds 8 of the allowed accelerators; the task needs 16"
            in s.reasons[0]
        )


@pytest.mark.parametrize("policy", ["cheapest", "round_robin", "random"])
def test_a_wide_task_goes_to_the_one_site_whose_machines_can_hold_it(policy: str) -> None:
    net = network(site("thin", cpu_pool(64, 32, price=0.1)), site("wide", cpu_pool(128, 64)))
    s = run(tasks(cpus=[48]), net, policy)
    assert sites_of(net, s) == ["wide"]


def test_rejections_give_the_reason_each_site_cannot_run_a_task() -> None:
    net = network(
        site("cpu-only", cpu_pool()),
        site("a100", gpu_pool(A100)),
        site("small-v100", gpu_pool(V100, 8, 4)),
        site("big-v100", gpu_pool(V100, 16, 8)),
    )
    w = tasks(gpu_milli=[8000], gpu_types=[0], gpu_type_sets=(("V100-32GB",),))
    assert placement(w, net).rejections(0) == {
        "cpu-only": "has no accelerator of the allowed types (V100-32GB)",
        "a100": "has no accelerator of the allowed types (V100-32GB)",
        "small-v100": "largest node holds 4 of the allowed accelerators; the task needs 8",
    }
    assert placement(w, net).candidates_mask(0).tolist() == [False, False, False, True]


def test_rejections_of_a_cpu_task_name_the_sites_without_cpus() -> None:
    net = network(site("gpus", gpu_pool(A100)), site("cpus", cpu_pool()))
    assert placement(tasks(cpus=[4]), net).rejections(0) == {"gpus": "has no CPU pool"}


def test_a_task_reading_data_the_network_does_not_know_has_nowhere_to_run() -> None:
    net = network(site("a"), site("b"))
    w = tasks(dataset=[0], datasets=("ghost",), data_gb=[10.0])
    assert placement(w, net).rejections(0) == {
        "a": "dataset 'ghost' is not known to the network",
        "b": "dataset 'ghost' is not known to the network",
    }


def three_sites_two_copies() -> Network:
    """`h1` and `h2` hold the dataset; `free` does not and is the cheapest of the three."""
    return network(
        site("h1", cpu_pool(price=5.0)),
        site("free", cpu_pool(price=1.0)),
        site("h2", cpu_pool(price=2.0)),
        datasets=(Dataset("corpus", 50.0, ("h1", "h2")),),
    )


def reader(local: bool) -> Workload:
    return tasks(cpus=[8], dataset=[0], datasets=("corpus",), data_gb=[50.0], data_local=[local])


def test_local_data_runs_only_at_a_site_holding_a_copy() -> None:
    net = three_sites_two_copies()
    s = run(reader(local=True), net, "cheapest")
    assert sites_of(net, s) == ["h2"]  # the cheaper holder, never the cheaper non-holder
    assert s.moved_gb is not None and s.moved_gb.tolist() == [0.0]
    assert placement(reader(local=True), net).rejections(0) == {
        "free": "does not hold dataset 'corpus' (residency: local)"
    }


def test_data_that_may_move_follows_the_task_to_the_cheapest_site() -> None:
    net = three_sites_two_copies()
    s = run(reader(local=False), net, "cheapest")
    assert sites_of(net, s) == ["free"]
    assert s.moved_gb is not None and s.moved_gb.tolist() == [50.0]
    # It starts once 50 GB have crossed the 10 Gbit/s link: 10 ms + 400 Gbit / 10 Gbit/s.
    assert float(s.start[0]) == pytest.approx(40.01)


# ------------------------------------------------------------------ deadlines and holds


@pytest.mark.parametrize(
    ("deadline", "expected"),
    [
        (math.nan, "slow"),  # no deadline: the cheaper site, though it takes 3.5 h
        (2 * HOUR, "fast"),  # only the faster site finishes (after 1 h) in time
        (0.5 * HOUR, "fast"),  # neither can: finish as early as possible
    ],
)
def test_cheapest_goes_only_where_the_deadline_is_met(deadline: float, expected: str) -> None:
    net = network(site("slow", cpu_pool(dev=KUNPENG, price=0.5)), site("fast", cpu_pool(dev=XEON)))
    w = tasks(cpus=[8], deadline=[deadline], ref_device=[0], ref_devices=("XEON-8380",))
    s = run(w, net, "cheapest")
    assert sites_of(net, s) == [expected]


GREEN_NOON = tuple(
    0.1 if h == 12 else 0.3 if h in (11, 13) else 0.6 for h in range(24)
)  # kg/kWh: the grid is cleanest at local noon


def green_noon_site() -> Network:
    return network(site("solar", cpu_pool(), carbon_curve=GREEN_NOON))


@pytest.mark.parametrize(
    ("submit", "run_s", "best_start"),
    [
        (0.0, HOUR, 12 * HOUR),  # the cleanest hour
        (1800.0, HOUR, 12 * HOUR),  # submitted mid-hour, still waits for noon
        (0.0, 2 * HOUR, 11 * HOUR),  # 11:00-13:00 averages 0.2, better than 12:00-14:00
    ],
)
def test_greenest_holds_a_task_with_ample_slack_until_its_cleanest_hours(
    submit: float, run_s: float, best_start: float
) -> None:
    deadline = submit + 24 * HOUR
    w = tasks(submit=[submit], run=[run_s], cpus=[8], deadline=[deadline])
    s = run(w, green_noon_site(), "greenest")
    assert s.held_s is not None
    assert float(s.held_s[0]) == pytest.approx(best_start - submit)
    assert float(s.start[0]) == pytest.approx(best_start)
    assert float(s.end[0]) == pytest.approx(best_start + run_s)
    assert float(s.end[0]) <= deadline


def test_greenest_does_not_hold_a_task_whose_slack_is_small() -> None:
    deadline = HOUR + 1800.0  # a hold of even one hour would leave under the safety margin
    w = tasks(run=[HOUR], cpus=[8], deadline=[deadline])
    s = run(w, green_noon_site(), "greenest")
    assert s.held_s is not None and float(s.held_s[0]) == 0.0
    assert float(s.start[0]) == 0.0
    assert float(s.end[0]) <= deadline


def test_a_hold_keeps_a_safety_margin_before_the_deadline() -> None:
    # Noon would end at 13:00, ten minutes before the deadline: inside the margin of
    # max(15 min, half the run) = 30 min. 11:00 (0.3 kg/kWh) is the cleanest start that leaves it.
    deadline = 13 * HOUR + 600.0
    w = tasks(run=[HOUR], cpus=[8], deadline=[deadline])
    s = run(w, green_noon_site(), "greenest")
    assert s.held_s is not None and float(s.held_s[0]) == pytest.approx(11 * HOUR)
    assert float(s.start[0]) == pytest.approx(11 * HOUR)
    assert float(s.end[0]) <= deadline - 1800.0


def test_greenest_does_not_hold_a_task_when_no_cleaner_hour_fits_before_its_deadline() -> None:
    w = tasks(run=[HOUR], cpus=[8], deadline=[8 * HOUR])  # hours 0-7 are all equally dirty
    s = run(w, green_noon_site(), "greenest")
    assert s.held_s is not None and float(s.held_s[0]) == 0.0
    assert float(s.start[0]) == 0.0


def test_a_held_task_whose_site_filled_meanwhile_is_placed_again_and_meets_its_deadline() -> None:
    net = network(
        site("solar", cpu_pool(8, 8), carbon_curve=GREEN_NOON),
        site("flat", cpu_pool(8, 8), carbon=0.55),
    )
    # Task 1 is held at `solar` for noon. Task 2 (no deadline) arrives at 11:30 and fills
    # `solar` for ten hours: its mean there, 0.505 kg/kWh, beats `flat`'s 0.55. At noon task 1
    # would wait until 21:30 at `solar`, past its 14:00 deadline, so it runs at `flat` instead.
    w = tasks(
        2,
        submit=[0.0, 11.5 * HOUR],
        run=[HOUR, 10 * HOUR],
        cpus=[8, 8],
        deadline=[14 * HOUR, math.nan],
    )
    s = run(w, net, "greenest")
    assert sites_of(net, s) == ["flat", "solar"]
    assert s.held_s is not None and s.held_s.tolist() == [12 * HOUR, 0.0]
    assert s.start.tolist() == [12 * HOUR, 11.5 * HOUR]
    assert float(s.end[0]) <= 14 * HOUR


def test_a_task_without_a_deadline_is_never_held() -> None:
    s = run(tasks(run=[HOUR], cpus=[8]), green_noon_site(), "greenest")
    assert s.held_s is not None and float(s.held_s[0]) == 0.0
    assert float(s.start[0]) == 0.0


@pytest.mark.parametrize("policy", ["fastest", "least_loaded", "nearest", "round_robin"])
def test_policies_blind_to_money_and_carbon_never_hold(policy: str) -> None:
    w = tasks(run=[HOUR], cpus=[8], deadline=[24 * HOUR])
    s = run(w, green_noon_site(), policy)
    assert s.held_s is not None and float(s.held_s[0]) == 0.0
    assert float(s.start[0]) == 0.0


def test_cheapest_holds_a_deadline_task_for_the_cheapest_electricity() -> None:
    night = tuple(to_micro(0.1) if h == 3 else to_micro(0.8) for h in range(24))
    net = network(site("tariff", cpu_pool(), price_curve=night))
    w = tasks(run=[HOUR], cpus=[8], deadline=[12 * HOUR])
    s = run(w, net, "cheapest")
    assert s.held_s is not None and float(s.held_s[0]) == pytest.approx(3 * HOUR)
    assert float(s.start[0]) == pytest.approx(3 * HOUR)


# ------------------------------------------------------------------ random


def random_case() -> tuple[Workload, Network]:
    # `gpus` has no CPU pool, so a CPU task's draw is between `a` and `b` only.
    net = network(site("a"), site("b"), site("gpus", gpu_pool(A100)))
    return tasks(60, run=[600.0] * 60), net


def test_random_with_one_seed_gives_one_schedule() -> None:
    w, net = random_case()
    first, second = run(w, net, "random", seed=7), run(w, net, "random", seed=7)
    assert np.array_equal(first.pool, second.pool)
    assert np.array_equal(first.start, second.start)
    assert np.array_equal(first.end, second.end)


def test_random_draws_among_candidates_only_and_another_seed_draws_differently() -> None:
    w, net = random_case()
    one, other = run(w, net, "random", seed=7), run(w, net, "random", seed=8)
    assert set(sites_of(net, one)) == {"a", "b"}
    assert not np.array_equal(one.pool, other.pool)



def test_a_user_location_is_matched_to_the_network_by_name_not_position() -> None:
    demand = (
        DemandLocation("north", "north", 40.0, 116.0, {"A": 40.0, "B": 5.0}),
        DemandLocation("south", "south", 23.0, 113.0, {"A": 5.0, "B": 40.0}),
    )
    net = network(site("a", region="A"), site("b", region="B"), demand=demand)
    # The workload lists the locations in another order than the network does.
    w = tasks(2, location=[0, 1], locations=("south", "north"))
    assert sites_of(net, run(w, net, "nearest")) == ["a", "b"]


# ------------------------------------------------------------------ rules a task spec may carry


def test_spec_rules_rule_out_regions_sites_owners_and_far_sites_with_reasons() -> None:
    from computility.domain.cost import CostModel
    from computility.domain.speed import SpeedModel
    from computility.scheduler.placement import SiteRules

    demand = (DemandLocation("SH", "Shanghai", 31.2, 121.5, {"A": 3.0, "B": 30.0, "C": 12.0}),)
    net = network(site("a", region="A"), site("b", region="B"), site("c", region="C"),
                  demand=demand)
    w = tasks(4, location=[0, 0, 0, 0], locations=("SH",))
    rules = {
        0: SiteRules(regions=frozenset({"B", "C"})),
        1: SiteRules(exclude_sites=frozenset({"a", "c"})),
        2: SiteRules(owners=frozenset({"someone-else"})),
        3: SiteRules(max_latency_ms=15.0),
    }
    devices = [p.device for _, p in net.pools]
    speed = SpeedModel(w, devices, {d.id: d for d in devices})
    p = Placement(net, w, "cheapest", CostModel(net, START), speed, rules=rules)
    assert p.candidates_mask(0).tolist() == [False, True, True]
    assert p.rejections(0) == {"a": "region A is not among the allowed regions"}
    assert p.candidates_mask(1).tolist() == [False, True, False]
    assert p.rejections(1) == {"a": "excluded by the task", "c": "excluded by the task"}
    assert not p.candidates_mask(2).any()
    assert set(p.rejections(2).values()) == {"owner owner is not among the allowed owners"}
    assert p.candidates_mask(3).tolist() == [True, False, True]
    assert p.rejections(3) == {"b": "latency 30.0 ms from the user exceeds max_latency_ms 15"}
