"""Specification of batch placement: classes of alike tasks, the greedy fill, the exact solve.

Small instances are built straight from a cost table (`TaskClasses.from_matrix`) and checked
against references computed here, independently of the module: capacity sums per pool, an
enumeration of every integral assignment, and the per-task scoring of `Placement.score`. The
realistic instance is a synthetic workload on a generated network, as the benchmark uses.
"""

from __future__ import annotations

import functools
import itertools
import math
from datetime import datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from computility.domain.cost import CostModel
from computility.domain.devices import default_catalogue
from computility.domain.network import Network
from computility.domain.speed import SpeedModel
from computility.domain.throughput import default_throughput_table
from computility.domain.workload import Workload
from computility.network import load_network
from computility.scheduler.batch import (
    Assignment,
    TaskClasses,
    classify,
    exact_assign,
    greedy_fill,
)
from computility.scheduler.placement import POLICIES, LoadView, Placement
from computility.sim.synthetic import synthetic_workload

START = datetime.fromisoformat("2024-01-01T00:00:00+08:00")
SOLVERS = ("ortools", "highs")

# ----------------------------------------------------------------------------- references


def objective(
    cost: np.ndarray, count: np.ndarray, penalty: np.ndarray, placed: np.ndarray
) -> float:
    """The documented objective of a (classes x pools) matrix of placed task counts."""
    used = np.where(placed > 0, cost, 0.0)
    return float((placed * used).sum() + penalty @ (count - placed.sum(axis=1)))


def as_matrix(a: Assignment, n_classes: int, n_pools: int) -> np.ndarray:
    out = np.zeros((n_classes, n_pools), np.int64)
    np.add.at(out, (a.arc_class, a.arc_pool), a.arc_count)
    return out


def brute_force(
    cost: np.ndarray, count: np.ndarray, demand: np.ndarray, free: np.ndarray,
    penalty: np.ndarray,
) -> float:
    """The least objective over every integral assignment that fits (tiny instances only)."""
    n_classes, n_pools = cost.shape

    def splits(c: int) -> list[tuple[int, ...]]:
        pools = [p for p in range(n_pools) if np.isfinite(cost[c, p])]
        out = []
        for xs in itertools.product(range(int(count[c]) + 1), repeat=len(pools)):
            if sum(xs) <= count[c]:
                row = [0] * n_pools
                for p, x in zip(pools, xs, strict=True):
                    row[p] = x
                out.append(tuple(row))
        return out

    best = math.inf
    for rows in itertools.product(*(splits(c) for c in range(n_classes))):
        placed = np.array(rows, np.int64).reshape(n_classes, n_pools)
        if np.all(demand @ placed <= free):
            best = min(best, objective(cost, count, penalty, placed))
    return best


def check_fits(a: Assignment, classes: TaskClasses, free: np.ndarray) -> None:
    """No pool over-committed, no task on a pool its class may not use, no task twice."""
    dense = classes.dense()
    placed = as_matrix(a, classes.n_classes, classes.n_pools)
    assert np.all(classes.demand @ placed <= free)
    assert np.all(np.isfinite(dense[placed > 0]))
    assert np.all(placed.sum(axis=1) <= classes.count)
    assert a.placed + a.unplaced == int(classes.count.sum())


# ----------------------------------------------------------------------------- instances


@st.composite
def instances(draw: st.DrawFn, uniform: bool = False, size: int = 3) -> tuple[
    TaskClasses, np.ndarray
]:
    """A cost table (some entries infeasible), counts, demands and free units."""
    n_classes = draw(st.integers(1, size))
    n_pools = draw(st.integers(1, size))
    cost = np.array(
        draw(st.lists(st.floats(0.5, 20.0), min_size=n_classes * n_pools,
                      max_size=n_classes * n_pools))
    ).reshape(n_classes, n_pools)
    mask = np.array(
        draw(st.lists(st.booleans(), min_size=n_classes * n_pools, max_size=n_classes * n_pools))
    ).reshape(n_classes, n_pools)
    cost = np.where(mask, np.inf, cost)
    count = np.array(draw(st.lists(st.integers(0, 3), min_size=n_classes,
                                   max_size=n_classes)), np.int64)
    if uniform:
        demand = np.full(n_classes, draw(st.integers(1, 3)), np.int64)
    else:
        demand = np.array(draw(st.lists(st.integers(1, 4), min_size=n_classes,
                                        max_size=n_classes)), np.int64)
    free = np.array(draw(st.lists(st.integers(0, 9), min_size=n_pools, max_size=n_pools)),
                    np.int64)
    units = np.maximum(free, 1) + 3
    return TaskClasses.from_matrix(cost, count, demand, units), free


QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- greedy fill


