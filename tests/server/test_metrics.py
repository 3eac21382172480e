"""``/metrics``: every metric an operator watches, in the Prometheus text format, named by the
Prometheus conventions, with values that agree with the API after real activity.

Real HTTP on 127.0.0.1, the real database (SQLite, then PostgreSQL), the real scheduling loop;
only execution is faked (`FakeAgent`).
"""

from __future__ import annotations

import importlib.metadata
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from computility.domain.devices import default_catalogue
from computility.testing.controlplane import (
    FakeAgent,
    LocalControlPlane,
    local_control_plane,
    new_tenant,
    wait_until,
)

CPU, GPU = "EPYC-7763", "A100-80GB"
SINGLES, BATCH = 6, 4
TTL_S = 1.0


def scrape(server: LocalControlPlane) -> dict[str, Metric]:
    """The families `/metrics` serves (it must parse as the Prometheus text format)."""
    r = httpx.get(f"{server.url}/metrics", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    """The one sample named `sample` whose labels include `labels`."""
    found = [s.value for f in families.values() for s in f.samples
             if s.name == sample and labels.items() <= s.labels.items()]
    assert len(found) == 1, f"{sample}{labels}: {len(found)} samples"
    return float(found[0])


def cu_of(device: str) -> float:
    return next(d.cu for d in default_catalogue() if d.id == device)


def cpu_task(i: int) -> dict[str, Any]:
    return {"name": f"cpu-{i}", "run": f"python step.py {i}",
            "resources": {"cpus": 1 + i % 4, "estimate": f"{5 + i}m"},
            "envs": {"FAKE_RUN_S": str(60 * (5 + i))}}


def gpu_task(i: int) -> dict[str, Any]:
    return {"name": f"gpu-{i}", "run": "python train.py",
            "resources": {"cpus": 2, "accelerators": f"{GPU}:1", "estimate": "20m"},
            "envs": {"FAKE_RUN_S": "1200"}}


@pytest.fixture
def provider(service: LocalControlPlane) -> str:
    return new_tenant(service.client(), "hubs", "provider")


@pytest.fixture
def user(service: LocalControlPlane) -> Iterator[httpx.Client]:
    with service.client(new_tenant(service.client(), "lab")) as client:
        yield client


def test_metrics_after_real_activity_agree_with_the_api(
    service: LocalControlPlane, provider: str, user: httpx.Client,
) -> None:
    agent = FakeAgent(service.url, provider, "zjk-1", {"cpu": (CPU, 64), "gpu": (GPU, 4)},
                      time_scale=0.0005, heartbeat_s=0.5).start()
    try:
        for i in range(SINGLES):
            r = user.post("/api/v1/tasks", json=cpu_task(i))
            assert r.status_code == 201, r.text
        r = user.post("/api/v1/tasks/batch", json={"tasks": [gpu_task(i) for i in range(BATCH)]})
        assert r.status_code == 201, r.text
        refused = user.post("/api/v1/tasks", json={"run": "x", "resources": {"cpus": 0}})
        assert refused.status_code == 422, refused.text
        ids = [t["id"] for t in user.get("/api/v1/tasks").json()["tasks"]]
        wait_until(lambda: all(user.get(f"/api/v1/tasks/{t}").json()["state"] == "succeeded"
                               for t in ids), timeout=60)
        usage = user.get("/api/v1/usage", params={"since": 0}).json()
        m = scrape(service)
    finally:
        agent.stop()
    total = SINGLES + BATCH
    assert len(ids) == total

    # Tasks by state, read from the database: every task submitted, all succeeded.
    by_state = {s.labels["state"]: s.value for s in m["computility_tasks"].samples}
    assert sum(by_state.values()) == total
    assert by_state["succeeded"] == total
    # Submissions by kind and outcome (requests), and the tasks they brought in.
    assert value(m, "computility_submissions_total", kind="single", outcome="accepted") == SINGLES
    assert value(m, "computility_submissions_total", kind="single", outcome="rejected") == 1
    assert value(m, "computility_submissions_total", kind="batch", outcome="accepted") == 1
    assert value(m, "computility_tasks_submitted_total", kind="single") == SINGLES
    assert value(m, "computility_tasks_submitted_total", kind="batch") == BATCH
    # The scheduling loop: cycles and their steps timed, every task placed and leased.
    cycles = value(m, "computility_scheduling_cycles_total")
    assert cycles >= 1
    assert value(m, "computility_scheduling_cycle_duration_seconds_count") >= 1
    for step in ("housekeeping", "read", "place", "write"):
        assert value(m, "computility_scheduling_step_duration_seconds_count", step=step) >= 1
    assert value(m, "computility_scheduling_cycle_duration_seconds_sum") > 0
    assert time.time() - value(m, "computility_scheduling_last_cycle_timestamp_seconds") < 30
    assert value(m, "computility_placements_total") >= total
    assert value(m, "computility_leases_granted_total") >= total
    assert value(m, "computility_heartbeats_total") >= 1
    assert value(m, "computility_lease_renewals_total") >= 0
    assert value(m, "computility_lease_expiries_total") == 0
    assert value(m, "computility_duplicate_reports_total") == 0
    assert value(m, "computility_scheduler_leader") == 1
    # Each task's first attempt started once: one queue wait each.
    assert value(m, "computility_queue_wait_seconds_count") == total
    assert value(m, "computility_queue_wait_seconds_sum") >= 0
    # The site: capacity per device type, nothing busy any more, online.
    for device, count in ((CPU, 64), (GPU, 4)):
        assert value(m, "computility_site_capacity_cu", site="zjk-1",
                     device=device) == pytest.approx(count * cu_of(device))
        assert value(m, "computility_site_busy_cu", site="zjk-1", device=device) == 0
    assert 0 <= value(m, "computility_site_free_units", site="zjk-1", device=CPU) <= 64
    assert 0 <= value(m, "computility_site_free_units", site="zjk-1", device=GPU) <= 4000
    assert value(m, "computility_site_online", site="zjk-1") == 1
    assert value(m, "computility_sites_online") == 1
    # The ledger's totals are the usage the API reports (every attempt was the lab's).
    assert value(m, "computility_ledger_entries_total") == usage["attempts"] == total
    billed = sum(value(m, "computility_ledger_billed_total", currency=usage["currency"],
                       component=c) for c in ("compute", "energy", "network"))
    assert billed == pytest.approx(float(usage["total"]), abs=1e-6)
    assert billed > 0
    assert value(m, "computility_ledger_cu_seconds_total") == pytest.approx(
        usage["cu_hours"] * 3600)
    assert value(m, "computility_ledger_energy_joules_total") == pytest.approx(
        usage["kwh"] * 3.6e6)
    assert value(m, "computility_ledger_carbon_grams_total") == pytest.approx(
        usage["carbon_kg"] * 1000)
    # API latency by route template and status class.
    assert value(m, "computility_http_request_duration_seconds_count", method="POST",
                 route="/api/v1/tasks", status_class="2xx") == SINGLES
    assert value(m, "computility_http_request_duration_seconds_count", method="POST",
                 route="/api/v1/tasks", status_class="4xx") == 1
    assert value(m, "computility_http_request_duration_seconds_count", method="GET",
                 route="/api/v1/tasks/{task_id}", status_class="2xx") >= total
    # The build, and the database that answered this scrape.
    assert value(m, "computility_build_info", version=importlib.metadata.version("computility"),
                 database=service.plane.engine.dialect.name) == 1
    assert value(m, "computility_database_up") == 1


def test_a_running_task_shows_as_busy_cu_on_its_site(
    service: LocalControlPlane, provider: str, user: httpx.Client,
) -> None:
    agent = FakeAgent(service.url, provider, "zjk-1", {"cpu": (CPU, 64)},
                      time_scale=0.01, heartbeat_s=0.5).start()
    try:
        task = user.post("/api/v1/tasks", json={
            "run": "sleep", "resources": {"cpus": 16, "estimate": "1h"},
            "envs": {"FAKE_RUN_S": "3600"}}).json()
        wait_until(lambda: user.get(f"/api/v1/tasks/{task['id']}").json()["state"]
                   == "running", timeout=30)
        m = scrape(service)
        user.post(f"/api/v1/tasks/{task['id']}/cancel")
    finally:
        agent.stop()
    assert value(m, "computility_tasks", state="running") == 1
    assert value(m, "computility_site_busy_cu", site="zjk-1", device=CPU) == pytest.approx(
        16 * cu_of(CPU))


def test_an_expired_lease_is_counted(db_url: str | None, tmp_path: Path) -> None:
    with local_control_plane(tmp_path / "data", db_url, cycle_s=0.1,
                             lease_ttl_s=TTL_S) as server:
        admin = server.client()
        agent = FakeAgent(server.url, new_tenant(admin, "hubs", "provider"), "zjk-1",
                          {"cpu": (CPU, 64)}).register()
        user = server.client(new_tenant(admin, "lab"))
        task = user.post("/api/v1/tasks", json=cpu_task(0)).json()
        wait_until(lambda: user.get(f"/api/v1/tasks/{task['id']}").json()["state"] == "queued")
        with agent.client() as http:  # leased, then never renewed nor reported
            r = http.post("/api/v1/agent/lease", json={"free": {"cpu": 64}, "wait_s": 0})
            assert len(r.json()["leases"]) == 1
        wait_until(lambda: value(scrape(server), "computility_lease_expiries_total") == 1,
                   timeout=30)
        m = scrape(server)
    assert value(m, "computility_leases_granted_total") == 1
    assert value(m, "computility_tasks", state="leased") == 0


def test_metric_names_follow_the_prometheus_conventions(
    service: LocalControlPlane, user: httpx.Client,
) -> None:
    user.get("/api/v1/tasks")
    families = scrape(service)
    ours = {n: f for n, f in families.items() if not n.startswith("process_")}
    assert len(ours) > 30
    snake = re.compile(r"[a-z][a-z0-9_]*")
    allowed_labels = {"state", "kind", "outcome", "step", "reason", "method", "route",
                      "status_class", "site", "device", "currency", "component", "version",
                      "python", "database", "replica", "le"}
    for name, family in ours.items():
        assert name.startswith("computility_"), name
        assert snake.fullmatch(name), name
        assert family.documentation, f"{name}: no help text"
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), name
        if family.type == "histogram":  # every histogram here measures time
            assert name.endswith("_seconds"), name
        if family.type == "gauge":
            assert not name.endswith("_total"), name
        if any(word in name for word in ("duration", "wait", "timestamp")):
            assert name.endswith("_seconds") or name.endswith("_created"), name
        for sample in family.samples:
            # Low cardinality: never a task, an attempt or a raw path as a label.
            assert set(sample.labels) <= allowed_labels, (name, sample.labels)
    assert "computility_build_info" in ours
    routes = {s.labels["route"] for s in
              ours["computility_http_request_duration_seconds"].samples}
    assert "/api/v1/tasks" in routes
    assert not [r for r in routes if any(part.isdigit() for part in r.split("/"))]


def test_each_control_plane_counts_in_a_registry_of_its_own(
    service: LocalControlPlane, user: httpx.Client, tmp_path: Path,
) -> None:
    with local_control_plane(tmp_path / "other") as other:
        assert user.post("/api/v1/tasks", json=cpu_task(0)).status_code == 201
        assert other.plane.metrics.registry is not service.plane.metrics.registry
        assert value(scrape(service), "computility_tasks_submitted_total", kind="single") == 1
        assert value(scrape(other), "computility_tasks_submitted_total", kind="single") == 0
