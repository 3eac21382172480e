"""The sampler: the leader writes one row per pool per tick (capacity, busy and queued work in
CU, prices, power at that hour), keeps 30 days, and history reads back as evenly spread ticks."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, func, insert, select

from computility.domain.devices import default_catalogue
from computility.server import sampling
from computility.server.db import schema as db
from computility.server.sampling import KEEP_S, maybe_sample, sample, tick_times
from computility.testing.controlplane import (
    FakeAgent,
    LocalControlPlane,
    local_control_plane,
    new_tenant,
    wait_until,
)

CHINA = dt.timezone(dt.timedelta(hours=8))
CLOCK = dt.datetime(2025, 3, 1, 13, 30, tzinfo=CHINA).timestamp()
"""The scheduling clock of these tests: 13:30 in the network's time zone, so the power curves
are read at hour 13."""


@pytest.fixture
def plane_service(db_url: str | None, tmp_path: Path) -> Iterator[LocalControlPlane]:
    with local_control_plane(tmp_path / "data", db_url, cycle_s=0.1,
                             clock=lambda: CLOCK) as server:
        yield server


def _rows_at(server: LocalControlPlane, at: float) -> dict[tuple[str, str], dict[str, object]]:
    with server.plane.engine.connect() as conn:
        rows = conn.execute(select(db.samples).where(db.samples.c.at == at)).mappings().all()
    return {(r["site_id"], r["pool_id"]): dict(r) for r in rows}


def test_a_tick_records_each_pools_capacity_work_prices_and_power(
        plane_service: LocalControlPlane) -> None:
    server = plane_service
    admin = server.client()
    provider = new_tenant(admin, "hubs", "provider")
    user = new_tenant(admin, "alice", "user")
    busy = FakeAgent(server.url, provider, "busy", {"gpu": ("A100-80GB", 4)}, region="ZJK",
                     time_scale=1.0, heartbeat_s=1.0, price_per_cu_hour=0.8).start()
    # A site whose agent never leases: what is placed there stays queued. Registered without
    # power figures, it follows its region's hourly curves.
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {provider}"},
                      timeout=30) as c:
        r = c.post("/api/v1/sites", json={
            "id": "idle", "region": "GA", "backend": "fake", "pools": [
                {"id": "cpu", "device": "EPYC-7763", "count": 64, "price_per_cu_hour": 0.25}]})
        assert r.status_code == 201, r.text
    try:
        with server.client(user) as c:
            gpu = {"run": "x", "resources": {"cpus": 1, "accelerators": "A100-80GB:1"},
                   "placement": {"sites": ["busy"]}, "envs": {"FAKE_RUN_S": "600"}}
            cpu = {"run": "y", "resources": {"cpus": 4}, "placement": {"sites": ["idle"]}}
            r = c.post("/api/v1/tasks/batch", json={"tasks": [gpu, gpu, cpu, cpu, cpu]})
            assert r.status_code == 201, r.text
        wait_until(lambda: len(busy.running()) == 2, timeout=60)

        def all_queued() -> bool:
            with server.plane.engine.connect() as conn:
                queued = conn.execute(select(func.count()).select_from(db.tasks).where(
                    db.tasks.c.state == "queued")).scalar()
            return bool(queued == 3)

        wait_until(all_queued, timeout=60)
        at = time.time() + 12345.0  # a tick of its own, apart from the loop's
        assert sample(server.plane, at) == 2
    finally:
        busy.stop()
    rows = _rows_at(server, at)
    a100, epyc = default_catalogue().get("A100-80GB").cu, default_catalogue().get("EPYC-7763").cu
    gpu_row, cpu_row = rows[("busy", "gpu")], rows[("idle", "cpu")]
    assert gpu_row["capacity_cu"] == pytest.approx(4 * a100)
    assert gpu_row["busy_cu"] == pytest.approx(2 * a100)
    assert gpu_row["queued_cu"] == 0 and gpu_row["queued_tasks"] == 0
    assert gpu_row["price_micro_per_cu_hour"] == 800_000 and gpu_row["device"] == "A100-80GB"
    assert gpu_row["electricity_price_micro"] == 500_000  # the FakeAgent's flat figures
    assert gpu_row["carbon_kg_per_kwh"] == pytest.approx(0.5)
    assert cpu_row["capacity_cu"] == pytest.approx(64 * epyc)
    assert cpu_row["busy_cu"] == 0
    assert cpu_row["queued_tasks"] == 3 and cpu_row["queued_cu"] == pytest.approx(12 * epyc)
    region_model = next(s for s in server.plane.base.sites if s.region == "GA")
    assert cpu_row["electricity_price_micro"] == region_model.electricity_price_curve[13]
    assert cpu_row["carbon_kg_per_kwh"] == pytest.approx(region_model.carbon_curve[13])
    assert gpu_row["online"] and cpu_row["online"]


def test_the_leaders_loop_samples_every_sample_s(db_url: str | None, tmp_path: Path) -> None:
    with local_control_plane(tmp_path / "data", db_url, cycle_s=0.1, sample_s=0.5) as server:
        admin = server.client()
        provider = new_tenant(admin, "hubs", "provider")
        FakeAgent(server.url, provider, "one", {"cpu": ("EPYC-7763", 8)}).register()

        def ticks() -> list[float]:
            with server.plane.engine.connect() as conn:
                return [float(a) for a in conn.execute(
                    select(db.samples.c.at).where(db.samples.c.site_id == "one")
                    .order_by(db.samples.c.at)).scalars()]

        wait_until(lambda: len(ticks()) >= 3, timeout=30)
        seen = ticks()
        assert all(b - a >= 0.5 for a, b in pairwise(seen))


def test_maybe_sample_waits_sample_s_between_ticks(db_url: str | None, tmp_path: Path) -> None:
    with local_control_plane(tmp_path / "data", db_url, run_loop=False,
                             sample_s=60.0) as server:
        admin = server.client()
        FakeAgent(server.url, new_tenant(admin, "hubs", "provider"), "one",
                  {"cpu": ("EPYC-7763", 8), "more": ("EPYC-7763", 8)}).register()
        start = time.time()
        assert maybe_sample(server.plane, start) == 2
        assert maybe_sample(server.plane, start + 59.0) == 0
        assert maybe_sample(server.plane, start + 60.0) == 2
        assert set(_rows_at(server, start)) == {("one", "cpu"), ("one", "more")}


def test_a_failed_tick_is_logged_and_never_raised(
        db_url: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object) -> int:
        raise RuntimeError("database away")

    with local_control_plane(tmp_path / "data", db_url, run_loop=False) as server:
        monkeypatch.setattr(sampling, "sample", broken)
        assert maybe_sample(server.plane, time.time()) == 0
        assert "sampling failed" in caplog.text


def _fake_rows(ats: list[float], sites: int = 2) -> list[dict[str, object]]:
    return [{"at": at, "site_id": f"s{i}", "pool_id": "p", "device": "EPYC-7763",
             "capacity_cu": 10.0, "busy_cu": 2.0, "queued_cu": 0.0, "queued_tasks": 0,
             "price_micro_per_cu_hour": 1, "electricity_price_micro": 1,
             "carbon_kg_per_kwh": 0.5, "online": True} for at in ats for i in range(sites)]


def test_samples_older_than_thirty_days_are_deleted_by_the_next_tick(
        db_url: str | None, tmp_path: Path) -> None:
    with local_control_plane(tmp_path / "data", db_url, run_loop=False) as server:
        now = time.time()
        old, kept = now - KEEP_S - 60.0, now - KEEP_S + 3600.0
        with server.plane.write() as conn:
            conn.execute(insert(db.samples), _fake_rows([old, kept]))
        sample(server.plane, now)
        with server.plane.engine.connect() as conn:
            left = set(conn.execute(select(db.samples.c.at).distinct()).scalars())
        assert old not in left and kept in left


def test_history_reads_at_most_the_asked_points_spread_over_the_range(
        db_url: str | None, tmp_path: Path) -> None:
    with local_control_plane(tmp_path / "data", db_url, run_loop=False) as server:
        start = 1_700_000_000.0
        ats = [start + 60.0 * k for k in range(2000)]  # 33 hours of one-minute ticks
        with server.plane.write() as conn:
            conn.execute(delete(db.samples))
            conn.execute(insert(db.samples), _fake_rows(ats))
        until = ats[-1]
        since = until - 24 * 3600.0
        with server.plane.engine.connect() as conn:
            picked = tick_times(conn, since, until, 300)
            one_site = tick_times(conn, since, until, 300, site_id="s1")
            few = tick_times(conn, since, until, 10)
        assert 250 <= len(picked) <= 300 and picked == sorted(picked)
        assert picked[0] >= since and picked[-1] <= until and set(picked) <= set(ats)
        step = (until - since) / 300
        assert max(b - a for a, b in pairwise(picked)) < step + 60.0
        assert until - picked[-1] < step + 60.0  # the range is covered to its end
        assert one_site == picked
        assert len(few) == 10
