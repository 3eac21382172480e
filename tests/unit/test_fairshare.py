"""Decayed-usage fair share: CU-seconds decayed with a half-life; the least usage ranks first."""

from __future__ import annotations

import math

import numpy as np
import pytest

from computility.scheduler.fairshare import DEFAULT_HALF_LIFE_S, FairShare


def decayed_integral(rate: float, dt: float, half_life: float, steps: int = 200_000) -> float:
    """Usage after running at `rate` for `dt`: each moment's use decayed to the end, summed
    with the midpoint rule."""
    width = dt / steps
    ages = dt - (np.arange(steps) + 0.5) * width
    return float(np.sum(rate * 2.0 ** (-ages / half_life)) * width)


def test_the_default_half_life_is_seven_days() -> None:
    assert DEFAULT_HALF_LIFE_S == 7 * 24 * 3600.0


@pytest.mark.parametrize("dt", [1.0, 100.0, 350.0, 5_000.0])
def test_usage_at_a_constant_rate_is_the_decayed_integral(dt: float) -> None:
    fair = FairShare(2, half_life_s=100.0)
    fair.started(1, cu=10.0, now=0.0)
    fair.advance(dt)
    assert float(fair.usage[1]) == pytest.approx(decayed_integral(10.0, dt, 100.0), rel=1e-6)
    assert float(fair.usage[0]) == 0.0


def test_one_half_life_at_a_constant_rate_accrues_half_of_rate_times_half_life_over_ln2() -> None:
    fair = FairShare(1, half_life_s=100.0)
    fair.started(0, cu=10.0, now=0.0)
    fair.advance(100.0)
    assert float(fair.usage[0]) == pytest.approx(10.0 * 100.0 / math.log(2.0) * 0.5)


def test_usage_is_the_same_however_the_time_is_cut_into_steps() -> None:
    one = FairShare(1, half_life_s=50.0)
    many = FairShare(1, half_life_s=50.0)
    one.started(0, 3.0, 0.0)
    many.started(0, 3.0, 0.0)
    one.advance(120.0)
    for now in np.linspace(0.0, 120.0, 241)[1:]:
        many.advance(float(now))
    assert float(many.usage[0]) == pytest.approx(float(one.usage[0]), rel=1e-12)


def test_events_a_fraction_of_a_second_apart_lose_no_precision() -> None:
    one = FairShare(1)
    many = FairShare(1)
    one.started(0, 8.0, 0.0)
    many.started(0, 8.0, 0.0)
    one.advance(1000.0)
    for step in range(1, 10_001):
        many.advance(step * 0.1)
    assert float(many.usage[0]) == pytest.approx(float(one.usage[0]), rel=1e-9)
    assert float(one.usage[0]) == pytest.approx(decayed_integral(8.0, 1000.0, DEFAULT_HALF_LIFE_S))


def test_short_runs_accrue_about_rate_times_time() -> None:
    fair = FairShare(1)  # a week's half-life: ten seconds barely decay
    fair.started(0, cu=4.0, now=0.0)
    fair.advance(10.0)
    assert float(fair.usage[0]) == pytest.approx(40.0, rel=1e-5)


def test_with_nothing_running_usage_halves_every_half_life() -> None:
    fair = FairShare(1, half_life_s=60.0)
    fair.started(0, cu=2.0, now=0.0)
    fair.finished(0, cu=2.0, now=30.0)
    after_run = float(fair.usage[0])
    assert after_run > 0
    fair.advance(90.0)
    assert float(fair.usage[0]) == pytest.approx(after_run / 2)
    fair.advance(150.0)
    assert float(fair.usage[0]) == pytest.approx(after_run / 4)


def test_usage_accrues_only_while_tasks_run() -> None:
    fair = FairShare(1, half_life_s=1e12)  # no decay worth speaking of
    fair.started(0, cu=2.0, now=10.0)
    fair.started(0, cu=3.0, now=20.0)
    fair.finished(0, cu=2.0, now=30.0)
    fair.finished(0, cu=3.0, now=40.0)
    fair.advance(100.0)
    # 2 CU over [10, 30] and 3 CU over [20, 40]: 40 + 60 CU-seconds.
    assert float(fair.usage[0]) == pytest.approx(100.0, rel=1e-9)
    assert float(fair.rate[0]) == 0.0


def test_time_going_backwards_changes_nothing() -> None:
    fair = FairShare(1, half_life_s=100.0)
    fair.started(0, 1.0, 0.0)
    fair.advance(50.0)
    before = float(fair.usage[0])
    fair.advance(20.0)
    assert float(fair.usage[0]) == before


def test_the_tenant_with_least_usage_ranks_first() -> None:
    fair = FairShare(3, half_life_s=1000.0)
    fair.started(2, cu=5.0, now=0.0)
    fair.started(0, cu=1.0, now=0.0)
    fair.advance(10.0)
    # Tenant 1 ran nothing, tenant 0 ran 1 CU, tenant 2 ran 5 CU.
    assert fair.ranks().tolist() == [1, 0, 2]


def test_equal_usage_ranks_by_tenant_index() -> None:
    fair = FairShare(3, half_life_s=1000.0)
    assert fair.ranks().tolist() == [0, 1, 2]
    fair.started(0, cu=2.0, now=0.0)
    fair.started(1, cu=3.0, now=0.0)
    fair.started(2, cu=2.0, now=0.0)
    fair.advance(10.0)
    assert fair.ranks().tolist() == [0, 2, 1]


def test_old_usage_decays_below_recent_usage() -> None:
    fair = FairShare(2, half_life_s=100.0)
    fair.started(0, cu=10.0, now=0.0)
    fair.finished(0, cu=10.0, now=10.0)  # ~100 CU-s, long ago by the end
    fair.started(1, cu=1.0, now=500.0)
    fair.advance(540.0)  # ~40 CU-s, just now; tenant 0 has decayed five half-lives to ~3
    assert float(fair.usage[0]) < float(fair.usage[1])
    assert fair.ranks().tolist() == [0, 1]


def test_a_fair_share_needs_tenants_and_a_positive_half_life() -> None:
    with pytest.raises(ValueError, match="at least one tenant"):
        FairShare(0)
    with pytest.raises(ValueError, match="half-life must be positive"):
        FairShare(2, half_life_s=0.0)
