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
    gavel_heterogeneity,
    lublin_windows,
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


BENCHMARKS: dict[str, Callable[[bool], str]] = {
    "lublin_windows": _lublin_windows,
    "accasim_compare": _accasim,
    "swf_replay": _swf_replay,
    "policy_table": _policy_table,
    "gavel_heterogeneity": _gavel_heterogeneity,
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
