"""Fair share between tenants: one tenant's long queue cannot starve another.

With several tenants, queues are ordered by (fair-share rank, submit time, id), the rank coming
from decayed usage; a single-tenant workload keeps exact (submit, id) order.
"""

from __future__ import annotations

import numpy as np
import pytest

from computility.domain.workload import Workload
from computility.scheduler.core import PoolSlots
from computility.sim.engine import replay

CORES = 10
RUN_S = 100.0
FLOOD = 10_000


def flood_and_one(small_submit: float, small_cores: int = 1) -> Workload:
    """Tenant `big` queues 10,000 one-core tasks at time 0; tenant `small` submits one task."""
    n = FLOOD + 1
    submit = np.zeros(n)
    submit[-1] = small_submit
    cpus = np.ones(n, np.int64)
    cpus[-1] = small_cores
    tenant = np.zeros(n, np.int32)
    tenant[-1] = 1
    return Workload.from_columns(
        "flood",
        ids=np.arange(1, n + 1),
        submit=submit,
        run=np.full(n, RUN_S),
        cpus=cpus,
        tenant=tenant,
        tenants=("big", "small"),
    )


def small_task_wait(w: Workload, discipline: str) -> float:
    s = replay(w, [PoolSlots("XEON-8380", "cpu", CORES)], discipline)
    small = int(np.flatnonzero(w.tenant == 1)[0])
    assert not s.rejected.any()
    return float(s.start[small] - w.submit[small])


@pytest.mark.parametrize("discipline", ["fcfs", "easy", "conservative"])
@pytest.mark.parametrize("arrives_at", [0.0, 50.0, 30_000.0])
def test_the_other_tenants_single_task_waits_at_most_one_task_run_time(
    discipline: str, arrives_at: float
) -> None:
    w = flood_and_one(arrives_at)
    wait = small_task_wait(w, discipline)
    assert wait <= RUN_S
    # Without fair share it would wait behind the whole flood still queued.
    queued_ahead = FLOOD - CORES * (arrives_at // RUN_S + 1)
    assert queued_ahead * RUN_S / CORES > 10 * RUN_S


@pytest.mark.parametrize("discipline", ["fcfs", "easy", "conservative"])
def test_a_wide_task_of_the_small_tenant_waits_only_for_running_tasks_to_drain(
    discipline: str,
) -> None:
    # It needs the whole machine: it heads the line, so it waits for the ten running tasks.
    w = flood_and_one(50.0, small_cores=CORES)
    assert small_task_wait(w, discipline) <= RUN_S


def test_every_flood_task_still_runs_and_the_machine_never_idles_while_work_waits() -> None:
    w = flood_and_one(50.0)
    s = replay(w, [PoolSlots("XEON-8380", "cpu", CORES)], "easy")
    assert not s.rejected.any()
    makespan = float(s.end.max())
    assert makespan == pytest.approx((FLOOD + 1) / CORES * RUN_S, abs=RUN_S)


def test_the_big_tenants_own_tasks_keep_submit_order_among_themselves() -> None:
    w = flood_and_one(50.0)
    s = replay(w, [PoolSlots("XEON-8380", "cpu", CORES)], "fcfs")
    big = w.tenant == 0
    starts = s.start[big]
    assert bool(np.all(np.diff(starts) >= 0))


def test_a_lone_tenant_is_served_in_submit_order_exactly() -> None:
    single = flood_and_one(50.0)
    one_tenant = Workload.from_columns(
        "flood", ids=single.ids, submit=single.submit, run=single.run, cpus=single.cpus
    )
    s = replay(one_tenant, [PoolSlots("XEON-8380", "cpu", CORES)], "fcfs")
    # The late task is last in (submit, id) order, so it starts last.
    assert float(s.start[-1]) == pytest.approx(float(s.start.max()))
    assert float(s.start[-1]) >= (FLOOD // CORES - 1) * RUN_S
