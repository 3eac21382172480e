"""Speed and agreement against a peer simulator: AccaSim on lublin_256 (10,000 jobs, 256 procs).

Ours is timed end to end in-process (read the trace, replay, summarise), best of `--repeat` runs.
AccaSim's wall times are those recorded with benchmarks/accasim_baseline.py (tests/data/accasim),
or measured now with `--accasim-python PYTHON` (a Python that has `pip install accasim`).
Target: >= 100x faster than AccaSim's FIFO with the same start time for every job. AccaSim's EASY
lets backfills delay the head job, so only its speed is compared, not its schedule.

    python -m benchmarks.accasim_compare [--repeat 3] [--accasim-python /path/to/python]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import lublin_path, record
from computility.sim.run import SimRequest, simulate

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "data" / "accasim"
BASELINE_SCRIPT = Path(__file__).resolve().parent / "accasim_baseline.py"
TARGET_SPEEDUP = 100.0
DISPATCHERS = {"fifo": "fcfs", "easy": "easy"}


def recorded(dispatcher: str) -> dict[str, Any]:
    with gzip.open(REFERENCE / f"lublin_256-{dispatcher}.json.gz", "rt") as f:
        data: dict[str, Any] = json.load(f)
    return data


def live(dispatcher: str, python: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "accasim.json"
        subprocess.run(
            [python, str(BASELINE_SCRIPT), "--trace", str(lublin_path()),
             "--dispatcher", dispatcher, "--out", str(out)],
            check=True, capture_output=True,
        )
        data: dict[str, Any] = json.loads(out.read_text())
    return data


def ours(queue: str, repeat: int) -> tuple[list[float], dict[int, float]]:
    times = []
    starts: dict[int, float] = {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        outcome = simulate(SimRequest(trace=str(lublin_path()), queues=(queue,)))
        times.append(time.perf_counter() - t0)
        s = outcome.runs[0].schedule
        starts = {int(i): float(x) for i, x in zip(outcome.workload.ids, s.start, strict=True)}
    return times, starts


def measure(repeat: int, accasim_python: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"trace": str(lublin_path()), "repeat": repeat}
    for dispatcher, queue in DISPATCHERS.items():
        peer = live(dispatcher, accasim_python) if accasim_python else recorded(dispatcher)
        times, starts = ours(queue, repeat)
        peer_starts = {int(k): float(v) for k, v in peer["starts"].items()}
        same = sum(1 for k, v in peer_starts.items() if starts.get(k) == v)
        result[dispatcher] = {
            "ours_queue": queue,
            "ours_wall_s_best": min(times),
            "ours_wall_s_median": statistics.median(times),
            "accasim_wall_s": peer["wall_s"],
            "accasim_source": "measured now" if accasim_python else "recorded",
            "speedup_best": peer["wall_s"] / min(times),
            "speedup_median": peer["wall_s"] / statistics.median(times),
            "jobs_with_same_start": same,
            "jobs": len(peer_starts),
        }
    return result


def main(argv: list[str] | None = None, floor: float = TARGET_SPEEDUP) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--accasim-python", default=None)
    args = parser.parse_args(argv)
    result = measure(args.repeat, args.accasim_python)
    record("accasim_compare", result)
    fifo = result["fifo"]
    if fifo["jobs_with_same_start"] != fifo["jobs"]:
        sys.exit(f"FCFS differs from AccaSim FIFO on {fifo['jobs'] - fifo['jobs_with_same_start']}"
                 " jobs")
    if fifo["speedup_median"] < floor:
        sys.exit(f"FIFO speedup {fifo['speedup_median']:.0f}x < {floor:.0f}x")
    return result


if __name__ == "__main__":
    main()
