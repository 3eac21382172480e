"""FCFS vs EASY (and conservative) on lublin_256: the whole trace and ten 1,024-job windows.

Windows start at records 0, 896, 1792, ..., 8064; each replays alone on an empty 256-processor
machine with requested time = run time (the trace has none), as in the RLScheduler paper's setup.
Target: mean FCFS bounded slowdown / mean EASY bounded slowdown >= 10 over the windows.

    python -m benchmarks.lublin_windows
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from benchmarks._common import lublin_path, record
from computility.domain.devices import default_catalogue
from computility.domain.workload import Workload
from computility.sim.engine import replay
from computility.sim.metrics import summarize
from computility.sim.run import DEFAULT_START, parse_start, pool_slots
from computility.sim.single import single_network, single_site
from computility.sim.traces import read_trace

WINDOW = 1024
STARTS = tuple(range(0, 8065, 896))
TARGET_RATIO = 10.0
QUEUES = ("fcfs", "easy", "conservative")


def window(w: Workload, first: int, size: int) -> Workload:
    sl = slice(first, first + size)
    cols = {
        k: getattr(w, k)[sl]
        for k in ("ids", "submit", "run", "requested", "cpus", "gpu_milli", "gpu_types",
                  "tenant", "deadline", "lines")
    }
    return replace(w, name=f"{w.name}[{first}:{first + size}]", **cols)


def measure(windows: tuple[int, ...] = STARTS) -> dict[str, object]:
    w = read_trace(str(lublin_path()))
    site = single_network(single_site(w, default_catalogue(), cpus=256))
    slots = pool_slots(site)
    start = parse_start(DEFAULT_START)
    whole = {}
    for q in QUEUES:
        s = replay(w, slots, q)
        summary = summarize(w, s, site, "balanced", q, start)
        whole[q] = {k: summary[k] for k in ("mean_bounded_slowdown", "mean_wait_s",
                                            "utilization", "wall_s")}
    per_window: dict[str, list[float]] = {q: [] for q in QUEUES}
    for first in windows:
        ww = window(w, first, WINDOW)
        for q in QUEUES:
            s = replay(ww, slots, q)
            value = summarize(ww, s, site, "balanced", q, start)["mean_bounded_slowdown"]
            assert isinstance(value, float)
            per_window[q].append(value)
    means = {q: float(np.mean(v)) for q, v in per_window.items()}
    return {
        "trace": str(lublin_path()),
        "whole_trace": whole,
        "window_starts": list(windows),
        "window_mean_bounded_slowdown": per_window,
        "mean_over_windows": means,
        "fcfs_over_easy": means["fcfs"] / means["easy"],
        "target_fcfs_over_easy": TARGET_RATIO,
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    result = measure()
    record("lublin_windows", result)
    ratio = result["fcfs_over_easy"]
    assert isinstance(ratio, float)
    if ratio < TARGET_RATIO:
        raise SystemExit(f"FCFS/EASY bounded slowdown {ratio:.1f} < {TARGET_RATIO}")


if __name__ == "__main__":
    main()
