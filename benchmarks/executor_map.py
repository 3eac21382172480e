"""The SDK's executor: Python callables mapped over inputs on the demo network, end to end.

    python -m benchmarks.executor_map          # 1,000 inputs, chunks of 50 (20 tasks)
    python -m benchmarks.executor_map --ci     # 100 inputs (2 tasks)

Target: ``client.executor().map(f, range(1000))`` returns the 1,000 correct results in ≤ 60 s
on the demo network (the real service on SQLite and five emulated sites served by a real agent,
all in this process, on this machine). The time runs from the call to `map` to the last result:
pickling the chunks, uploading one working directory per chunk, one batch submission, placement,
leases, staging, a Python process per task on the site (its own interpreter, after the version
check), the outputs' upload, and the watcher polling, downloading and unpickling each result.
Starting the network is timed apart and not counted.

``--ci``: a tenth of the inputs with a floor of half the target (twice a tenth of the time).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

from benchmarks._common import machine, record

TARGET_INPUTS, TARGET_WALL_S, CHUNKSIZE = 1000, 60.0, 50


def work(x: int) -> int:
    """A call whose result proves it ran on the input given: the sum of squares below x."""
    return sum(i * i for i in range(x % 200))


def expected(x: int) -> int:
    n = x % 200
    return (n - 1) * n * (2 * n - 1) // 6


def measure(inputs: int, chunksize: int = CHUNKSIZE) -> dict[str, Any]:
    from computility.demo.network import DemoNetwork

    t0 = time.perf_counter()
    with DemoNetwork() as net:
        started_s = time.perf_counter() - t0
        with net.client("climate-lab") as client, client.executor(chunksize=chunksize) as ex:
            t1 = time.perf_counter()
            pending = ex.map(work, range(inputs))  # pickles, uploads and submits every chunk
            submitted_s = time.perf_counter() - t1
            results = list(pending)
            wall = time.perf_counter() - t1
            tasks = list(client.tasks(name=ex.name))
    wrong = sum(r != expected(x) for x, r in zip(range(inputs), results, strict=True))
    sites = sorted({t.site or "?" for t in tasks})
    return {"inputs": inputs, "chunksize": chunksize, "tasks": len(tasks),
            "expected_tasks": math.ceil(inputs / chunksize), "wrong": wrong,
            "succeeded": sum(t.state == "succeeded" for t in tasks), "sites": sites,
            "wall_s": wall, "submit_s": submitted_s, "inputs_per_s": inputs / wall,
            "network_start_s": started_s, "machine": machine()}


def summary(result: dict[str, Any]) -> str:
    return (f"executor.map over {result['inputs']:,} inputs, chunks of {result['chunksize']} "
            f"({result['tasks']} tasks on {len(result['sites'])} site(s)): "
            f"{result['wall_s']:.2f} s (submitted after {result['submit_s']:.2f} s), "
            f"{result['wrong']} wrong")


def verdict(result: dict[str, Any], ci: bool) -> list[str]:
    limit = TARGET_WALL_S * result["inputs"] / TARGET_INPUTS * (2 if ci else 1)
    missed = []
    if result["wrong"] or result["tasks"] != result["expected_tasks"]:
        missed.append(f"{result['wrong']} wrong results, {result['tasks']} tasks "
                      f"(expected {result['expected_tasks']})")
    if result["wall_s"] > limit:
        missed.append(f"{result['wall_s']:.2f} s > {limit:.1f} s")
    return missed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ci", action="store_true")
    parser.add_argument("--inputs", type=int)
    parser.add_argument("--chunksize", type=int, default=CHUNKSIZE)
    args = parser.parse_args(argv)
    inputs = args.inputs or (TARGET_INPUTS // 10 if args.ci else TARGET_INPUTS)
    result = measure(inputs, args.chunksize)
    print(summary(result))
    missed = verdict(result, args.ci)
    if not args.ci:
        record("executor_map", result)
    if missed:
        raise SystemExit("; ".join(missed))
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
