"""The dashboard under a large network: every page rendered server-side with 100,000 tasks and
1,000 sites in the database.

    python -m benchmarks.dashboard_pages                    # full size, SQLite and PostgreSQL
    python -m benchmarks.dashboard_pages --db postgresql    # one database
    python -m benchmarks.dashboard_pages --ci               # CI size (a tenth; floor half)

Target: every page <= 1 s server-side (median of `REPEAT` renders after one warm-up), on both
databases. The database holds 1,000 sites (2,474 pools, as ``benchmarks.control_plane`` builds
them), 100,000 tasks over the last 30 days in ten tenants (90 % ended, each with its attempt and
ledger entry; the rest pending, queued or running), and 24 hours of supply-and-demand samples at
5-minute intervals (2,474 pools x 288). Each page is requested in this process through the ASGI
app (Starlette's test client: the server's whole work, no network), signed in as an operator
(every tenant visible: the largest pages) and, for the tenant-scoped pages, as a user.

``--ci``: 10,000 tasks on the same 1,000 sites and 6 hours of samples; every page <= 2 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import machine, record
from benchmarks.control_plane import PG_SERVER, _sites, database

TARGET_S = 1.0
TASKS, SITES, SAMPLE_HOURS, SAMPLE_S = 100_000, 1_000, 24, 300
REPEAT = 5
TENANTS = [f"tenant{i}" for i in range(10)]
CHUNK = 10_000


def _build(plane: Any, tasks: int, sites: int, hours: int, rng: np.random.Generator,
           now: float) -> dict[str, Any]:
    """Sites, tasks with their attempts and ledger entries, and samples, written in bulk."""
    from sqlalchemy import insert, select

    from computility.server.db import schema as db

    site_rows, pool_rows = _sites(plane, sites, rng, now)
    cpu_pools = [p for p in pool_rows if p["pool_id"] == "cpu"]
    with plane.write() as conn:
        conn.execute(insert(db.tenants), [
            {"id": t, "created_at": now - 40 * 86400, "budget_period": "month"} for t in TENANTS])
        conn.execute(insert(db.sites), site_rows)
        conn.execute(insert(db.pools), pool_rows)
    spec = {"run": "python3 analyse.py", "resources": {"cpus": 4, "estimate": "30m"}}
    state_of = rng.choice(["succeeded", "failed", "running", "queued", "pending"], tasks,
                          p=[0.85, 0.05, 0.05, 0.03, 0.02])
    submitted = now - rng.uniform(0, 30 * 86400, tasks)
    submitted.sort()
    run_s = rng.uniform(60, 7200, tasks)
    pool_of = rng.integers(0, len(cpu_pools), tasks)
    for start in range(0, tasks, CHUNK):
        end = min(tasks, start + CHUNK)
        rows = []
        for i in range(start, end):
            state = str(state_of[i])
            pool = cpu_pools[int(pool_of[i])]
            placed = state != "pending"
            ended = state in ("succeeded", "failed")
            rows.append({
                "tenant_id": TENANTS[i % len(TENANTS)], "user_id": None, "name": f"job-{i}",
                "spec": spec, "state": state, "version": 3, "submitted_at": float(submitted[i]),
                "updated_at": float(submitted[i] + run_s[i]), "policy": "balanced", "cpus": 4,
                "gpu_milli": 0, "devices": None, "run_s": 1800.0, "timeout_s": 7200.0,
                "ref_device": None, "precision": "fp32", "location": None, "rules": None,
                "retries": 1, "user_failures": int(state == "failed"), "infra_failures": 0,
                "max_price_micro": None, "quote_max_micro": 2_000_000, "cancel_requested": False,
                "idempotency_key": None, "site_id": pool["site_id"] if placed else None,
                "pool_id": "cpu" if placed else None, "units": 4 if placed else None,
                "cu": 4.0 if placed else None,
                "finished_at": float(submitted[i] + 30 + run_s[i]) if ended else None,
                "exit_code": (0 if state == "succeeded" else 1) if ended else None,
                "reason": "balanced; beat 4 option(s)" if placed else None,
            })
        with plane.write() as conn:
            conn.execute(insert(db.tasks), rows)
            ids = conn.execute(select(db.tasks.c.id, db.tasks.c.state, db.tasks.c.site_id,
                                      db.tasks.c.tenant_id, db.tasks.c.submitted_at)
                               .where(db.tasks.c.name.in_([r["name"] for r in rows]))).all()
            attempts, started = [], {}
            for k, (tid, state, site, _tenant, at) in enumerate(ids):
                if state in ("pending", "queued"):
                    continue
                ended = state in ("succeeded", "failed")
                started[tid] = at + 30
                attempts.append({
                    "task_id": tid, "number": 1, "site_id": site, "pool_id": "cpu", "units": 4,
                    "state": state if ended else "running", "token": start + k + 1,
                    "leased_at": at + 20, "lease_expires_at": now + 60,
                    "started_at": at + 30, "ended_at": at + 30 + 1800 if ended else None,
                    "exit_code": (0 if state == "succeeded" else 1) if ended else None,
                    "run_s": 1800.0 if ended else None, "gb_moved": 0.0, "duplicates": 0,
                    "usage": {"wall_s": 1800.0, "cpu_s": 6000.0, "max_rss_bytes": 1 << 30}
                    if ended else None,
                })
            if attempts:
                conn.execute(insert(db.attempts), attempts)
            done = conn.execute(
                select(db.attempts.c.id, db.attempts.c.task_id, db.tasks.c.tenant_id,
                       db.attempts.c.site_id, db.attempts.c.ended_at)
                .join(db.tasks, db.tasks.c.id == db.attempts.c.task_id)
                .where(db.attempts.c.task_id.in_([r[0] for r in ids]),
                       db.attempts.c.ended_at.is_not(None))).all()
            if done:
                conn.execute(insert(db.ledger), [{
                    "attempt_id": a, "task_id": t, "tenant_id": tenant, "site_id": site,
                    "owner_tenant_id": "default", "device": "EPYC-7763", "precision": "fp32",
                    "run_s": 1800.0, "cu_hours": 2.0 * 3.58, "device_hours": 2.0, "kwh": 0.5,
                    "carbon_kg": 0.25, "gb_moved": 0.0, "compute_micro": 3_000_000,
                    "energy_micro": 300_000, "network_micro": 0, "total_micro": 3_300_000,
                    "created_at": ended} for a, t, tenant, site, ended in done])
    ticks = int(hours * 3600 // SAMPLE_S)
    sample_rows: list[dict[str, Any]] = []
    with plane.write() as conn:
        for k in range(ticks):
            at = now - (ticks - k) * SAMPLE_S
            for p in pool_rows:
                cap = float(p["count"])
                busy = float(rng.uniform(0, 0.9)) * cap
                sample_rows.append({
                    "at": at, "site_id": p["site_id"], "pool_id": p["pool_id"],
                    "device": p["device"], "capacity_cu": cap, "busy_cu": busy,
                    "queued_cu": float(rng.uniform(0, 0.1)) * cap,
                    "queued_tasks": int(rng.integers(0, 20)),
                    "price_micro_per_cu_hour": p["price_micro_per_cu_hour"],
                    "electricity_price_micro": 600_000, "carbon_kg_per_kwh": 0.5,
                    "online": True})
            if len(sample_rows) >= CHUNK:
                conn.execute(insert(db.samples), sample_rows)
                sample_rows = []
        if sample_rows:
            conn.execute(insert(db.samples), sample_rows)
    with plane.engine.connect() as conn:
        finished = conn.execute(select(db.tasks.c.id).where(db.tasks.c.state == "succeeded")
                                .order_by(db.tasks.c.id.desc()).limit(1)).scalar_one()
        middle = conn.execute(select(db.tasks.c.id).order_by(db.tasks.c.id)
                              .offset(tasks // 2).limit(1)).scalar_one()
    return {"site": site_rows[len(site_rows) // 2]["id"], "finished_task": finished,
            "middle_task": middle, "samples": ticks * len(pool_rows), "pools": len(pool_rows)}


def _session(plane: Any, key_id: str, tenant: str, role: str) -> str:
    from sqlalchemy import insert

    from computility.server.auth import Identity, new_key
    from computility.server.db import schema as db
    from computility.server.web.session import open_session

    if key_id == "":
        key_id, _, secret_hash = new_key()
        with plane.write() as conn:
            conn.execute(insert(db.api_keys).values(
                id=key_id, user_id=None, tenant_id=tenant, role=role,
                secret_sha256=secret_hash, created_at=time.time()))
    token, _ = open_session(plane, Identity(key_id=key_id, tenant=tenant, role=role), "en")
    return token


def pages(built: dict[str, Any]) -> list[tuple[str, str]]:
    """(who, path) of every page timed: operator pages and a user's tenant-scoped ones."""
    site, done, middle = built["site"], built["finished_task"], built["middle_task"]
    return [
        ("operator", "/"),
        ("operator", f"/sites/{site}"),
        ("operator", "/supply?range=24h"),
        ("operator", "/supply?range=7d"),
        ("operator", "/tasks"),
        ("operator", "/tasks?state=running"),
        ("operator", "/tasks?q=job-4242"),
        ("operator", f"/tasks?before={middle}"),
        ("operator", f"/tasks/{done}"),
        ("operator", "/usage?period=all"),
        ("operator", "/usage?tenant=tenant3&period=all"),
        ("operator", "/usage.csv?tenant=tenant3&period=all"),
        ("operator", "/validation"),
        ("user", "/"),
        ("user", "/tasks"),
        ("user", "/usage?period=all"),
    ]


