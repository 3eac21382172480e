"""The site queue disciplines, pinned by hand-worked schedules (CONTRACT.md, "Queue disciplines").

Every trace here runs on one pool of 10 processors. A job is (id, submit, run, processors) and,
where it matters, a requested time; each test states the schedule worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from computility.domain.workload import Workload
from computility.scheduler.core import PoolSlots
from computility.sim.engine import replay

Job = tuple[int, float, float, int] | tuple[int, float, float, int, float]


def starts(jobs: list[Job], discipline: str, capacity: int = 10) -> dict[int, float]:
    """Replay `jobs` on one pool and return each job's start time by job id."""
    w = Workload.from_columns(
        "hand-made",
        ids=[j[0] for j in jobs],
        submit=[j[1] for j in jobs],
        run=[j[2] for j in jobs],
        cpus=[j[3] for j in jobs],
        requested=[j[4] if len(j) == 5 else j[2] for j in jobs],
    )
    schedule = replay(w, [PoolSlots("XEON-8380", "cpu", capacity)], discipline)
    return {int(i): float(s) for i, s in zip(w.ids, schedule.start, strict=True)}


HEAD_BLOCKS = [(1, 0, 10, 6), (2, 1, 5, 6), (3, 2, 2, 2)]


def test_fcfs_head_that_does_not_fit_blocks_everyone_behind_it() -> None:
    assert starts(HEAD_BLOCKS, "fcfs") == {1: 0, 2: 10, 3: 10}


def test_easy_backfills_a_short_job_that_ends_before_the_shadow_time() -> None:
    assert starts(HEAD_BLOCKS, "easy") == {1: 0, 2: 10, 3: 2}


def test_easy_refuses_a_backfill_that_would_delay_the_head_reservation() -> None:
    # Head job 2 (8 procs) has shadow time 10 and 2 extra processors. Job 3 fits now (4 free)
    # but ends at 22 > 10 and needs 3 > 2 extra: starting it would delay job 2, so it waits
    # until job 2 ends at 15.
    jobs: list[Job] = [(1, 0, 10, 6), (2, 1, 5, 8), (3, 2, 20, 3)]
    assert starts(jobs, "easy") == {1: 0, 2: 10, 3: 15}


def test_easy_allows_a_long_backfill_that_uses_only_extra_processors() -> None:
    # Head job 2 (6 procs): shadow 10, extra 4. Job 3 (3 procs, ends 22) uses 3 extra; job 4
    # (1 proc, ends 33) uses the last one; job 5 finds no free processor and waits for job 2.
    jobs: list[Job] = [(1, 0, 10, 6), (2, 1, 5, 6), (3, 2, 20, 3), (4, 3, 30, 1), (5, 4, 1, 1)]
    assert starts(jobs, "easy") == {1: 0, 2: 10, 3: 2, 4: 3, 5: 15}
    assert starts(jobs, "fcfs") == {1: 0, 2: 10, 3: 10, 4: 10, 5: 15}


def test_easy_extra_counts_every_job_ending_at_the_shadow_time() -> None:
    # Jobs 1 and 2 both end at 10. Head job 3 (5 procs) needs only one of them, but the extra
    # processors are all 10 free at 10 minus 5, so job 4 (2 procs, ends 102) may backfill.
    jobs: list[Job] = [(1, 0, 10, 4), (2, 0, 10, 4), (3, 1, 5, 5), (4, 2, 100, 2)]
    assert starts(jobs, "easy") == {1: 0, 2: 0, 3: 10, 4: 2}


def test_easy_job_ending_exactly_at_the_shadow_time_may_backfill() -> None:
    jobs: list[Job] = [(1, 0, 10, 6), (2, 1, 5, 8), (3, 2, 8, 4)]
    assert starts(jobs, "easy") == {1: 0, 2: 10, 3: 2}


def test_easy_short_backfill_leaves_the_extra_processors_unchanged() -> None:
    # Head job 2 (7 procs): shadow 10, extra 3. Job 3 ends by the shadow time, so extra stays 3
    # and job 4 (3 procs, ends 52) may still use all of it.
    jobs: list[Job] = [(1, 0, 10, 5), (2, 1, 5, 7), (3, 2, 3, 2), (4, 2, 50, 3)]
    assert starts(jobs, "easy") == {1: 0, 2: 10, 3: 2, 4: 2}


CONSERVATIVE_DIFFERS = [(1, 0, 10, 5), (2, 1, 10, 8), (3, 2, 5, 9), (4, 3, 30, 2)]


