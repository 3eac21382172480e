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

from benchmarks import accasim_compare, lublin_windows, swf_replay


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


BENCHMARKS: dict[str, Callable[[bool], str]] = {
    "lublin_windows": _lublin_windows,
    "accasim_compare": _accasim,
    "swf_replay": _swf_replay,
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
