"""A million synthetic tasks on a 1,000-site network through the real command.

    python -m benchmarks.million_tasks                 # 1,000,000 tasks (target <= 60 s, <= 4 GB)
    python -m benchmarks.million_tasks --tasks 100000  # CI size

Runs ``computility sim --synthetic N --network generated:1000 --policy balanced --json`` in a
child process, timing the whole command (start-up, drawing the workload, placement, replay,
metering, report) and reading the child's peak resident memory from the kernel's accounting of
waited-for children (the command is a single process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from benchmarks._common import peak_rss_mb, record

TARGET_TASKS = 1_000_000
TARGET_WALL_S = 60.0
TARGET_PEAK_MB = 4096.0


def measure(tasks: int, seed: int = 0) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "computility", "sim", "--synthetic", str(tasks),
           "--network", "generated:1000", "--policy", "balanced", "--seed", str(seed), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"computility sim failed ({proc.returncode}): {proc.stderr.strip()}")
    result = json.loads(proc.stdout)["results"][0]
    return {
        "command": " ".join(["computility", *cmd[3:]]),
        "tasks": tasks,
        "wall_s": wall,
        "replay_wall_s": result["wall_s"],
        "peak_rss_mb": peak_rss_mb(children=True),
        "completed": result["completed"],
        "rejected": result["rejected"],
        "mean_wait_s": result["mean_wait_s"],
        "mean_jct_s": result["mean_jct_s"],
        "deadline_misses": result["deadline_misses"],
        "data_moved_gb": result["data_moved_gb"],
        "events_per_s": result["events_per_s"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=TARGET_TASKS)
    args = parser.parse_args(argv)
    result = measure(args.tasks)
    record("million_tasks", result)
    limit = TARGET_WALL_S * args.tasks / TARGET_TASKS
    if result["wall_s"] > limit or result["peak_rss_mb"] > TARGET_PEAK_MB:
        raise SystemExit(
            f"{args.tasks} tasks: {result['wall_s']:.1f} s (target {limit:.1f} s), "
            f"{result['peak_rss_mb']:.0f} MiB (target {TARGET_PEAK_MB:.0f} MiB)"
        )
    return result


if __name__ == "__main__":
    main()
