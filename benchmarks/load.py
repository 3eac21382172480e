"""Open-loop load: hundreds of clients at a steady total rate, on SQLite and on PostgreSQL.

    python -m benchmarks.load                          # 500 clients, 300 req/s, 60 s + 600 s
    python -m benchmarks.load --db sqlite --seconds 120 --warmup 20
    python -m benchmarks.load --ci                     # a tenth: 50 clients, 30 req/s, 6 s + 60 s
    python -m benchmarks.load --db postgresql --pg-workers 1   # one process on PostgreSQL

Separate processes, as in production: the control plane (`local_control_plane`: uvicorn, its
scheduling loop and sampler, on a fresh database) in one child (on PostgreSQL, `PG_WORKERS`
children: replicas on one database and one blob directory, as ``computility up --workers``
runs them, each client talking to one of them as the kernel gives each connection to one), one
site's agent in another (the testing `FakeAgent`: it leases, "runs" each task for a second or two
of wall time and reports real exits, so the lifecycle, leases and ledger are the real ones), and
this process as the load generator.

The generator is open loop: request arrival times are drawn up front as a Poisson process of the
total rate (seeded), each given to a random client and kind — 20 % submissions (``POST
/api/v1/tasks``), 60 % status reads (``GET /api/v1/tasks/{id}`` of one of that client's tasks), 20 %
log reads (``GET /api/v1/tasks/{id}/logs``). A request is sent at its due time whether or not
earlier ones have answered, so a slow server cannot slow the offered load (no coordinated
omission); its latency is measured from its due time (what a user waits) and from the moment it
was sent. Each client is its own user with its own API key (50 tenants × 10 users at full size)
and its own keep-alive connection pool (aiohttp on uvloop: the generator shares the machine with
the server it measures, so it should spend as little of it as it can).

Reported: requests, errors (any non-2xx or transport error), achieved rate, p50/p99/max latency
overall and per kind, the generator's own CPU (share of one core over the measured window, so a
saturated generator is visible), and the server processes' resident memory (summed), sampled
every 5 s: the target is memory at the end <= 1.1 × memory right after the warm-up.

Targets (each database): 0 errors, p99 <= 200 ms, final memory <= 1.1 × after warm-up.
``--ci`` runs a tenth (clients, rate and both durations) with p99 <= 400 ms (half the target's
margin), 0 errors, and the same memory ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil

from benchmarks._common import record
from benchmarks.control_plane import PG_SERVER, database

CLIENTS, RATE, WARMUP_S, SECONDS = 500, 300.0, 60.0, 600.0
MIX = (("submit", 0.2), ("status", 0.6), ("logs", 0.2))
PG_WORKERS = 2
"""PostgreSQL is served by two processes, as ``computility up --workers 2`` serves it: one
process's request handling saturates its one core (one interpreter lock) below 300 requests/s
on this path, while the database has cores to spare."""
TARGET_P99_MS = 200.0
TARGET_MEMORY_RATIO = 1.1
USERS_PER_TENANT = 10
SEED = 0
TIMEOUT_S = 30.0
CONNECTIONS_PER_CLIENT = 8
"""Each client is one user with its own keep-alive connections (at most this many at once)."""
CLIENT_KEEP_ALIVE_S = 30.0
"""How long a client keeps an idle connection: long enough that a steady load reuses its
connections rather than opening new ones (5 s measured worse), and below the server's
`KEEP_ALIVE_S`, so the client, not the server, closes it."""
MEMORY_EVERY_S = 5.0
SPEC: dict[str, Any] = {"run": "true", "resources": {"cpus": 1, "estimate": "2m"},
                        "envs": {"FAKE_RUN_S": "60"}}
"""A task the fake agent "runs" for 60 stated seconds: 1.2 s of wall time at its time scale."""
TIME_SCALE = 0.02
SITE_POOLS = {"cpu": ("EPYC-7763", 4096)}


# --------------------------------------------------------------------------- the processes


def _share_metrics(metrics_dir: str | None) -> None:
    """Count events with the other replicas in `metrics_dir`, as the workers of ``computility
    up --workers`` count theirs (None: one process, its own)."""
    if metrics_dir is not None:
        from computility.server.observability.metrics import share_metrics

        share_metrics(metrics_dir)


def _serve(pipe: Any, data_dir: str, db_url: str | None, tenants: int,
           metrics_dir: str | None) -> None:
    """Child: the control plane, its users' keys made, until told to stop."""
    from computility.server.settings import from_environment
    from computility.testing.controlplane import local_control_plane, new_tenant

    _share_metrics(metrics_dir)
    # As `computility up` is configured: its environment's tunables, a frozen start-up heap.
    tuned = from_environment()
    with local_control_plane(Path(data_dir), db_url, tune_heap=True,
                             request_threads=tuned.request_threads) as server:
        with server.client() as admin:
            provider = new_tenant(admin, "load-provider", "provider")
            keys = []
            for t in range(tenants):
                tenant = f"load-{t:02d}"
                admin.post("/api/v1/tenants", json={"id": tenant}).raise_for_status()
                for u in range(USERS_PER_TENANT):
                    r = admin.post(f"/api/v1/tenants/{tenant}/keys",
                                   json={"user": f"user-{u}", "role": "user"})
                    r.raise_for_status()
                    keys.append(r.json()["key"])
        pipe.send((server.url, provider, keys))
        pipe.recv()


