"""The loop's hold decision is the simulator's: `Placement.choose` with holds, on a live network.

No database: a `LiveNetwork` built from rows as the control plane builds it (one ZJK site with
its region's hourly curves), and the workload the loop would build at 06:30 (+08:00).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from computility.network import load_network
from computility.scheduler.candidates import LoadView
from computility.scheduler.placement import Placement
from computility.server.live import Demand, LiveNetwork, PoolRow, SiteRow, cost_time
from computility.server.shifting import best_start, decide_holds

AT = datetime.fromisoformat("2026-12-07T06:30:00+08:00").timestamp()
NOON = datetime.fromisoformat("2026-12-07T12:00:00+08:00").timestamp()
EVENING = datetime.fromisoformat("2026-12-07T18:00:00+08:00").timestamp()


def _live() -> LiveNetwork:
    base = load_network("default")
    zjk = next(s for s in base.sites if s.region == "ZJK")
    site = SiteRow(id="zjk", owner="acme", region="ZJK", lat=zjk.lat, lon=zjk.lon, pue=1.3,
                   electricity_price_micro=500_000, carbon_kg_per_kwh=0.5,
                   electricity_curve=tuple(zjk.electricity_price_curve),
                   carbon_curve=tuple(zjk.carbon_curve), allowed_tenants=None, online=True)
    pools = [PoolRow("zjk", "cpu", "EPYC-7763", 64, 64, 500_000, 64),
             PoolRow("zjk", "big", "XEON-8380", 64, 64, 900_000, 64)]
    return LiveNetwork(base, [site], pools)


def _demand(policy: str, deadline: float | None, run_s: float = 3600.0) -> Demand:
    return Demand(cpus=1, gpu_milli=0, devices=None, run_s=run_s, timeout_s=2 * run_s,
                  ref_device=None, policy=policy, location=None, rules=None, precision="fp32",
                  deadline_at=deadline)


def _placement(live: LiveNetwork, demands: list[Demand]) -> Placement:
    workload = live.workload(list(range(len(demands))), demands, ["alice"] * len(demands), AT)
    return live.placement(workload, demands[0].policy, live.speed(workload))


NIGHT = datetime.fromisoformat("2026-12-07T20:30:00+08:00").timestamp()
MORNING_AFTER = datetime.fromisoformat("2026-12-08T10:00:00+08:00").timestamp()


@pytest.mark.parametrize(("policy", "at", "deadline", "until"), [
    ("greenest", AT, EVENING, "2026-12-07T12:00:00+08:00"),  # the sun's carbon dip
    ("cheapest", AT, EVENING, None),  # power only gets dearer until the evening
    ("cheapest", NIGHT, MORNING_AFTER, "2026-12-08T04:00:00+08:00"),  # the night's low price
])
def test_the_loop_holds_exactly_where_and_when_the_simulators_placement_would(
    policy: str, at: float, deadline: float, until: str | None,
) -> None:
    live = _live()
    workload = live.workload([0], [_demand(policy, deadline)], ["alice"], at)
    placement = live.placement(workload, policy, live.speed(workload))
    free = np.array([64, 64], np.int64)
    start = best_start(placement, 0, at, free)
    load = LoadView(capacity=free, free=free, queued=np.zeros(2, np.int64), backlog=np.zeros(2))
    choice = placement.choose(0, cost_time(at), load, allow_hold=True)
    assert start is not None
    assert (start.pool, start.hold_s) == (choice.pool, choice.held_s)
    if until is None:
        assert start.hold_s == 0.0
    else:
        assert at + start.hold_s == pytest.approx(datetime.fromisoformat(until).timestamp())
        assert start.figure < start.now_figure


def test_no_hold_under_balanced_without_a_deadline_or_too_close_to_it() -> None:
    live = _live()
    free = np.array([64, 64], np.int64)
    for demand in (_demand("balanced", EVENING), _demand("greenest", None),
                   _demand("greenest", AT + 5400)):
        assert best_start(_placement(live, [demand]), 0, AT, free) is None


def test_no_pool_with_room_means_no_decision() -> None:
    live = _live()
    placement = _placement(live, [_demand("greenest", EVENING)])
    assert best_start(placement, 0, AT, np.zeros(2, np.int64)) is None


def test_alike_tasks_share_one_decision_and_kinds_past_the_budget_wait_for_the_next_cycle(
) -> None:
    live = _live()
    demands = [_demand("greenest", EVENING)] * 2 + [_demand("greenest", EVENING, 1800.0)]
    placement = _placement(live, demands)
    rows = [int(np.flatnonzero(placement.tasks.ids == i)[0]) for i in range(3)]
    decided = decide_holds(placement, rows, ["a", "a", "b"], [EVENING] * 3,
                           np.array([64, 64], np.int64), AT, "CNY", 480, budget=1)
    assert decided.scored == 1 and decided.deferred == {2}
    assert set(decided.held) == {0, 1}
    until, reason = decided.held[0]
    assert until == pytest.approx(NOON)
    assert reason.startswith("held until 12:00 (+08:00) for greener hours: ")
    assert reason.endswith("; deadline 2026-12-07 18:00")
