"""The server's CPU per request, one request at a time: what each kind costs the service.

    python -m benchmarks.request_cpu                     # PostgreSQL
    python -m benchmarks.request_cpu --db sqlite

The control plane runs in a child process as in `benchmarks.load` (`_serve`: uvicorn, its
scheduling loop and sampler, a fresh database, no agent); this process sends, one after the
other, submissions (``POST /api/v1/tasks``), status reads (``GET /api/v1/tasks/{id}``) and log
reads (``GET /api/v1/tasks/{id}/logs``), and reads the child's CPU time (user + system) before
and after each series, less its idle rate measured just before. Sequential requests show cost,
not queueing: the load benchmark's tail latency is these costs times the rate, against the cores
there are.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import httpx
import psutil

from benchmarks.control_plane import PG_SERVER, database
from benchmarks.load import _child, _serve

SERIES = (("submit", 300), ("status", 1500), ("logs", 600))
IDLE_S = 2.0


def measure(kind: str, pg: str) -> dict[str, float]:
    """CPU milliseconds per request of each kind, on a fresh plane on `kind`."""
    out: dict[str, float] = {}
    with database(kind, pg) as db_url, tempfile.TemporaryDirectory() as tmp, \
            _child(_serve, tmp, db_url, 1, None) as (plane, server):
        if not plane.poll(300):
            raise SystemExit("the control plane did not start within 300 s")
        url, _, keys = plane.recv()
        assert server.pid is not None
        proc = psutil.Process(server.pid)
        spec = {"run": "true", "resources": {"cpus": 1}}
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys[0]}"}) as c:
            ids = [c.post("/api/v1/tasks", json=spec).json()["id"] for _ in range(50)]

            def cpu() -> float:
                return float(sum(proc.cpu_times()[:2]))

            def series(n: int, one: Callable[[int], object]) -> float:
                before = cpu()
                time.sleep(IDLE_S)
                idle = (cpu() - before) / IDLE_S
                start, used = time.perf_counter(), cpu()
                for i in range(n):
                    one(i)
                wall = time.perf_counter() - start
                return (cpu() - used - idle * wall) / n * 1e3

            out["submit"] = series(SERIES[0][1], lambda i: ids.append(
                c.post("/api/v1/tasks", json=spec).raise_for_status().json()["id"]))
            out["status"] = series(SERIES[1][1], lambda i: c.get(
                f"/api/v1/tasks/{ids[i % len(ids)]}").raise_for_status())
            out["logs"] = series(SERIES[2][1], lambda i: c.get(
                f"/api/v1/tasks/{ids[i % len(ids)]}/logs"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--pg", default=PG_SERVER, help="PostgreSQL server URL")
    args = parser.parse_args()
    for name, ms in measure(args.db, args.pg).items():
        print(f"[{args.db}] {name}: {ms:.2f} ms of server CPU per request")


if __name__ == "__main__":
    main()
