"""Replay a 200,000-job SWF through `computility sim` and measure wall time and peak memory.

The trace is lublin_256.swf tiled 20 times back to back (ids and submit times shifted), replayed
under EASY on its 256-processor machine. The whole command is timed, reading and reporting
included, in a child process whose peak resident memory is measured.
Target: <= 10 s and <= 1 GB.

    python -m benchmarks.swf_replay [--jobs 200000] [--queue easy]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import lublin_path, peak_rss_mb, record, tiled_swf
from computility.sim.run import SimRequest, simulate

TARGET_JOBS = 200_000
TARGET_WALL_S = 10.0
TARGET_PEAK_MB = 1024.0
LUBLIN_JOBS = 10_000


def measure_in_process(jobs: int, queue: str) -> dict[str, object]:
    """Read + replay + summarise inside this process: no interpreter start-up or imports.

    At a tenth of the size (CI), start-up would be a third of the time measured; this keeps the
    check about the simulator.
    """
    copies = max(1, -(-jobs // LUBLIN_JOBS))
    with tempfile.TemporaryDirectory() as tmp:
        trace = tiled_swf(lublin_path(), copies, Path(tmp) / f"lublin_x{copies}.swf")
        t0 = time.perf_counter()
        outcome = simulate(SimRequest(trace=str(trace), limit=jobs, queues=(queue,)))
        wall = time.perf_counter() - t0
    return {"jobs": len(outcome.workload), "queue": queue, "wall_s": wall,
            "peak_rss_mb": peak_rss_mb()}


def measure(jobs: int, queue: str) -> dict[str, object]:
    copies = max(1, -(-jobs // LUBLIN_JOBS))
    with tempfile.TemporaryDirectory() as tmp:
        trace = tiled_swf(lublin_path(), copies, Path(tmp) / f"lublin_x{copies}.swf")
        cmd = [sys.executable, "-m", "computility", "sim", "--trace", str(trace),
               "--limit", str(jobs), "--queue", queue, "--json"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"computility sim failed ({proc.returncode}): {proc.stderr.strip()}")
    report = json.loads(proc.stdout)
    result = report["results"][0]
    return {
        "command": " ".join(["computility", *cmd[3:]]),
        "jobs": report["jobs"],
        "queue": queue,
        "wall_s": wall,
        "replay_wall_s": result["wall_s"],
        "jobs_per_s": report["jobs"] / wall,
        "events_per_s": result["events_per_s"],
        "peak_rss_mb": peak_rss_mb(children=True),
        "mean_bounded_slowdown": result["mean_bounded_slowdown"],
        "target_wall_s_at_200k": TARGET_WALL_S,
        "target_peak_mb": TARGET_PEAK_MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=TARGET_JOBS)
    parser.add_argument("--queue", default="easy")
    args = parser.parse_args()
    result = measure(args.jobs, args.queue)
    record(f"swf_replay_{args.jobs}_{args.queue}", result)
    limit = TARGET_WALL_S * args.jobs / TARGET_JOBS
    if float(result["wall_s"]) > limit or float(result["peak_rss_mb"]) > TARGET_PEAK_MB:  # type: ignore[arg-type]
        raise SystemExit(f"missed target: {result['wall_s']:.2f} s (limit {limit:.1f} s), "
                         f"{result['peak_rss_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