def _replica(pipe: Any, data_dir: str, db_url: str, name: str, metrics_dir: str | None) -> None:
    """Child: another replica of the plane on the same PostgreSQL database and blob directory
    (as the operator guide deploys them), serving until told to stop."""
    from computility.server.settings import from_environment
    from computility.testing.controlplane import local_control_plane

    _share_metrics(metrics_dir)
    tuned = from_environment()
    with local_control_plane(Path(data_dir), db_url, tune_heap=True, replica=name,
                             request_threads=tuned.request_threads) as server:
        pipe.send(server.url)
        pipe.recv()


def _agent(pipe: Any, url: str, provider_key: str) -> None:
    """Child: one site's agent, leasing and finishing tasks until told to stop."""
    from computility.testing.controlplane import FakeAgent

    agent = FakeAgent(url, provider_key, "load-site", dict(SITE_POOLS), time_scale=TIME_SCALE,
                      heartbeat_s=5.0, lease_wait_s=1.0).start()
    pipe.send("up")
    pipe.recv()
    agent.stop()
    pipe.send(len(agent.finished))


@contextlib.contextmanager
def _child(target: Any, *args: Any) -> Iterator[tuple[Any, mp.process.BaseProcess]]:
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=target, args=(theirs, *args), daemon=True)
    child.start()
    try:
        yield ours, child
    finally:
        with contextlib.suppress(OSError, BrokenPipeError):
            ours.send("stop")
        child.join(timeout=60)
        if child.is_alive():
            child.terminate()
            child.join()