def measure(kind: str, pg: str, tasks: int, sites: int, hours: int,
            seed: int = 0) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore", message="Using `httpx` with")
    from fastapi.testclient import TestClient

    from computility.server.app import create_app, open_database
    from computility.server.settings import Settings

    rng = np.random.default_rng(seed)
    with database(kind, pg) as db_url, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(db_url=db_url, data_dir=Path(tmp), run_loop=False)
        engine = open_database(settings)
        try:
            app = create_app(settings, engine)
            plane = app.state.plane
            t0 = time.perf_counter()
            built = _build(plane, tasks, sites, hours, rng, time.time())
            if kind == "postgresql":
                with engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE")
                    conn.commit()
            build_s = time.perf_counter() - t0
            cookies = {"operator": _session(plane, "", "default", "operator"),
                       "user": _session(plane, "", "tenant3", "user")}
            out: dict[str, Any] = {}
            with TestClient(app) as client:
                for who, path in pages(built):
                    client.cookies.set("cu_session", cookies[who])
                    times = []
                    size = 0
                    for k in range(REPEAT + 1):
                        t = time.perf_counter()
                        r = client.get(path, follow_redirects=False)
                        elapsed = time.perf_counter() - t
                        if r.status_code != 200:
                            raise SystemExit(f"{kind} {who} {path}: HTTP {r.status_code}: "
                                             f"{r.text[:300]}")
                        size = len(r.content)
                        if k:
                            times.append(elapsed)
                    out[f"{who} {path}"] = {"median_s": statistics.median(times),
                                            "max_s": max(times), "bytes": size}
        finally:
            engine.dispose()
    return {"tasks": tasks, "sites": sites, "pools": built["pools"],
            "samples": built["samples"], "build_s": build_s, "pages": out}