@QUICK
@given(instances(size=5), st.sampled_from(POLICIES), st.integers(0, 2**16))
def test_the_greedy_fill_never_over_commits_a_pool_and_places_only_on_candidates(
    case: tuple[TaskClasses, np.ndarray], policy: str, seed: int
) -> None:
    classes, free = case
    before = free.copy()
    a = greedy_fill(classes, free, policy, np.random.default_rng(seed))
    check_fits(a, classes, free)
    assert np.array_equal(free, before), "the caller's free units are not touched"
    assert np.array_equal(a.usage(), classes.demand @ as_matrix(a, classes.n_classes,
                                                                 classes.n_pools))


@QUICK
@given(instances(size=5), st.sampled_from(POLICIES))
def test_a_task_is_left_out_only_where_no_candidate_has_room_for_it(
    case: tuple[TaskClasses, np.ndarray], policy: str
) -> None:
    classes, free = case
    a = greedy_fill(classes, free, policy)
    left = free - a.usage()
    placed = as_matrix(a, classes.n_classes, classes.n_pools).sum(axis=1)
    for c in np.flatnonzero(placed < classes.count):
        pools, cost = classes.row(int(c))
        assert np.all(left[pools[np.isfinite(cost)]] < classes.demand[c])


def test_cheapest_first_fills_the_cheapest_pool_before_the_next() -> None:
    cost = np.array([[3.0, 1.0, 2.0]])
    classes = TaskClasses.from_matrix(cost, np.array([5]), np.array([2]))
    a = greedy_fill(classes, np.array([10, 4, 5]))
    assert as_matrix(a, 1, 3).tolist() == [[1, 2, 2]]  # 2 fit on pool 1, 2 on pool 2, 1 on 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 30), min_size=1, max_size=6),
    st.integers(1, 40),
    st.integers(1, 3),
)
def test_least_loaded_places_as_one_task_at_a_time_on_the_most_spare_pool(
    units: list[int], n: int, demand: int
) -> None:
    size = np.array(units, np.int64)
    free = np.array([int(u * f) for u, f in zip(units, np.linspace(0.3, 1.0, len(units)),
                                                strict=True)], np.int64)
    classes = TaskClasses.from_matrix(np.zeros((1, size.shape[0])), np.array([n]),
                                      np.array([demand]), pool_units=size)
    placed = as_matrix(greedy_fill(classes, free, "least_loaded"), 1, size.shape[0])[0]
    # Reference: one task at a time to the pool with the largest spare share that has room.
    left, ref = free.copy(), np.zeros_like(free)
    for _ in range(n):
        room = left >= demand
        if not room.any():
            break
        share = np.where(room, left / size, -np.inf)
        p = int(np.argmax(share))
        left[p] -= demand
        ref[p] += 1
    assert placed.sum() == ref.sum()

    def offers(taken: np.ndarray) -> list[float]:
        """The spare shares the tasks were placed at (the same, however ties are broken)."""
        return sorted(
            round((free[p] - j * demand) / size[p], 9)
            for p in range(size.shape[0]) for j in range(int(taken[p]))
        )

    assert offers(placed) == offers(ref)


@pytest.mark.parametrize("policy", ["random", "round_robin"])
def test_random_and_round_robin_spread_a_class_over_its_pools(policy: str) -> None:
    classes = TaskClasses.from_matrix(np.zeros((1, 5)), np.array([50]), np.array([1]),
                                      policy=policy)
    a = greedy_fill(classes, np.full(5, 100), policy, np.random.default_rng(3))
    placed = as_matrix(a, 1, 5)[0]
    assert placed.sum() == 50
    if policy == "round_robin":
        assert placed.max() - placed.min() <= 1
    else:
        assert placed.min() >= 3 and placed.max() <= 25


def test_round_robin_goes_on_from_the_last_pool_chosen() -> None:
    cost = np.zeros((2, 4))
    classes = TaskClasses.from_matrix(cost, np.array([3, 2]), np.array([1, 2]),
                                      policy="round_robin")
    a = greedy_fill(classes, np.full(4, 10), "round_robin")
    placed = as_matrix(a, 2, 4)
    # The first class (fewest units first) takes pools 0, 1, 2; the second goes on at 3, 0.
    assert placed[0].tolist() == [1, 1, 1, 0]
    assert placed[1].tolist() == [1, 0, 0, 1]


# ----------------------------------------------------------------------------- exact assign


@QUICK
@given(instances(), st.sampled_from(SOLVERS))
def test_exact_costs_no_more_than_greedy_and_no_less_than_its_bound(
    case: tuple[TaskClasses, np.ndarray], solver: str
) -> None:
    classes, free = case
    e = exact_assign(classes, free, solver)
    g = greedy_fill(classes, free)
    check_fits(e, classes, free)
    assert e.bound <= e.cost * (1 + 1e-9) + 1e-9
    assert e.cost <= g.cost * (1 + 1e-9) + 1e-9


