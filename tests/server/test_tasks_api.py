"""The tasks API as users see it: submit, list, get, cancel, retries, quotes, budgets, quotas,
explanations and bills.

Sites here are `FakeAgent`s: a task "runs" for ``envs.FAKE_RUN_S`` seconds scaled by 1/1000 and
exits with ``envs.FAKE_EXIT``; the agent reports the unscaled run time, so bills are those of
the stated run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from computility.domain.devices import default_catalogue
from computility.network import load_network
from computility.server.db import schema as db
from computility.server.live import LiveNetwork, PoolRow, SiteRow, bills
from computility.testing.controlplane import FakeAgent, LocalControlPlane, new_tenant, wait_until

CPU = "EPYC-7763"
CU_PER_CORE = default_catalogue().get(CPU).fp32


def spec(run_s: float = 1.0, cpus: int = 1, **extra: Any) -> dict[str, Any]:
    """A CPU task that fakes a run of `run_s` seconds (1/1000 of that in wall time)."""
    body: dict[str, Any] = {"run": "python work.py", "resources": {"cpus": cpus},
                            "envs": {"FAKE_RUN_S": str(run_s)}}
    body.update(extra)
    return body


def get(c: httpx.Client, tid: int) -> dict[str, Any]:
    r = c.get(f"/api/v1/tasks/{tid}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def wait_state(c: httpx.Client, tid: int, *wanted: str, timeout: float = 10.0) -> dict[str, Any]:
    """The task once it is in one of `wanted` (AssertionError naming its last state if not)."""
    last: dict[str, Any] = {}

    def reached() -> bool:
        last.update(get(c, tid))
        return last["state"] in wanted

    try:
        wait_until(reached, timeout=timeout, every=0.05)
    except AssertionError:
        raise AssertionError(f"task {tid} not {wanted} within {timeout} s: {last}") from None
    return last


def ledger_entries(service: LocalControlPlane, task_id: int | None = None) -> int:
    query = select(func.count()).select_from(db.ledger)
    if task_id is not None:
        query = query.where(db.ledger.c.task_id == task_id)
    with service.plane.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def count_tasks(service: LocalControlPlane) -> int:
    with service.plane.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.tasks)).scalar_one())


@pytest.fixture
def admin(service: LocalControlPlane) -> Iterator[httpx.Client]:
    with service.client() as c:
        yield c


@pytest.fixture
def provider(admin: httpx.Client) -> str:
    return new_tenant(admin, "provider-co", "provider")


@pytest.fixture
def agents(service: LocalControlPlane) -> Iterator[list[FakeAgent]]:
    """Agents a test starts; all are stopped before the service is."""
    started: list[FakeAgent] = []
    yield started
    for agent in started:
        agent.stop()


@pytest.fixture
def site(
    service: LocalControlPlane, provider: str, agents: list[FakeAgent]
) -> Callable[..., FakeAgent]:
    """Register (and by default start) a fake site: ``site("s1", start=False, ...)``."""

    def make(name: str = "s1", start: bool = True, **kw: Any) -> FakeAgent:
        kw.setdefault("pools", {"cpu": (CPU, 64)})
        kw.setdefault("lease_wait_s", 0.2)
        agent = FakeAgent(service.url, provider, name, **kw)
        if start:
            agent.start()
            agents.append(agent)
        else:
            agent.register()
        return agent

    return make


# -- submit ---------------------------------------------------------------------------------------


def test_json_yaml_and_batch_specs_become_pending_tasks_of_the_callers_tenant(
    admin: httpx.Client,
) -> None:
    """With no site registered yet a task is accepted and waits as pending; the YAML form is the
    same task as its JSON equivalent; a batch is one task per spec, in order; GET shows the spec
    as submitted, and an unknown id is 404."""
    body = spec(name="hello", retries=1, timeout="2h")
    r = admin.post("/api/v1/tasks", json=body)
    assert r.status_code == 201, r.text
    task = r.json()
    assert (task["state"], task["tenant"], task["name"], task["retries"]) == (
        "pending", "default", "hello", 1)
    assert task["attempts"] == 0 and task["cost"] == 0
    assert get(admin, task["id"])["spec"] == body
    missing = admin.get(f"/api/v1/tasks/{task['id'] + 1000}")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")

    text = (
        "name: train\n"
        "run: python train.py --epochs 3\n"
        "envs: {SEED: \"1\"}\n"
        "resources:\n  cpus: 4\n  memory: 16GB\n  estimate: 30m\n"
        "placement:\n  policy: cheapest\n  regions: [TF, GA]\n"
        "retries: 2\n"
        "timeout: 2h\n"
    )
    r = admin.post("/api/v1/tasks", content=text.encode(),
                   headers={"content-type": "application/yaml; charset=utf-8"})
    assert r.status_code == 201, r.text
    task = get(admin, r.json()["id"])
    assert (task["name"], task["policy"], task["retries"], task["state"]) == (
        "train", "cheapest", 2, "pending")
    assert task["spec"] == {
        "name": "train", "run": "python train.py --epochs 3", "envs": {"SEED": "1"},
        "resources": {"cpus": 4, "memory": "16GB", "estimate": "30m"},
        "placement": {"policy": "cheapest", "regions": ["TF", "GA"]},
        "retries": 2, "timeout": "2h",
    }

    r = admin.post("/api/v1/tasks/batch", json={"tasks": [spec(name=f"t{i}") for i in range(3)]})
    assert r.status_code == 201, r.text
    tasks = r.json()["tasks"]
    assert [t["name"] for t in tasks] == ["t0", "t1", "t2"]
    assert [t["id"] for t in tasks] == sorted(t["id"] for t in tasks)
    assert {t["state"] for t in tasks} == {"pending"}


def test_a_yaml_spec_with_an_iso_8601_deadline_is_accepted(admin: httpx.Client) -> None:
    """YAML reads an unquoted ISO-8601 time as a timestamp; the contract allows exactly that
    (``deadline: 6h  # or an ISO-8601 time``), so it must be accepted like the JSON string."""
    as_json = admin.post("/api/v1/tasks", json=spec(
        placement={"deadline": "2030-01-01T00:00:00+08:00"}))
    assert as_json.status_code == 201, as_json.text
    text = b"run: python work.py\nplacement:\n  deadline: 2030-01-01T00:00:00+08:00\n"
    r = admin.post("/api/v1/tasks", content=text, headers={"content-type": "application/yaml"})
    time.sleep(0.3 if r.status_code >= 500 else 0)  # let the server log first (CPython 3.11)
    assert r.status_code == 201, r.text
    assert get(admin, r.json()["id"])["state"] == "pending"


# -- list and get ---------------------------------------------------------------------------------


def test_listing_pages_newest_first_by_cursor_and_filters_by_state_and_name(
    admin: httpx.Client,
) -> None:
    """Following ``next_cursor`` visits every task once, newest first, and the last page has
    none; ``state`` and ``name`` filter (together too)."""
    ids = [t["id"] for t in admin.post("/api/v1/tasks/batch", json={"tasks": [
        spec(name=n) for n in ("a", "b", "a", "c", "d", "e", "f")]}).json()["tasks"]]
    pages: list[list[int]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = admin.get("/api/v1/tasks", params=params).json()
        pages.append([t["id"] for t in page["tasks"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "the cursor never ends"
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == sorted(ids, reverse=True)
    exact = admin.get("/api/v1/tasks", params={"limit": 7}).json()
    assert len(exact["tasks"]) == 7 and exact["next_cursor"] is None

    for tid in ids[:2]:
        assert admin.post(f"/api/v1/tasks/{tid}/cancel").status_code == 200

    def listed(**params: Any) -> set[int]:
        return {t["id"] for t in admin.get("/api/v1/tasks", params=params).json()["tasks"]}

    assert listed(state="cancelled") == set(ids[:2])
    assert listed(state="pending") == set(ids[2:])
    assert listed(state="running") == set()
    assert listed(name="a") == {ids[0], ids[2]}
    assert listed(name="a", state="pending") == {ids[2]}


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_ends_a_pending_task_at_once_and_a_running_one_through_its_agent_billed_once(
    service: LocalControlPlane, admin: httpx.Client, site: Callable[..., FakeAgent],
) -> None:
    """A pending task holds nothing: it is cancelled at once, never billed, and a site appearing
    later does not resurrect it. A running one is stopped by its agent, told on its next
    heartbeat; it ends ``cancelled`` with one ledger entry for what ran."""
    pending = admin.post("/api/v1/tasks", json=spec()).json()["id"]
    r = admin.post(f"/api/v1/tasks/{pending}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    again = admin.post(f"/api/v1/tasks/{pending}/cancel")
    assert again.status_code == 200 and again.json()["state"] == "cancelled"

    agent = site("s1", heartbeat_s=0.1)
    running = admin.post("/api/v1/tasks", json=spec(run_s=600_000)).json()["id"]
    wait_state(admin, running, "running")
    r = admin.post(f"/api/v1/tasks/{running}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["state"] in ("running", "cancelled")
    task = wait_state(admin, running, "cancelled", "failed", "succeeded")
    assert task["state"] == "cancelled"
    attempts = admin.get(f"/api/v1/tasks/{running}/attempts").json()
    assert [a["state"] for a in attempts] == ["cancelled"]
    assert any(rep["state"] == "exited" and rep.get("signal") for rep in agent.reports)
    time.sleep(0.3)  # later heartbeats or a repeated report must not bill again
    assert ledger_entries(service, running) == 1
    usage = admin.get("/api/v1/usage").json()
    assert usage["attempts"] == 1
    assert task["cost"] == pytest.approx(usage["total"]) and usage["total"] > 0
    never = get(admin, pending)
    assert (never["state"], never["attempts"], never["cost"]) == ("cancelled", 0, 0)


# -- idempotency ----------------------------------------------------------------------------------


def test_a_retried_submission_with_the_same_idempotency_key_returns_the_same_tasks(
    service: LocalControlPlane, admin: httpx.Client,
) -> None:
    """Single and batch: the retry answers with the first submission's tasks, no new rows; a
    different key is a new submission."""
    key = {"Idempotency-Key": "submit-1"}
    first = admin.post("/api/v1/tasks", json=spec(name="once"), headers=key)
    second = admin.post("/api/v1/tasks", json=spec(name="once"), headers=key)
    assert first.status_code == 201 and second.status_code in (200, 201)
    assert second.json()["id"] == first.json()["id"]
    assert count_tasks(service) == 1
    other = admin.post("/api/v1/tasks", json=spec(name="once"),
                       headers={"Idempotency-Key": "submit-2"})
    assert other.json()["id"] != first.json()["id"]
    assert count_tasks(service) == 2

    body = {"tasks": [spec(name="a"), spec(name="b"), spec(name="c")]}
    key = {"Idempotency-Key": "batch-1"}
    first = admin.post("/api/v1/tasks/batch", json=body, headers=key)
    second = admin.post("/api/v1/tasks/batch", json=body, headers=key)
    assert first.status_code == 201 and second.status_code in (200, 201)
    assert [t["id"] for t in second.json()["tasks"]] == [t["id"] for t in first.json()["tasks"]]
    assert count_tasks(service) == 5


# -- retries and billing --------------------------------------------------------------------------


def test_a_failing_task_runs_once_per_retry_then_fails_with_every_attempt_billed(
    service: LocalControlPlane, admin: httpx.Client, site: Callable[..., FakeAgent],
) -> None:
    """``retries: 2`` and exit 3 every time: three attempts, each billed once, then
    ``failed`` with exit code 3."""
    site("s1")
    body = spec(run_s=60, retries=2)
    body["envs"]["FAKE_EXIT"] = "3"
    tid = admin.post("/api/v1/tasks", json=body).json()["id"]
    task = wait_state(admin, tid, "failed", "succeeded", "cancelled", "lost")
    assert (task["state"], task["exit_code"], task["user_failures"]) == ("failed", 3, 3)
    attempts = admin.get(f"/api/v1/tasks/{tid}/attempts").json()
    assert [(a["number"], a["state"], a["exit_code"]) for a in attempts] == [
        (1, "failed", 3), (2, "failed", 3), (3, "failed", 3)]
    assert ledger_entries(service, tid) == 3
    usage = admin.get("/api/v1/usage").json()
    assert usage["attempts"] == 3
    assert task["attempts"] == 3
    assert task["cost"] == pytest.approx(usage["total"]) and usage["total"] > 0


def test_a_run_equal_to_its_estimate_is_billed_exactly_the_quoted_price(
    admin: httpx.Client, site: Callable[..., FakeAgent],
) -> None:
    """Quotes and bills come from one cost model: on a flat-priced site a run that lasts its
    estimate costs the quoted price to the micro-unit."""
    # Figures whose components do not land on a half micro-unit (see the test below for those).
    site("s1", price_per_cu_hour=0.8, electricity_price_per_kwh=0.5, carbon_kg_per_kwh=0.4)
    body = spec(run_s=600, cpus=2)
    body["resources"]["estimate"] = "10m"
    quote = admin.post("/api/v1/quote", json=body).json()
    [candidate] = quote["candidates"]
    assert candidate["run_s"] == 600
    tid = admin.post("/api/v1/tasks", json=body).json()["id"]
    task = wait_state(admin, tid, "succeeded", "failed")
    assert task["state"] == "succeeded"
    assert task["cost"] == candidate["price"]
    assert admin.get("/api/v1/usage").json()["total"] == candidate["price"]


def test_a_flat_priced_run_costs_the_same_whenever_it_starts() -> None:
    """With flat electricity and carbon, the price of a run cannot depend on its start time, so
    a bill always equals its quote — even when a component lands exactly on a half micro-unit
    (2 EPYC cores for 10 min at 0.6/kWh: 0.0018958 kWh x 600000 micro = 1137.5 micro)."""
    base = load_network("default")
    zjk = next(r for r in base.regions if r.id == "ZJK")
    live = LiveNetwork(base, [SiteRow(
        id="flat", owner="p", region="ZJK", lat=zjk.lat, lon=zjk.lon, pue=1.3,
        electricity_price_micro=600_000, carbon_kg_per_kwh=0.4, electricity_curve=None,
        carbon_curve=None, allowed_tenants=None, online=True)],
        [PoolRow(site="flat", pool="cpu", device=CPU, count=64, devices_per_node=1,
                 price_micro=800_000, free_units=64)])
    row = live.pool_row("flat", "cpu")
    assert row is not None
    seen: dict[tuple[int, int, int], list[float]] = {}
    for k in range(100):
        start = 1_800_000_000.0 + k * 997.0  # fixed instants spread over a day and more
        b = bills(live.price([row], [2], [600.0], start), 0.0)[0]
        seen.setdefault((b.compute_micro, b.energy_micro, b.total_micro), []).append(start)
    assert len(seen) == 1, {k: len(v) for k, v in seen.items()}


# -- quotes, max_price, budgets, quotas -----------------------------------------------------------


def test_a_quote_lists_each_candidate_within_its_maximum_and_max_price_below_that_is_422(
    service: LocalControlPlane, admin: httpx.Client, site: Callable[..., FakeAgent],
) -> None:
    """Every candidate's expected price is at most its maximum (a run of the whole timeout);
    the quote's maximum is the cheapest candidate's; placement rules narrow the candidates. A
    submission whose ``max_price`` is below the quote's maximum is refused naming
    ``placement.max_price``, and one at it is accepted."""
    site("cheap", start=False, region="ZJK", price_per_cu_hour=0.2)
    site("dear", start=False, region="TF", price_per_cu_hour=2.0)
    body = spec(cpus=4)
    body["resources"]["estimate"] = "1h"
    body["timeout"] = "3h"
    quote = admin.post("/api/v1/quote", json=body).json()
    by_site = {c["site"]: c for c in quote["candidates"]}
    assert set(by_site) == {"cheap", "dear"}, (quote, admin.get("/api/v1/sites").json())
    for c in quote["candidates"]:
        assert 0 < c["price"] <= c["max_price"]
        assert c["run_s"] == 3600
    assert by_site["cheap"]["price"] < by_site["dear"]["price"]
    assert quote["max_price"] == min(c["max_price"] for c in quote["candidates"])
    assert quote["timeout_s"] == 3 * 3600
    only_tf = admin.post("/api/v1/quote", json={**body, "placement": {"regions": ["TF"]}})
    assert [c["site"] for c in only_tf.json()["candidates"]] == ["dear"]

    maximum = quote["max_price"]
    r = admin.post("/api/v1/tasks", json={**body, "placement": {"max_price": maximum / 2}})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "placement.max_price" in [e["field"] for e in r.json()["errors"]]
    assert count_tasks(service) == 0
    ok = admin.post("/api/v1/tasks", json={**body, "placement": {"max_price": maximum}})
    assert ok.status_code == 201, ok.text


def test_a_submission_whose_quote_maximum_exceeds_the_remaining_budget_is_402(
    service: LocalControlPlane, admin: httpx.Client, site: Callable[..., FakeAgent],
) -> None:
    site("s1", start=False)
    user = new_tenant(admin, "thrifty", "user")
    r = admin.put("/api/v1/tenants/thrifty", json={"id": "thrifty", "budget": 0.05})
    assert r.status_code == 200 and r.json()["budget"] == 0.05
    with httpx.Client(base_url=service.url,
                      headers={"Authorization": f"Bearer {user}"}) as c:
        day = c.post("/api/v1/quote", json=spec()).json()["max_price"]
        assert day > 0.05
        refused = c.post("/api/v1/tasks", json=spec())
        assert refused.status_code == 402, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["status"] == 402 and "budget" in refused.json()["detail"]
        batch = c.post("/api/v1/tasks/batch", json={"tasks": [spec(timeout="1m"), spec()]})
        assert batch.status_code == 402 and "tasks[1]" in batch.json()["detail"]
        short = c.post("/api/v1/tasks", json=spec(timeout="1m"))
        assert short.status_code == 201, short.text
        usage = c.get("/api/v1/usage").json()
        assert (usage["budget"], usage["budget_left"]) == (0.05, 0.05)
    assert count_tasks(service) == 1


def test_a_task_over_the_concurrent_cu_quota_is_held_with_the_reason_then_runs(
    service: LocalControlPlane, admin: httpx.Client, site: Callable[..., FakeAgent],
) -> None:
    """Two 4-core tasks, room for one under the quota: the second waits ``held`` saying why,
    and runs once the first has finished."""
    four_cores = 4 * CU_PER_CORE
    user = new_tenant(admin, "capped", "user", concurrent_cu_quota=1.5 * four_cores)
    site("s1")
    with httpx.Client(base_url=service.url,
                      headers={"Authorization": f"Bearer {user}"}) as c:
        first, second = (t["id"] for t in c.post("/api/v1/tasks/batch", json={"tasks": [
            spec(run_s=600, cpus=4), spec(run_s=10, cpus=4)]}).json()["tasks"])
        held = wait_state(c, second, "held", "succeeded", timeout=5)
        assert held["state"] == "held"
        assert "quota" in (held["reason"] or "")
        assert get(c, first)["state"] in ("queued", "leased", "running")
        done_first = wait_state(c, first, "succeeded", "failed")
        done_second = wait_state(c, second, "succeeded", "failed")
    assert done_first["state"] == done_second["state"] == "succeeded"
    [a1] = admin.get(f"/api/v1/tasks/{first}/attempts").json()
    [a2] = admin.get(f"/api/v1/tasks/{second}/attempts").json()
    assert a2["leased_at"] >= a1["ended_at"]


# -- explain --------------------------------------------------------------------------------------


def test_explain_says_why_a_task_waits_and_once_placed_where_and_which_candidate_won(
    admin: httpx.Client, site: Callable[..., FakeAgent],
) -> None:
    """With no site: pending because none is registered. Then a site that never leases keeps
    it ``queued`` there: explain names the site and pool and marks that candidate chosen."""
    tid = admin.post("/api/v1/tasks", json=spec(placement={"policy": "cheapest"})).json()["id"]
    why = admin.get(f"/api/v1/tasks/{tid}/explain").json()
    assert why["task"] == tid and why["state"] == "pending"
    assert "no site" in why["reason"]
    assert why["candidates"] == [] and why["site"] is None

    site("idle", start=False, price_per_cu_hour=0.2)
    site("other", start=False, region="TF", price_per_cu_hour=3.0)
    wait_state(admin, tid, "queued", timeout=5)
    why = admin.get(f"/api/v1/tasks/{tid}/explain").json()
    assert (why["state"], why["site"], why["pool"]) == ("queued", "idle", "cpu")
    assert "idle" in why["reason"]
    chosen = [c for c in why["candidates"] if c["chosen"]]
    assert [(c["site"], c["pool"]) for c in chosen] == [("idle", "cpu")]
    assert {c["site"] for c in why["candidates"]} == {"idle", "other"}