def run(dbs: list[str], ci: bool, pg: str = PG_SERVER) -> tuple[dict[str, Any], list[str]]:
    """Every page on every database: (results, lines of the pages over their limit)."""
    tasks = TASKS // 10 if ci else TASKS
    hours = SAMPLE_HOURS // 4 if ci else SAMPLE_HOURS
    limit = TARGET_S * 2 if ci else TARGET_S
    results: dict[str, Any] = {"limit_s": limit, "machine": machine()}
    missed: list[str] = []
    for kind in dbs:
        r = results[kind] = measure(kind, pg, tasks, SITES, hours)
        slowest = max(r["pages"].items(), key=lambda kv: kv[1]["median_s"])
        print(f"[{kind}] {r['tasks']:,} tasks, {r['sites']:,} sites, {r['samples']:,} samples "
              f"(built in {r['build_s']:.0f} s); slowest page {slowest[0]}: "
              f"{slowest[1]['median_s'] * 1000:.0f} ms", flush=True)
        for page, p in r["pages"].items():
            print(f"  {page:<48} median {p['median_s'] * 1000:7.1f} ms  max "
                  f"{p['max_s'] * 1000:7.1f} ms  {p['bytes'] / 1024:7.1f} KiB", flush=True)
            if p["median_s"] > limit:
                missed.append(f"{kind} {page} {p['median_s']:.2f} s > {limit:.1f} s")
    return results, missed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), action="append")
    parser.add_argument("--ci", action="store_true")
    parser.add_argument("--pg", default=PG_SERVER)
    args = parser.parse_args(argv)
    results, missed = run(args.db or ["sqlite", "postgresql"], args.ci, args.pg)
    record("dashboard_pages", results)
    if missed:
        raise SystemExit("over the limit: " + "; ".join(missed))
    return results


if __name__ == "__main__":
    main()