def test_conservative_refuses_a_backfill_that_would_delay_any_earlier_reservation() -> None:
    # Job 2 holds [10, 20), job 3 holds [20, 25) with 1 processor spare. Job 4 (2 procs, 30 s)
    # would overlap job 3's reservation, so its earliest slot is 25.
    assert starts(CONSERVATIVE_DIFFERS, "conservative") == {1: 0, 2: 10, 3: 20, 4: 25}


def test_easy_protects_only_the_head_so_the_same_backfill_delays_the_second_job() -> None:
    assert starts(CONSERVATIVE_DIFFERS, "easy") == {1: 0, 2: 10, 3: 33, 4: 3}
    assert starts(CONSERVATIVE_DIFFERS, "fcfs") == {1: 0, 2: 10, 3: 20, 4: 25}


@pytest.mark.parametrize("discipline", ["fcfs", "easy", "conservative"])
def test_a_job_ending_before_its_requested_time_lets_the_next_start_at_once(
    discipline: str,
) -> None:
    # Job 1 asked for 10 s but ends at 5; job 2's reservation at 10 moves to 5.
    jobs: list[Job] = [(1, 0, 5, 6, 10), (2, 1, 10, 8)]
    assert starts(jobs, discipline) == {1: 0, 2: 5}


@pytest.mark.parametrize("discipline", ["fcfs", "easy", "conservative"])
def test_completions_are_handled_before_arrivals_at_the_same_time(discipline: str) -> None:
    jobs: list[Job] = [(1, 0, 10, 10), (2, 10, 10, 10)]
    assert starts(jobs, discipline) == {1: 0, 2: 10}


@pytest.mark.parametrize("discipline", ["fcfs", "easy", "conservative"])
def test_equal_submit_times_are_served_in_job_id_order(discipline: str) -> None:
    jobs: list[Job] = [(7, 0, 10, 10), (3, 0, 10, 10), (5, 0, 10, 10)]
    assert starts(jobs, discipline) == {3: 0, 5: 10, 7: 20}


def test_conservative_reserves_in_order_and_backfills_into_holes() -> None:
    # Job 2 (10 procs) holds [10, 20). Job 3 (4 procs, 8 s) fits in the hole before it.
    jobs: list[Job] = [(1, 0, 10, 6), (2, 1, 10, 10), (3, 2, 8, 4), (4, 3, 8, 4)]
    assert starts(jobs, "conservative") == {1: 0, 2: 10, 3: 2, 4: 20}


def test_a_job_wider_than_the_site_is_rejected_and_the_rest_still_run() -> None:
    w = Workload.from_columns("t", ids=[1, 2], submit=[0, 0], run=[5, 5], cpus=[11, 10])
    schedule = replay(w, [PoolSlots("XEON-8380", "cpu", 10)], "easy")
    assert schedule.rejected.tolist() == [True, False]
    assert "more processors than the site has" in schedule.reasons[0]
    assert np.isnan(schedule.start[0]) and schedule.start[1] == 0


# --- sites with several pools ---------------------------------------------------------------

TWO_GPU_POOLS = [
    PoolSlots("XEON-8380", "cpu", 64),
    PoolSlots("A100-80GB", "gpu", 1000),
    PoolSlots("V100-32GB", "gpu", 1000),
]


def _gpu_tasks(submits: list[float], run: float = 100.0) -> Workload:
    n = len(submits)
    return Workload.from_columns(
        "gpus", ids=list(range(1, n + 1)), submit=submits, run=[run] * n, cpus=[4] * n,
        gpu_milli=[1000] * n,
    )


def test_a_gpu_task_never_lands_on_the_cpu_pool_however_busy_the_gpus() -> None:
    w = _gpu_tasks([0, 1, 2, 3])
    s = replay(w, TWO_GPU_POOLS, "easy")
    assert sorted(s.pool.tolist()[:2]) == [1, 2]
    assert 0 not in s.pool.tolist()
    # Two devices, four 100 s tasks: the last two wait for the first two.
    assert s.start.tolist() == [0, 1, 100, 101]


def test_a_burst_is_routed_as_if_its_tasks_arrived_one_by_one() -> None:
    burst = replay(_gpu_tasks([0, 0, 0, 0]), TWO_GPU_POOLS, "easy")
    assert burst.pool.tolist() == [1, 2, 1, 2]
    assert burst.start.tolist() == [0, 0, 100, 100]
