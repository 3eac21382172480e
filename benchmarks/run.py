"""Run the benchmarks; with --ci, at a tenth of their size with a floor of half their target.

A CI-size run that falls below its floor exits non-zero, so a performance regression fails CI.
Full-size runs: `python -m benchmarks.NAME` (see docs/benchmarks.md).

    python -m benchmarks.run --ci
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from benchmarks import (
    accasim_compare,
    agent_latency,
    batch_placement,
    control_plane,
    dashboard_pages,
    decision_latency,
    executor_map,
    gavel_heterogeneity,
    load,
    lublin_windows,
    million_tasks,
    policy_table,
    swf_replay,
)


def _lublin_windows(ci: bool) -> str:
    result = lublin_windows.measure()
    ratio = float(result["fcfs_over_easy"])  # type: ignore[arg-type]
    # A schedule quality figure, deterministic: the full target applies at any size.
    if ratio < lublin_windows.TARGET_RATIO:
        raise AssertionError(f"FCFS/EASY bounded slowdown {ratio:.1f} < 10")
    return f"FCFS/EASY mean bounded slowdown over 10 windows = {ratio:.1f} (target >= 10)"


def _accasim(ci: bool) -> str:
    floor = accasim_compare.TARGET_SPEEDUP / 2 if ci else accasim_compare.TARGET_SPEEDUP
    result = accasim_compare.main(["--repeat", "3"], floor=floor)
    fifo = result["fifo"]
    return (f"FIFO {fifo['speedup_median']:.0f}x faster than AccaSim, "
            f"{fifo['jobs_with_same_start']}/{fifo['jobs']} identical starts (floor {floor:.0f}x)")


def _swf_replay(ci: bool) -> str:
    jobs = swf_replay.TARGET_JOBS // 10 if ci else swf_replay.TARGET_JOBS
    limit = swf_replay.TARGET_WALL_S * jobs / swf_replay.TARGET_JOBS * (2 if ci else 1)
    measure = swf_replay.measure_in_process if ci else swf_replay.measure
    result = measure(jobs, "easy")
    wall = float(result["wall_s"])  # type: ignore[arg-type]
    peak = float(result["peak_rss_mb"])  # type: ignore[arg-type]
    if wall > limit or peak > swf_replay.TARGET_PEAK_MB:
        raise AssertionError(f"{jobs} jobs: {wall:.2f} s (limit {limit:.2f} s), {peak:.0f} MiB")
    return f"{jobs} SWF jobs under EASY in {wall:.2f} s (limit {limit:.2f} s), {peak:.0f} MiB"


def _gavel_heterogeneity(ci: bool) -> str:
    g = gavel_heterogeneity
    # A tenth of the work: one seed of three, and 1,800 jobs of 6,000 (window 1200..1499).
    jobs, seeds = (g.JOBS * 3 // 10, g.SEEDS[:1]) if ci else (g.JOBS, g.SEEDS)
    ceiling = g.CI_RATIO if ci else g.TARGET_RATIO
    result = g.measure(jobs, seeds)
    ratios = {rate: v["mean_ratio"] for rate, v in result["per_rate"].items()}
    shown = ", ".join(f"{rate}/h {ratio:.3f}" for rate, ratio in ratios.items())
    if max(ratios.values()) > ceiling:
        raise AssertionError(f"throughput-aware/agnostic mean JCT above {ceiling}: {shown}")
    return (
        f"throughput-aware/agnostic FIFO mean JCT, {jobs} jobs x {len(seeds)} seed(s): "
        f"{shown} (ceiling {ceiling} at every rate)"
    )


def _policy_table(ci: bool) -> str:
    # A tenth of the tasks; balanced may then be up to twice as far (40 %) from the best policy,
    # while "every task completes" and "greenest: least carbon, no missed deadline" stay whole.
    tasks = policy_table.TASKS // 10 if ci else policy_table.TASKS
    tolerance = policy_table.BALANCED_TOLERANCE * (2 if ci else 1)
    result = policy_table.measure(tasks)
    failed = policy_table.verdict(result, tolerance)
    if failed:
        raise AssertionError("; ".join(failed))
    gaps = result["balanced_gap"]
    assert isinstance(gaps, dict)
    shown = ", ".join(f"{k} {v:+.1%}" for k, v in gaps.items())
    return (f"{tasks} synthetic tasks, 8 policies: all complete, greenest least carbon with no "
            f"missed deadline; balanced vs best: {shown} (limit {tolerance:.0%})")


def _batch_placement(ci: bool) -> str:
    b = batch_placement
    # A tenth of the batch (10,000 tasks, same network); the rate floor is half the target, and
    # the exact solve may take twice a tenth of its target (its work grows with the batch).
    tasks = b.TASKS // 10 if ci else b.TASKS
    floor = b.TARGET_RATE / 2 if ci else b.TARGET_RATE
    limit = b.TARGET_EXACT_S * tasks / b.TASKS * (2 if ci else 1)
    # At a tenth of the size one pass takes ~0.1 s, so five passes (median) steady the figure.
    result = b.measure(tasks, repeats=5 if ci else b.REPEATS)
    fast, exact = result["fast"], result["exact"]
    assert isinstance(fast, list) and isinstance(exact, list)
    rates = {str(r["policy"]): float(r["placements_per_s"]) for r in fast}
    # The target is the headline policy's, at full size and in CI alike; the others are shown.
    slow = rates[b.HEADLINE] < floor
    # At full size only the OR-Tools solve is held to the time target (HiGHS alone is slower).
    held = [r for r in exact if ci or "OR-Tools" in str(r["solver"])]
    late = [r for r in held if float(r["wall_s"]) > limit]
    shown = ", ".join(
        f"{r['policy']} {r['wall_s']:.2f} s gap {r['gap']:.3%} (greedy {r['greedy_gap']:.2%})"
        for r in exact
    )
    line = (
        f"{tasks} tasks on {b.NETWORK}: {rates[b.HEADLINE]:,.0f} placements/s under "
        f"{b.HEADLINE} (slowest policy {min(rates.values()):,.0f}/s, floor {floor:,.0f}); "
        f"exact {shown} (limit {limit:.1f} s)"
    )
    if slow or late:
        raise AssertionError(line)
    return line


def _decision_latency(ci: bool) -> str:
    d = decision_latency
    # A tenth of the tasks; the p99 may be twice the target (half its strictness).
    tasks = d.TASKS // 10 if ci else d.TASKS
    limit = d.TARGET_P99_MS * (2 if ci else 1)
    result = d.measure(tasks)
    decide, full = result["decision_ms"], result["full_scoring_ms"]
    line = (
        f"{result['decisions']} decisions on {result['sites']} sites: p99 {decide['p99']:.3f} ms "
        f"(full scoring of ~{result['full_scoring_candidates_mean']:.0f} candidates: p99 "
        f"{full['p99']:.3f} ms; limit {limit:.0f} ms)"
    )
    if max(decide["p99"], full["p99"]) > limit:
        raise AssertionError(line)
    return line


def _million_tasks(ci: bool) -> str:
    m = million_tasks
    # A tenth of the tasks, allowed twice a tenth of the time; memory is held to the full target.
    tasks = m.TARGET_TASKS // 10 if ci else m.TARGET_TASKS
    limit = m.TARGET_WALL_S * tasks / m.TARGET_TASKS * (2 if ci else 1)
    result = m.measure(tasks)
    line = (
        f"sim --synthetic {tasks} --network generated:1000 --policy balanced: "
        f"{result['wall_s']:.1f} s (limit {limit:.0f} s), {result['peak_rss_mb']:,.0f} MiB "
        f"(limit {m.TARGET_PEAK_MB:,.0f}), {result['completed']:,} completed"
    )
    if result["wall_s"] > limit or result["peak_rss_mb"] > m.TARGET_PEAK_MB:
        raise AssertionError(line)
    return line


def _control_plane(ci: bool) -> str:
    c = control_plane
    # Every section on SQLite and PostgreSQL: a tenth of each size, floor half each target (the
    # cycle: a tenth of the tasks on the same 1,000 sites, within twice a tenth of the target).
    results, missed = c.measure(["sqlite", "postgresql"], list(c.SECTIONS), ci)
    line = "; ".join(
        f"{db} {name}: {c.summary(name, r)}" for db, out in results.items()
        for name, r in out.items()
    )
    if missed:
        raise AssertionError(f"below floor: {'; '.join(missed)} ({line})")
    return line


def _load(ci: bool) -> str:
    # A tenth of the clients, rate and durations on both databases; 0 errors, p99 within twice
    # the target, memory at the end within 1.1x of after the warm-up.
    results, missed = load.measure(["sqlite", "postgresql"], ci)
    line = "; ".join(f"{db}: {load.summary(r)}" for db, r in results.items())
    if missed:
        raise AssertionError(f"below floor: {'; '.join(missed)} ({line})")
    return line


def _agent_latency(ci: bool) -> str:
    a = agent_latency
    # A tenth of each (50 tasks, 60 s idle); floor half each target (p50 400 ms, p99 2 s, 2 %).
    tasks = a.TASKS // 10 if ci else a.TASKS
    idle_s = a.IDLE_S / 10 if ci else a.IDLE_S
    result = a.measure(tasks, idle_s)
    line = a.summary(result)
    missed = a.verdict(result, ci)
    if missed:
        raise AssertionError(f"{line}: {'; '.join(missed)}")
    return line


def _executor_map(ci: bool) -> str:
    e = executor_map
    # A tenth of the inputs (100, two tasks) within twice a tenth of the target time (12 s).
    inputs = e.TARGET_INPUTS // 10 if ci else e.TARGET_INPUTS
    result = e.measure(inputs)
    line = e.summary(result)
    missed = e.verdict(result, ci)
    if missed:
        raise AssertionError(f"{line}: {'; '.join(missed)}")
    return line


def _dashboard_pages(ci: bool) -> str:
    d = dashboard_pages
    # A tenth of the tasks on the same 1,000 sites, every page within twice the target.
    results, missed = d.run(["sqlite", "postgresql"], ci)
    line = "; ".join(
        f"{db}: slowest {max(r['pages'].values(), key=lambda p: p['median_s'])['median_s']:.3f} s "
        f"of {len(r['pages'])} pages ({r['tasks']:,} tasks, {r['sites']:,} sites)"
        for db, r in results.items() if isinstance(r, dict) and "pages" in r)
    if missed:
        raise AssertionError(f"over the limit: {'; '.join(missed)} ({line})")
    return line


BENCHMARKS: dict[str, Callable[[bool], str]] = {
    "lublin_windows": _lublin_windows,
    "accasim_compare": _accasim,
    "swf_replay": _swf_replay,
    "policy_table": _policy_table,
    "gavel_heterogeneity": _gavel_heterogeneity,
    "batch_placement": _batch_placement,
    "decision_latency": _decision_latency,
    "million_tasks": _million_tasks,
    "control_plane": _control_plane,
    "dashboard_pages": _dashboard_pages,
    "load": _load,
    "agent_latency": _agent_latency,
    "executor_map": _executor_map,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ci", action="store_true", help="1/10 size, floor of half the target")
    parser.add_argument("names", nargs="*", default=list(BENCHMARKS))
    args = parser.parse_args()
    failed = []
    for name in args.names:
        t0 = time.perf_counter()
        try:
            line = BENCHMARKS[name](args.ci)
            status = "ok"
        except (AssertionError, SystemExit) as e:
            line, status = str(e), "FAILED"
            failed.append(name)
        print(f"[{status}] {name} ({time.perf_counter() - t0:.1f} s): {line}", flush=True)
    if failed:
        sys.exit(f"benchmarks below their floor: {', '.join(failed)}")


if __name__ == "__main__":
    main()