@QUICK
@given(instances(uniform=True), st.sampled_from(SOLVERS))
def test_with_one_demand_per_pool_exact_equals_the_brute_force_optimum(
    case: tuple[TaskClasses, np.ndarray], solver: str
) -> None:
    classes, free = case
    e = exact_assign(classes, free, solver)
    best = brute_force(classes.dense(), classes.count, classes.demand, free, classes.penalty)
    assert e.kept == "optimal"
    assert e.cost == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert e.bound <= best * (1 + 1e-9) + 1e-9


@QUICK
@given(instances(), st.sampled_from(SOLVERS))
def test_with_mixed_demands_the_bound_holds_below_the_brute_force_optimum(
    case: tuple[TaskClasses, np.ndarray], solver: str
) -> None:
    classes, free = case
    e = exact_assign(classes, free, solver)
    best = brute_force(classes.dense(), classes.count, classes.demand, free, classes.penalty)
    assert e.bound <= best * (1 + 1e-9) + 1e-9
    assert e.cost >= best * (1 - 1e-9) - 1e-9  # rounding may leave it above, never below


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_the_min_cost_flow_and_the_lp_agree_on_unit_demand_instances(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cost = rng.uniform(1.0, 10.0, (20, 12))
    cost[rng.random(cost.shape) < 0.4] = np.inf
    classes = TaskClasses.from_matrix(cost, rng.integers(0, 30, 20), np.ones(20, np.int64))
    free = rng.integers(0, 40, 12)
    flow = exact_assign(classes, free, "ortools")
    lp = exact_assign(classes, free, "highs")
    assert flow.kept == lp.kept == "optimal"
    assert flow.cost == pytest.approx(lp.cost, rel=1e-9)
    check_fits(flow, classes, free)
    check_fits(lp, classes, free)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_the_lower_bound_is_below_every_feasible_assignment(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cost = rng.uniform(1.0, 10.0, (8, 6))
    cost[rng.random(cost.shape) < 0.3] = np.inf
    demand = rng.integers(1, 5, 8)
    classes = TaskClasses.from_matrix(cost, rng.integers(0, 6, 8), demand)
    free = rng.integers(0, 25, 6)
    bounds = [exact_assign(classes, free, s).bound for s in SOLVERS]
    dense = classes.dense()
    for trial in range(30):
        # A random feasible assignment: classes in random order, each task to a random pool
        # with room (or left out).
        left = free.copy()
        placed = np.zeros(dense.shape, np.int64)
        for c in rng.permutation(8):
            for _ in range(int(classes.count[c])):
                ok = np.flatnonzero(np.isfinite(dense[c]) & (left >= demand[c]))
                if ok.shape[0] and rng.random() < 0.9:
                    p = int(rng.choice(ok))
                    placed[c, p] += 1
                    left[p] -= demand[c]
        value = objective(dense, classes.count, classes.penalty, placed)
        assert all(b <= value * (1 + 1e-9) for b in bounds), trial


def test_an_lp_solution_that_rounding_leaves_short_is_reported() -> None:
    # Two classes of 3-unit tasks and one of 2-unit tasks share a 7-unit pool: the LP splits
    # tasks, rounding drops some, and what is dropped is counted.
    cost = np.array([[1.0, 5.0], [1.0, 9.0], [2.0, np.inf]])
    classes = TaskClasses.from_matrix(cost, np.array([2, 2, 3]), np.array([3, 3, 2]))
    e = exact_assign(classes, np.array([7, 3]), "highs")
    check_fits(e, classes, np.array([7, 3]))
    assert e.solver == "LP relaxation (HiGHS), rounded"
    assert e.rounded_out >= e.left_by_rounding >= 0
    assert e.lp_value >= e.bound - 1e-9
    assert e.gap >= 0


def test_an_unknown_solver_is_refused() -> None:
    classes = TaskClasses.from_matrix(np.ones((1, 1)), np.array([1]), np.array([1]))
    with pytest.raises(ValueError, match="unknown solver"):
        exact_assign(classes, np.array([1]), "simplex")


# ----------------------------------------------------------------------------- per-task pools


def test_each_task_gets_one_pool_and_the_longest_runs_get_the_cheapest() -> None:
    classes = TaskClasses.from_matrix(np.array([[2.0, 1.0]]), np.array([3]), np.array([1]))
    classes = TaskClasses(
        **{**{f: getattr(classes, f) for f in TaskClasses.__slots__},
           "run_s": np.array([10.0, 30.0, 20.0])}
    )
    a = greedy_fill(classes, np.array([5, 2]))
    pools = a.pools()
    assert sorted(pools.tolist()) == [0, 1, 1]
    assert pools.tolist() == [0, 1, 1]  # the 10 s task gets the dearer pool
    assert np.array_equal(np.bincount(pools, minlength=2), as_matrix(a, 1, 2)[0])


# ----------------------------------------------------------------------------- classify


@functools.cache
def world(n: int = 1500, sites: int = 40) -> tuple[Network, Workload, SpeedModel, CostModel]:
    network = load_network(f"generated:{sites}", 1)
    drawn = synthetic_workload(n, network, 5)
    network = drawn.network_with_datasets(network)
    devices = [p.device for _, p in network.pools]
    device_of = {d.id: d for d in default_catalogue()}
    device_of.update({d.id: d for d in devices})
    speed = SpeedModel(drawn.workload, devices, device_of, default_throughput_table())
    return network, drawn.workload, speed, CostModel(network, START)


def placement(policy: str) -> Placement:
    network, workload, speed, cost = world()
    return Placement(network, workload, policy, cost, speed, seed=0)


def test_a_class_holds_tasks_with_the_same_demand_and_candidate_pools() -> None:
    p = placement("balanced")
    rows = np.arange(len(p.tasks))
    classes = classify(p, rows)
    assert int(classes.count.sum()) == rows.shape[0]
    for c in range(classes.n_classes):
        members = rows[classes.class_of == c]
        pools, _ = classes.row(c)
        for t in members[:5]:
            need = p.tasks.gpu_milli[t] or p.tasks.cpus[t]
            assert need == classes.demand[c]
            assert np.array_equal(np.flatnonzero(p.candidates_mask(int(t))), pools)


@pytest.mark.parametrize("policy", ["balanced", "cheapest", "fastest", "greenest"])
def test_priced_exactly_a_lone_task_costs_what_placement_scores_it(policy: str) -> None:
    p = placement(policy)
    rows = np.arange(len(p.tasks))
    now = 1800.0
    classes = classify(p, rows, now, curve_step=None)
    units = p.pool_units
    idle = LoadView(units, units.copy(), np.zeros_like(units), np.zeros(units.shape[0]))
    lone = np.flatnonzero(classes.count == 1)
    assert lone.shape[0] > 100
    checked = 0
    for c in lone[:: max(1, lone.shape[0] // 150)]:
        task = int(rows[classes.class_of == c][0])
        ref = p.score(task, now, idle, allow_hold=False)
        pools, cost = classes.row(int(c))
        finite = np.isfinite(cost)
        assert np.array_equal(pools[finite], ref.pools[np.isfinite(ref.score)])
        # Where every candidate misses the deadline the order is by finish (values rescaled).
        assert pools[np.argmin(cost)] == ref.pools[np.argmin(ref.score)]
        deadline = float(p.tasks.deadline[task])
        all_late = policy != "fastest" and bool(np.all(now + ref.finish_s > deadline))
        if not all_late:
            assert np.allclose(cost[finite], ref.score[np.isfinite(ref.score)], rtol=1e-9)
        checked += 1
    assert checked > 100


def test_curves_on_the_run_length_grid_stay_close_to_exact_pricing() -> None:
    p = placement("cheapest")
    rows = np.arange(len(p.tasks))
    grid = classify(p, rows).dense()
    exact = classify(p, rows, curve_step=None).dense()
    ok = np.isfinite(exact)
    assert np.array_equal(ok, np.isfinite(grid))
    # Energy is a minority of money; averaging its price over a run within 2^(1/8) of the true
    # one (and from now, not after the transfer) moves a task's cost by a few percent at most.
    assert np.max(np.abs(grid[ok] / exact[ok] - 1)) < 0.05


@pytest.mark.parametrize("policy", POLICIES)
def test_a_synthetic_batch_is_placed_without_over_commit_on_candidate_pools(policy: str) -> None:
    p = placement(policy)
    w = p.tasks
    rows = np.arange(len(w))
    # A third of every pool is already taken, so that the batch contends for what is left.
    free = p.pool_units - p.pool_units // 3
    classes = classify(p, rows, 0.0, free)
    a = greedy_fill(classes, free, policy, np.random.default_rng(1))
    pools = a.pools()
    placed = np.flatnonzero(pools >= 0)
    need = np.where(w.gpu_milli > 0, w.gpu_milli, w.cpus)
    used = np.bincount(pools[placed], weights=need[placed], minlength=free.shape[0])
    assert np.all(used <= free)
    assert all(p.candidates_mask(int(t))[pools[t]] for t in placed)
    assert a.placed == placed.shape[0] > 0.5 * rows.shape[0]
    if policy in ("balanced", "cheapest"):
        e = exact_assign(classes, free)
        epools = e.pools()
        done = np.flatnonzero(epools >= 0)
        used = np.bincount(epools[done], weights=need[done], minlength=free.shape[0])
        assert np.all(used <= free)
        assert all(p.candidates_mask(int(t))[epools[t]] for t in done)
        assert e.bound <= e.cost <= a.cost * (1 + 1e-9)