@contextlib.contextmanager
def served(kind: str, pg: str, clients: int, replicas: int = 1,
           ) -> Iterator[tuple[list[str], list[str], list[int], Any]]:
    """(replicas' urls, one key per client, replicas' pids, agent pipe) of a fresh plane with
    one agent."""
    if replicas > 1 and kind != "postgresql":
        raise SystemExit("--replicas: several replicas need PostgreSQL")
    tenants = max(1, -(-clients // USERS_PER_TENANT))
    with database(kind, pg) as db_url, tempfile.TemporaryDirectory() as tmp, \
            contextlib.ExitStack() as others:
        metrics_dir = None
        if replicas > 1:  # as `up --workers` runs them: their events counted together
            metrics_dir = str(Path(tmp) / "metrics")
            Path(metrics_dir).mkdir()
        plane, server = others.enter_context(_child(_serve, tmp, db_url, tenants, metrics_dir))
        if not plane.poll(300):
            raise SystemExit("the control plane did not start within 300 s")
        url, provider, keys = plane.recv()
        urls, pids = [url], [server.pid]
        for n in range(1, replicas):
            pipe, child = others.enter_context(_child(_replica, tmp, db_url, f"load-{n}",
                                                      metrics_dir))
            if not pipe.poll(300):
                raise SystemExit(f"replica {n} did not start within 300 s")
            urls.append(pipe.recv())
            pids.append(child.pid)
        with _child(_agent, url, provider) as (agent, _):
            if not agent.poll(60):
                raise SystemExit("the agent did not start within 60 s")
            agent.recv()
            assert all(pid is not None for pid in pids)
            yield urls, keys[:clients], [int(pid) for pid in pids if pid is not None], agent


# --------------------------------------------------------------------------- the generator


class Generator:
    """Open-loop requests from `clients` users; latencies recorded per request."""

    def __init__(self, urls: list[str], keys: list[str], rate: float, seed: int) -> None:
        self.urls, self.keys, self.rate = urls, keys, rate
        self.rng = random.Random(seed)
        self.tasks: list[list[int]] = [[] for _ in keys]
        self.rows: list[tuple[str, float, float, float, int]] = []
        """(kind, due, sent, done, status) per request; status 0 for a transport error."""
        self.errors: dict[str, int] = {}
        self.pending: set[asyncio.Task[None]] = set()

    def _schedule(self, start: float, seconds: float) -> list[tuple[float, int, str]]:
        kinds = [k for k, _ in MIX]
        weights = [w for _, w in MIX]
        out: list[tuple[float, int, str]] = []
        t = start
        while True:
            t += self.rng.expovariate(self.rate)
            if t >= start + seconds:
                return out
            out.append((t, self.rng.randrange(len(self.keys)),
                        self.rng.choices(kinds, weights)[0]))

    async def _one(self, c: aiohttp.ClientSession, client: int, kind: str, due: float,
                   keep: bool) -> None:
        mine, url = self.tasks[client], self.urls[client % len(self.urls)]
        if kind != "submit" and not mine:
            kind = "submit"  # nothing of its own to read yet
        sent = time.perf_counter()
        try:
            if kind == "submit":
                request = c.post(f"{url}/api/v1/tasks", json=SPEC)
            elif kind == "status":
                request = c.get(f"{url}/api/v1/tasks/{self.rng.choice(mine)}")
            else:
                request = c.get(f"{url}/api/v1/tasks/{self.rng.choice(mine)}/logs")
            async with request as r:
                body = await r.read()
                status = r.status
            if status == 201 and kind == "submit":
                mine.append(int(json.loads(body)["id"]))
            if status >= 300:
                name = f"{kind} {status}: {body[:200].decode(errors='replace')}"
                self.errors[name] = self.errors.get(name, 0) + 1
        except (TimeoutError, aiohttp.ClientError) as error:
            status = 0
            name = f"{kind} {type(error).__name__}: {error}"[:200]
            self.errors[name] = self.errors.get(name, 0) + 1
        if keep:
            self.rows.append((kind, due, sent, time.perf_counter(), status))

    async def run(self, warmup_s: float, seconds: float,
                  on_measure: Any = None) -> tuple[float, float]:
        """Warm up, then measure; returns the measured window (start, end) in perf_counter."""
        clients = [aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {k}"},
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
            connector=aiohttp.TCPConnector(limit=CONNECTIONS_PER_CLIENT,
                                         keepalive_timeout=CLIENT_KEEP_ALIVE_S))
            for k in self.keys]
        try:
            t0 = time.perf_counter() + 0.5
            plan = self._schedule(t0, warmup_s + seconds)
            measure_from = t0 + warmup_s
            started = False
            for due, client, kind in plan:
                if not started and due >= measure_from:
                    started = True
                    if on_measure is not None:
                        on_measure()
                pause = due - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                task = asyncio.create_task(
                    self._one(clients[client], client, kind, due, due >= measure_from))
                self.pending.add(task)
                task.add_done_callback(self.pending.discard)
            while self.pending:
                await asyncio.gather(*list(self.pending))
            return measure_from, t0 + warmup_s + seconds
        finally:
            await asyncio.gather(*(c.close() for c in clients))


def _loop_factory() -> Any:
    """uvloop's event loop when installed (as the server's is): a generator that spends less of
    the machine leaves more of it to the server it measures."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _ms(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"n": 0}
    a = values * 1e3
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def one_database(kind: str, pg: str, clients: int, rate: float, warmup_s: float,
                 seconds: float, seed: int = SEED, replicas: int = 1) -> dict[str, Any]:
    with served(kind, pg, clients, replicas) as (urls, keys, pids, agent):
        servers = [psutil.Process(pid) for pid in pids]

        def rss_mib() -> float:
            return sum(s.memory_info().rss for s in servers) / 2**20

        memory: list[tuple[float, float]] = []
        me = psutil.Process()
        cpu: dict[str, float] = {}
        gen = Generator(urls, keys, rate, seed)

        def measuring() -> None:
            cpu["from"] = sum(me.cpu_times()[:2])
            memory.append((time.perf_counter(), rss_mib()))

        async def sample_memory() -> None:
            while True:
                await asyncio.sleep(MEMORY_EVERY_S)
                if memory:
                    memory.append((time.perf_counter(), rss_mib()))

        async def main() -> tuple[float, float]:
            sampler = asyncio.create_task(sample_memory())
            try:
                return await gen.run(warmup_s, seconds, measuring)
            finally:
                sampler.cancel()

        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            start, end = runner.run(main())
        generator_cpu = (sum(me.cpu_times()[:2]) - cpu["from"]) / (end - start)
        memory.append((time.perf_counter(), rss_mib()))
        agent.send("stop")
        finished = agent.recv() if agent.poll(60) else None
    rows = gen.rows
    kinds = np.array([r[0] for r in rows])
    due = np.array([r[1] for r in rows])
    sent = np.array([r[2] for r in rows])
    done = np.array([r[3] for r in rows])
    ok = np.array([200 <= r[4] < 300 for r in rows])
    after_warmup, final = memory[0][1], memory[-1][1]
    return {
        "clients": clients, "replicas": replicas, "rate_per_s": rate, "warmup_s": warmup_s,
        "seconds": seconds,
        "requests": len(rows), "errors": int((~ok).sum()), "error_kinds": gen.errors,
        "achieved_per_s": len(rows) / seconds,
        "latency_ms": _ms(done - due), "from_sent_ms": _ms(done - sent),
        "send_lag_ms_max": float((sent - due).max() * 1e3) if rows else 0.0,
        "by_kind": {k: _ms((done - due)[kinds == k]) for k, _ in MIX},
        "generator_cpu_core_share": generator_cpu,
        "server_rss_mib": {"after_warmup": after_warmup, "final": final,
                           "max": max(m for _, m in memory), "ratio": final / after_warmup,
                           "series": [(round(t - memory[0][0], 1), round(m, 1))
                                      for t, m in memory]},
        "tasks_finished_by_agent": finished,
    }


def summary(r: dict[str, Any]) -> str:
    lat, mem = r["latency_ms"], r["server_rss_mib"]
    return (f"{r['requests']:,} requests from {r['clients']} clients at "
            f"{r['achieved_per_s']:.0f}/s, {r['errors']} errors, p50 {lat['p50']:.1f} ms "
            f"p99 {lat['p99']:.1f} ms (max {lat['max']:.0f}); generator "
            f"{r['generator_cpu_core_share']:.0%} of a core; server RSS "
            f"{mem['after_warmup']:.0f} -> {mem['final']:.0f} MiB ({mem['ratio']:.2f}×)")


def measure(kinds: list[str], ci: bool, pg: str = PG_SERVER, clients: int = CLIENTS,
            rate: float = RATE, warmup_s: float = WARMUP_S, seconds: float = SECONDS,
            pg_workers: int = PG_WORKERS) -> tuple[dict[str, Any], list[str]]:
    scale = 10 if ci else 1
    p99_limit = TARGET_P99_MS * (2 if ci else 1)
    results: dict[str, Any] = {}
    missed = []
    for kind in kinds:
        r = one_database(kind, pg, clients // scale, rate / scale, warmup_s / scale,
                         seconds / scale, replicas=pg_workers if kind == "postgresql" else 1)
        results[kind] = r
        print(f"[{kind}] {summary(r)}", flush=True)
        if r["errors"]:
            missed.append(f"{kind}: {r['errors']} errors ({list(r['error_kinds'])[:3]})")
        if r["latency_ms"]["p99"] > p99_limit:
            missed.append(f"{kind}: p99 {r['latency_ms']['p99']:.0f} ms > {p99_limit:.0f}")
        if r["server_rss_mib"]["ratio"] > TARGET_MEMORY_RATIO:
            missed.append(f"{kind}: memory grew {r['server_rss_mib']['ratio']:.2f}× > "
                          f"{TARGET_MEMORY_RATIO}×")
    return results, missed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--ci", action="store_true", help="a tenth of each size")
    parser.add_argument("--pg", default=PG_SERVER)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--warmup", type=float, default=WARMUP_S)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--pg-workers", type=int, default=PG_WORKERS,
                        help="processes serving the PostgreSQL plane, as `computility up "
                             "--workers N` runs it (memory: their sum)")
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results, missed = measure(kinds, args.ci, args.pg, args.clients, args.rate, args.warmup,
                              args.seconds, args.pg_workers)
    record("load", results)
    if missed:
        raise SystemExit("load below target: " + "; ".join(missed))


if __name__ == "__main__":
    main()
