"""Datasets in the control plane: sites declare what they hold, tasks' ``inputs:`` are placed by
the core's data rules, quotes and bills charge the move of ``residency: any`` data.

Real HTTP on 127.0.0.1, the real database (SQLite, then PostgreSQL) and the real scheduling loop;
only execution is faked (`FakeAgent`). The sites register over the API with their datasets, then
their fake agents serve them with the agent keys they were given.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from computility.domain.network import Link
from computility.server.db import schema as db
from computility.testing.controlplane import FakeAgent, LocalControlPlane, new_tenant, wait_until

SIZE_GB = 150.0
HOLDER, OTHER, THIRD = ("east", "YRD"), ("west", "GA"), ("north", "TF")


def _register(service: LocalControlPlane, provider: str, site: str, region: str,
              datasets: list[dict[str, Any]], price: float = 0.5,
              cores: int = 64) -> httpx.Response:
    body = {"id": site, "region": region, "backend": "fake", "electricity_price_per_kwh": 0.5,
            "carbon_kg_per_kwh": 0.5, "datasets": datasets,
            "pools": [{"id": "cpu", "device": "EPYC-7763", "count": cores,
                       "price_per_cu_hour": price}]}
    with service.client(provider) as c:
        return c.post("/api/v1/sites", json=body)


def _site(service: LocalControlPlane, provider: str, site: tuple[str, str],
          datasets: list[dict[str, Any]], price: float = 0.5, cores: int = 64) -> FakeAgent:
    r = _register(service, provider, *site, datasets, price, cores)
    assert r.status_code == 201, r.text
    return FakeAgent(service.url, provider, site[0], {"cpu": ("EPYC-7763", cores)},
                     region=site[1], price_per_cu_hour=price, key=r.json()["agent_key"],
                     heartbeat_s=1.0, time_scale=0.001).start()


def _task(residency: str | None, dataset: str = "imagenet-mini", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"run": "python train.py", "timeout": "1h",
                            "resources": {"cpus": 4, "estimate": "10m"},
                            "envs": {"FAKE_RUN_S": "600"}, **extra}
    if residency is not None:
        spec["inputs"] = [{"dataset": dataset, "residency": residency}]
    return spec


def _link(service: LocalControlPlane, src: str, dst: str) -> Link:
    [link] = [lk for lk in service.plane.base.links if (lk.src, lk.dst) == (src, dst)]
    return link


@pytest.fixture
def keys(service: LocalControlPlane) -> tuple[str, httpx.Client]:
    with service.client() as admin:
        provider = new_tenant(admin, "acme", "provider")
        user = new_tenant(admin, "alice", "user")
    return provider, service.client(user)


def test_registration_round_trips_datasets_and_never_takes_a_path(
    service: LocalControlPlane, keys: tuple[str, httpx.Client],
) -> None:
    provider, user = keys
    declared = [{"id": "imagenet-mini", "size_gb": SIZE_GB}, {"id": "coco", "size_gb": 20.5}]
    r = _register(service, provider, *HOLDER, declared)
    assert r.status_code == 201, r.text
    assert r.json()["site"]["datasets"] == declared
    with service.client(provider) as c:
        assert c.get("/api/v1/sites/east").json()["datasets"] == declared
    assert {s["id"]: s["datasets"] for s in user.get("/api/v1/sites").json()} == {
        "east": declared}

    # The path stays with the agent: the service refuses one, by name.
    with_path = [{"id": "imagenet-mini", "size_gb": 1, "path": "/data/imagenet"}]
    r = _register(service, provider, *HOLDER, with_path)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"].endswith("path")
    r = _register(service, provider, *HOLDER, [{"id": "a", "size_gb": 1}, {"id": "a",
                                                                          "size_gb": 2}])
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "datasets[1].id")
    r = _register(service, provider, *HOLDER, [{"id": "a", "size_gb": 0}])
    assert r.status_code == 422

    # Registering again replaces what the site holds.
    r = _register(service, provider, *HOLDER, [])
    assert r.status_code == 201 and r.json()["site"]["datasets"] == []
    quote = user.post("/api/v1/quote", json=_task("local")).json()
    assert quote["candidates"] == []
    assert quote["reason"] == "dataset 'imagenet-mini' is not held by any site"


def test_a_local_dataset_task_runs_only_where_the_data_is(
    service: LocalControlPlane, keys: tuple[str, httpx.Client],
) -> None:
    provider, user = keys
    data = [{"id": "imagenet-mini", "size_gb": SIZE_GB}]
    # The holder is far dearer: a cheapest task goes to the other site unless its data is pinned.
    agents = [_site(service, provider, HOLDER, data, price=2.0),
              _site(service, provider, OTHER, [], price=0.1)]
    try:
        pinned = [user.post("/api/v1/tasks", json=_task(
            "local", placement={"policy": "cheapest"})).json()["id"] for _ in range(6)]
        free = user.post("/api/v1/tasks", json=_task(None, placement={"policy": "cheapest"}))
        ids = [*pinned, free.json()["id"]]
        wait_until(lambda: all(user.get(f"/api/v1/tasks/{i}").json()["state"] == "succeeded"
                               for i in ids), timeout=60)
        explained = user.get(f"/api/v1/tasks/{pinned[0]}/explain").json()
    finally:
        for agent in agents:
            agent.stop()
    sites = [user.get(f"/api/v1/tasks/{i}").json()["site"] for i in ids]
    assert sites == ["east"] * 6 + ["west"]
    assert {c["site"] for c in explained["candidates"]} == {"east"}
    assert explained["candidates"][0]["chosen"] and explained["candidates"][0]["moved_gb"] == 0


def test_moving_any_residency_data_shows_in_the_quote_and_is_billed_as_quoted(
    service: LocalControlPlane, keys: tuple[str, httpx.Client],
) -> None:
    provider, user = keys
    agents = [_site(service, provider, HOLDER, [{"id": "imagenet-mini", "size_gb": SIZE_GB}]),
              _site(service, provider, OTHER, [])]
    link = _link(service, "YRD", "GA")
    egress = round(SIZE_GB * link.egress_per_gb)
    try:
        plain = {c["site"]: c for c in user.post("/api/v1/quote", json=_task(None))
                 .json()["candidates"]}
        moved = {c["site"]: c for c in user.post("/api/v1/quote", json=_task("any"))
                 .json()["candidates"]}
        ids = {}
        for site in ("east", "west"):
            r = user.post("/api/v1/tasks", json=_task("any", placement={"sites": [site]}))
            assert r.status_code == 201, r.text
            ids[site] = r.json()["id"]
        wait_until(lambda: all(user.get(f"/api/v1/tasks/{i}").json()["state"] == "succeeded"
                               for i in ids.values()), timeout=60)
        tasks = {s: user.get(f"/api/v1/tasks/{i}").json() for s, i in ids.items()}
    finally:
        for agent in agents:
            agent.stop()
    # Identical sites: without data they cost the same; the holder still does with it.
    assert plain["east"]["price"] == plain["west"]["price"] == moved["east"]["price"]
    assert (moved["east"]["transfer_s"], moved["east"]["moved_gb"]) == (0, 0)
    # Elsewhere the data moves first: its transfer time, and its egress on the price.
    assert moved["west"]["moved_gb"] == SIZE_GB
    assert moved["west"]["transfer_s"] == pytest.approx(link.transfer_s(SIZE_GB))
    assert link.transfer_s(SIZE_GB) > 1
    assert round((moved["west"]["price"] - plain["west"]["price"]) * 1e6) == egress
    assert round((moved["west"]["max_price"] - plain["west"]["max_price"]) * 1e6) == egress
    # The ledger bills the move, exactly as quoted.
    with service.plane.engine.connect() as conn:
        ledger = {r.task_id: r for r in conn.execute(select(db.ledger)).all()}
    west, east = ledger[ids["west"]], ledger[ids["east"]]
    assert (west.network_micro, west.gb_moved) == (egress, SIZE_GB)
    assert (east.network_micro, east.gb_moved) == (0, 0)
    assert tasks["west"]["cost"] == moved["west"]["price"]
    assert tasks["east"]["cost"] == moved["east"]["price"]
    usage = user.get("/api/v1/usage").json()
    assert round(usage["network"] * 1e6) == egress and usage["gb_moved"] == SIZE_GB


def test_a_dataset_no_site_holds_waits_pending_until_a_holder_registers(
    service: LocalControlPlane, keys: tuple[str, httpx.Client],
) -> None:
    provider, user = keys
    agents = [_site(service, provider, OTHER, [{"id": "imagenet-mini", "size_gb": SIZE_GB}]),
              _site(service, provider, THIRD, [], cores=128)]
    try:
        r = user.post("/api/v1/tasks", json=_task("local", dataset="ghost"))
        assert r.status_code == 201, r.text
        ghost = r.json()
        assert ghost["state"] == "pending"
        assert ghost["reason"] == "dataset 'ghost' is not held by any site"
        # Held, but only by a site too small for the task (north could hold it, without the
        # data), and the data may not move.
        big = _task("local", resources={"cpus": 128, "estimate": "10m"})
        r = user.post("/api/v1/tasks", json=big)
        assert r.status_code == 201, r.text
        assert r.json()["reason"] == ("dataset 'imagenet-mini' may not move (residency: local), "
                                      "and no site holding it (west) can take this task")
        # A name no site could ever declare is a malformed spec.
        r = user.post("/api/v1/tasks", json=_task("any", dataset="no such data"))
        assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "inputs[0].dataset")

        quote = user.post("/api/v1/quote", json=_task("any", dataset="ghost")).json()
        assert (quote["candidates"], quote["reason"]) == (
            [], "dataset 'ghost' is not held by any site")
        explained = user.get(f"/api/v1/tasks/{ghost['id']}/explain").json()
        assert explained["reason"] == "dataset 'ghost' is not held by any site"
        assert user.get(f"/api/v1/tasks/{ghost['id']}").json()["state"] == "pending"

        agents.append(_site(service, provider, HOLDER, [{"id": "ghost", "size_gb": 1}]))
        wait_until(lambda: user.get(f"/api/v1/tasks/{ghost['id']}").json()["state"]
                   == "succeeded", timeout=60)
        done = user.get(f"/api/v1/tasks/{ghost['id']}").json()
    finally:
        for agent in agents:
            agent.stop()
    assert (done["site"], done["reason"]) == ("east", None)
