"""The control plane end to end: a thousand tasks through two sites, each billed exactly once.

Real HTTP on 127.0.0.1, the real database (SQLite, then PostgreSQL), the real scheduling loop;
only execution is faked (`FakeAgent`).
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from computility.server.db import schema as db
from computility.testing.controlplane import FakeAgent, LocalControlPlane, new_tenant, wait_until

TASKS = 1000


def _spec(i: int) -> dict[str, object]:
    gpu = i % 5 == 0
    spec: dict[str, object] = {
        "name": f"job-{i}",
        "run": f"python step.py {i}",
        "resources": {"cpus": 1 + i % 8, "estimate": f"{1 + i % 50}m"},
        "envs": {"FAKE_RUN_S": str(60 * (1 + i % 50)), "FAKE_EXIT": "0"},
    }
    if gpu:
        spec["resources"] = {"cpus": 4, "accelerators": "A100:1", "estimate": "20m"}
        spec["envs"] = {"FAKE_RUN_S": "1200"}
    return spec


def test_a_thousand_tasks_on_two_sites_complete_and_are_billed_once(
    service: LocalControlPlane,
) -> None:
    admin = service.client()
    provider = new_tenant(admin, "acme", "provider")
    user = new_tenant(admin, "alice", "user")
    agents = [
        FakeAgent(service.url, provider, "east", {"cpu": ("EPYC-7763", 128),
                                                 "gpu": ("A100-80GB", 8)},
                  region="YRD", price_per_cu_hour=0.40, time_scale=0.0002,
                  heartbeat_s=1.0).start(),
        FakeAgent(service.url, provider, "west", {"cpu": ("EPYC-7763", 64)},
                  region="GA", price_per_cu_hour=0.25, time_scale=0.0002,
                  heartbeat_s=1.0).start(),
    ]
    try:
        client = service.client(user)
        ids: list[int] = []
        for start in range(0, TASKS - 100, 300):
            batch = [_spec(i) for i in range(start, min(start + 300, TASKS - 100))]
            r = client.post("/api/v1/tasks/batch", json={"tasks": batch})
            assert r.status_code == 201, r.text
            ids += [t["id"] for t in r.json()["tasks"]]
        for i in range(TASKS - 100, TASKS):
            r = client.post("/api/v1/tasks", json=_spec(i))
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        assert len(set(ids)) == TASKS

        def finished() -> bool:
            page = client.get("/api/v1/tasks", params={"state": "succeeded", "limit": 1000})
            return len(page.json()["tasks"]) == TASKS

        wait_until(finished, timeout=240, every=0.5)
    finally:
        for agent in agents:
            agent.stop()

    tasks = client.get("/api/v1/tasks", params={"limit": 1000}).json()["tasks"]
    assert {t["state"] for t in tasks} == {"succeeded"}
    assert {t["site"] for t in tasks} == {"east", "west"}
    with service.plane.engine.connect() as conn:
        entries = conn.execute(select(db.ledger.c.attempt_id, db.ledger.c.task_id,
                                      db.ledger.c.total_micro)).all()
        attempts = conn.execute(select(func.count()).select_from(db.attempts)).scalar()
    # Exactly one entry per attempt, one attempt per task.
    assert len(entries) == TASKS == attempts
    assert len({e.attempt_id for e in entries}) == TASKS
    assert sorted(e.task_id for e in entries) == sorted(ids)
    # The ledger sums to the bills: per task, and for the tenant.
    by_task = {e.task_id: e.total_micro for e in entries}
    for t in tasks:
        assert Decimal(str(t["cost"])) == Decimal(by_task[t["id"]]) / 1_000_000
    usage = client.get("/api/v1/usage").json()
    assert usage["attempts"] == TASKS
    assert Decimal(str(usage["total"])) == Decimal(sum(by_task.values())) / 1_000_000
    assert Decimal(str(usage["total"])) == (
        Decimal(str(usage["compute"])) + Decimal(str(usage["energy"]))
        + Decimal(str(usage["network"]))
    )
    # Providers see the same money as earnings, per site.
    earned = service.client(provider).get("/api/v1/earnings").json()["sites"]
    assert sum(Decimal(str(s["total"])) for s in earned) == Decimal(str(usage["total"]))


def test_a_run_that_matches_its_quote_is_billed_exactly_the_quote(
    service: LocalControlPlane,
) -> None:
    admin = service.client()
    provider = new_tenant(admin, "acme", "provider")
    user = new_tenant(admin, "alice", "user")
    agent = FakeAgent(service.url, provider, "flat", {"cpu": ("EPYC-7763", 64)},
                      price_per_cu_hour=0.37, time_scale=0.0005, heartbeat_s=1.0).start()
    try:
        client = service.client(user)
        spec = {"run": "train", "resources": {"cpus": 16, "estimate": "45m"},
                "envs": {"FAKE_RUN_S": str(45 * 60)}}
        quote = client.post("/api/v1/quote", json=spec).json()
        [line] = quote["candidates"]
        task = client.post("/api/v1/tasks", json=spec).json()
        wait_until(lambda: client.get(f"/api/v1/tasks/{task['id']}").json()["state"]
                   == "succeeded", timeout=60)
        billed = client.get(f"/api/v1/tasks/{task['id']}").json()
    finally:
        agent.stop()
    assert line["run_s"] == 45 * 60
    assert billed["cost"] == line["price"] > 0
    assert billed["quote_max"] == line["max_price"]


def test_a_running_task_is_stopped_when_its_metered_cost_reaches_max_price(
    service: LocalControlPlane,
) -> None:
    """`max_price` bounds what a task may cost: the quote's maximum must fit under it, and a run
    that would go on past it (here: an agent that does not enforce the timeout) is stopped."""
    admin = service.client()
    provider = new_tenant(admin, "acme", "provider")
    user = new_tenant(admin, "alice", "user")
    agent = FakeAgent(service.url, provider, "flat", {"cpu": ("EPYC-7763", 64)},
                      price_per_cu_hour=0.5, time_scale=0.001, heartbeat_s=0.2).start()
    try:
        client = service.client(user)
        spec: dict[str, object] = {"run": "loop forever", "timeout": "1h",
                                   "resources": {"cpus": 8}, "envs": {"FAKE_RUN_S": "36000"}}
        limit = client.post("/api/v1/quote", json=spec).json()["max_price"]
        spec["placement"] = {"max_price": limit}
        task = client.post("/api/v1/tasks", json=spec)
        assert task.status_code == 201, task.text
        tid = task.json()["id"]
        wait_until(lambda: client.get(f"/api/v1/tasks/{tid}").json()["state"] == "failed",
                   timeout=60)
        done = client.get(f"/api/v1/tasks/{tid}").json()
    finally:
        agent.stop()
    assert done["reason"].startswith("stopped: metered cost reached max_price")
    assert done["attempts"] == 1
    # Billed once, for what ran: at least the limit, and at most a few heartbeats past it.
    assert limit <= done["cost"] <= limit * 1.2
