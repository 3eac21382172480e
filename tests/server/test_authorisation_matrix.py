"""The authorisation matrix: what each role may do, route by route, inside its own tenant.

Together with `test_isolation.py` (another tenant's keys reach nothing of this tenant's, on every
route) and its no-key walk (every route answers 401 without a key), this completes the matrix of
role × tenant × endpoint.

`MATRIX` names, for every route of the live ``/openapi.json`` and each role — ``user`` (tenant
T), ``provider`` (tenant T, owner of site ``site-t``), ``agent`` (site-t's key) and ``operator``
(the service's admin key) — the status the route must answer when that role calls it with a
well-formed request about tenant T's own things. A route the document has and `MATRIX` lacks fails
the walk, so a new endpoint cannot ship without its row. The expected statuses are the policy,
written down: users submit and read their tenant's tasks; providers register and read their
sites and earnings; agents speak only the agent protocol; operators may do everything but the
agent protocol. A role refused answers 403 with a problem body saying which key it needs (or 404
where the thing is not the caller's to know of), never 2xx, never 500.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from computility.testing.controlplane import LocalControlPlane, new_tenant, wait_until

CPU = "EPYC-7763"
SPEC = {"run": "python work.py", "resources": {"cpus": 1}, "envs": {"FAKE_RUN_S": "1"}}
ROLES = ("user", "provider", "agent", "operator")


@dataclass
class World:
    service: LocalControlPlane
    keys: dict[str, str]
    task: int = 0
    attempt: dict[str, Any] = field(default_factory=dict)

    def call(self, role: str, method: str, path: str, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=self.service.url, timeout=30,
                          headers={"Authorization": f"Bearer {self.keys[role]}"}) as c:
            return c.request(method, path, **kw)

    def submit(self) -> int:
        r = self.call("user", "POST", "/api/v1/tasks", json=SPEC)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def fresh_lease(self) -> dict[str, Any]:
        """A new task of T's, leased by site-t's agent (so agent routes have a live attempt)."""
        # The walk outlasts the offline threshold (30 s): a heartbeat keeps site-t online.
        beat = self.call("agent", "POST", "/api/v1/agent/heartbeat",
                         json={"free": {"cpu": 4000}, "running": []})
        assert beat.status_code == 200, beat.text
        task = self.submit()
        try:
            wait_until(lambda: self.call("user", "GET", f"/api/v1/tasks/{task}")
                       .json()["state"] == "queued", timeout=10)
        except AssertionError:
            raise AssertionError(self.call("user", "GET", f"/api/v1/tasks/{task}").text) from None
        r = self.call("agent", "POST", "/api/v1/agent/lease",
                      json={"free": {"cpu": 4096}, "wait_s": 0, "max_tasks": 64})
        mine = [x for x in r.json()["leases"] if x["task"] == task]  # earlier ones come too
        assert mine, r.text
        return dict(mine[0])

    def fresh_key(self, role: str) -> str:
        """A new key's id for the user the calling `role` acts as (its own key to manage)."""
        tenant = "default" if role == "operator" else "T"
        user = {"user": "user-1", "provider": "provider-1", "agent": "user-1",
                "operator": "matrix-operator"}[role]
        kind = "operator" if role == "operator" else ("provider" if role == "provider"
                                                      else "user")
        r = self.call("operator", "POST", f"/api/v1/tenants/{tenant}/keys",
                      json={"user": user, "role": kind})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


@pytest.fixture
def world(service: LocalControlPlane) -> Iterator[World]:
    with service.client() as admin:
        keys = {"user": new_tenant(admin, "T", "user"),
                "provider": new_tenant(admin, "T", "provider"),
                "operator": service.admin_key}
    body = {"id": "site-t", "region": "ZJK", "backend": "fake", "tenants": ["T"],
            "electricity_price_per_kwh": 0.5, "carbon_kg_per_kwh": 0.5,
            "pools": [{"id": "cpu", "device": CPU, "count": 4096, "price_per_cu_hour": 0.5}]}
    r = httpx.post(f"{service.url}/api/v1/sites", json=body, timeout=30,
                   headers={"Authorization": f"Bearer {keys['provider']}"})
    assert r.status_code == 201, r.text
    keys["agent"] = r.json()["agent_key"]
    w = World(service, keys)
    w.task = w.submit()
    w.attempt = w.fresh_lease()
    yield w


# -- the requests: one well-formed call per route, built for the calling role ---------------------

Request = Callable[[World, str], httpx.Response]


def get(path: str) -> Request:
    return lambda w, role: w.call(role, "GET", path.format(task=w.task, attempt=w.attempt))


def site_body(role: str) -> dict[str, Any]:
    """A site private to tenant ``default``, so none of T's tasks is ever placed on it."""
    return {"id": f"site-{role}-{time.monotonic_ns()}", "region": "ZJK", "backend": "fake",
            "tenants": ["default"],
            "pools": [{"id": "cpu", "device": CPU, "count": 8, "price_per_cu_hour": 0.5}]}


def report(w: World, role: str) -> httpx.Response:
    lease = w.fresh_lease()
    return w.call(role, "POST", f"/api/v1/agent/attempts/{lease['attempt']}/report",
                  json={"token": lease["token"], "state": "running"})


def put_file(w: World, role: str) -> httpx.Response:
    lease = w.fresh_lease()
    return w.call(role, "PUT", f"/api/v1/agent/attempts/{lease['attempt']}/files/stdout",
                  content=b"out\n", headers={"X-Attempt-Token": str(lease["token"])})


def outputs(w: World, role: str) -> httpx.Response:
    """A task's outputs, after site-t's agent uploaded them and reported its exit."""
    lease = w.fresh_lease()
    path = f"/api/v1/agent/attempts/{lease['attempt']}"
    put = w.call("agent", "PUT", f"{path}/files/outputs", content=b"T's outputs",
                 headers={"X-Attempt-Token": str(lease["token"])})
    assert put.status_code == 204, put.text
    done = w.call("agent", "POST", f"{path}/report", json={
        "token": lease["token"], "state": "exited", "exit_code": 0, "run_s": 1})
    assert done.status_code == 200, done.text
    return w.call(role, "GET", f"/api/v1/tasks/{lease['task']}/outputs")


def workdir(w: World, role: str) -> httpx.Response:
    return w.call(role, "GET", f"/api/v1/agent/attempts/{w.attempt['attempt']}/workdir")


REQUESTS: dict[tuple[str, str], Request] = {
    ("GET", "/api/v1/tasks"): get("/api/v1/tasks"),
    ("POST", "/api/v1/tasks"): lambda w, role: w.call(role, "POST", "/api/v1/tasks", json=SPEC),
    ("POST", "/api/v1/tasks/batch"): lambda w, role: w.call(
        role, "POST", "/api/v1/tasks/batch", json={"tasks": [SPEC]}),
    ("GET", "/api/v1/tasks/{task_id}"): get("/api/v1/tasks/{task}"),
    ("POST", "/api/v1/tasks/{task_id}/cancel"): lambda w, role: w.call(
        role, "POST", f"/api/v1/tasks/{w.submit()}/cancel"),
    ("GET", "/api/v1/tasks/{task_id}/attempts"): get("/api/v1/tasks/{task}/attempts"),
    ("GET", "/api/v1/tasks/{task_id}/explain"): get("/api/v1/tasks/{task}/explain"),
    ("POST", "/api/v1/quote"): lambda w, role: w.call(role, "POST", "/api/v1/quote", json=SPEC),
    ("GET", "/api/v1/tasks/{task_id}/logs"): get("/api/v1/tasks/{task}/logs"),
    ("GET", "/api/v1/tasks/{task_id}/outputs"): outputs,
    ("GET", "/api/v1/sites"): get("/api/v1/sites"),
    ("POST", "/api/v1/sites"): lambda w, role: w.call(
        role, "POST", "/api/v1/sites", json=site_body(role)),
    ("GET", "/api/v1/sites/{site_id}"): get("/api/v1/sites/site-t"),
    ("GET", "/api/v1/earnings"): get("/api/v1/earnings"),
    ("POST", "/api/v1/agent/heartbeat"): lambda w, role: w.call(
        role, "POST", "/api/v1/agent/heartbeat", json={"free": {"cpu": 4000}, "running": []}),
    ("POST", "/api/v1/agent/lease"): lambda w, role: w.call(
        role, "POST", "/api/v1/agent/lease", json={"free": {"cpu": 0}, "wait_s": 0}),
    ("POST", "/api/v1/agent/attempts/{attempt_id}/report"): report,
    ("PUT", "/api/v1/agent/attempts/{attempt_id}/files/{kind}"): put_file,
    ("GET", "/api/v1/agent/attempts/{attempt_id}/workdir"): workdir,
    ("GET", "/api/v1/whoami"): get("/api/v1/whoami"),
    ("POST", "/api/v1/tenants"): lambda w, role: w.call(
        role, "POST", "/api/v1/tenants", json={"id": f"new-{role}"}),
    ("GET", "/api/v1/tenants/{tenant_id}"): get("/api/v1/tenants/T"),
    ("PUT", "/api/v1/tenants/{tenant_id}"): lambda w, role: w.call(
        role, "PUT", "/api/v1/tenants/T", json={"id": "T", "concurrent_cu_quota": 100}),
    ("POST", "/api/v1/tenants/{tenant_id}/keys"): lambda w, role: w.call(
        role, "POST", "/api/v1/tenants/T/keys", json={"user": f"new-{role}", "role": "user"}),
    ("GET", "/api/v1/usage"): get("/api/v1/usage"),
    ("POST", "/api/v1/uploads"): lambda w, role: w.call(
        role, "POST", "/api/v1/uploads", content=b"a workdir"),
    ("GET", "/api/v1/keys"): get("/api/v1/keys"),
    ("DELETE", "/api/v1/keys/{key_id}"): lambda w, role: w.call(
        role, "DELETE", f"/api/v1/keys/{w.fresh_key(role)}"),
    ("POST", "/api/v1/keys/{key_id}/rotate"): lambda w, role: w.call(
        role, "POST", f"/api/v1/keys/{w.fresh_key(role)}/rotate", json={}),
    ("GET", "/api/v1/audit"): get("/api/v1/audit"),
}


# -- the policy -----------------------------------------------------------------------------------

ALL = dict.fromkeys(ROLES, 200)


SUBMITTERS = {"user": 201, "provider": 403, "agent": 403, "operator": 201}
READERS = {"user": 200, "provider": 200, "agent": 403, "operator": 200}
"""Every human role reads its own tenant's things; an agent key reads none of them."""
PROVIDERS = {"user": 403, "provider": 200, "agent": 403, "operator": 200}
AGENT_ONLY = {"user": 403, "provider": 403, "agent": 200, "operator": 403}
OPERATOR_ONLY = {"user": 403, "provider": 403, "agent": 403, "operator": 201}

MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/api/v1/tasks"): READERS,
    ("POST", "/api/v1/tasks"): SUBMITTERS,
    ("POST", "/api/v1/tasks/batch"): SUBMITTERS,
    ("GET", "/api/v1/tasks/{task_id}"): READERS,
    ("POST", "/api/v1/tasks/{task_id}/cancel"): {**SUBMITTERS, "user": 200, "operator": 200},
    ("GET", "/api/v1/tasks/{task_id}/attempts"): READERS,
    ("GET", "/api/v1/tasks/{task_id}/explain"): READERS,
    ("POST", "/api/v1/quote"): READERS,
    ("GET", "/api/v1/tasks/{task_id}/logs"): READERS,
    ("GET", "/api/v1/tasks/{task_id}/outputs"): READERS,
    ("GET", "/api/v1/sites"): READERS,
    ("POST", "/api/v1/sites"): {**PROVIDERS, "provider": 201, "operator": 201},
    ("GET", "/api/v1/sites/{site_id}"): READERS,
    ("GET", "/api/v1/earnings"): PROVIDERS,
    ("POST", "/api/v1/agent/heartbeat"): AGENT_ONLY,
    ("POST", "/api/v1/agent/lease"): AGENT_ONLY,
    ("POST", "/api/v1/agent/attempts/{attempt_id}/report"): AGENT_ONLY,
    ("PUT", "/api/v1/agent/attempts/{attempt_id}/files/{kind}"): {**AGENT_ONLY, "agent": 204},
    # The fixture's task has no workdir: the agent's answer is "none", the others' a refusal.
    ("GET", "/api/v1/agent/attempts/{attempt_id}/workdir"): {**AGENT_ONLY, "agent": 404},
    ("GET", "/api/v1/whoami"): ALL,
    ("POST", "/api/v1/tenants"): OPERATOR_ONLY,
    ("GET", "/api/v1/tenants/{tenant_id}"): READERS,
    ("PUT", "/api/v1/tenants/{tenant_id}"): {**OPERATOR_ONLY, "operator": 200},
    ("POST", "/api/v1/tenants/{tenant_id}/keys"): OPERATOR_ONLY,
    ("GET", "/api/v1/usage"): READERS,
    ("POST", "/api/v1/uploads"): SUBMITTERS,
    ("GET", "/api/v1/keys"): READERS,
    # Each role revokes and rotates a key of its own user (`World.fresh_key`).
    ("DELETE", "/api/v1/keys/{key_id}"): READERS,
    ("POST", "/api/v1/keys/{key_id}/rotate"): {**READERS, "user": 201, "provider": 201,
                                               "operator": 201},
    ("GET", "/api/v1/audit"): {**PROVIDERS, "user": 403},
}


def openapi_routes(service: LocalControlPlane) -> set[tuple[str, str]]:
    r = httpx.get(f"{service.url}/openapi.json", timeout=30)
    methods = {"get", "post", "put", "delete", "patch"}
    return {(m.upper(), path) for path, ops in r.json()["paths"].items() for m in ops
            if m in methods}


def test_every_route_answers_each_role_as_the_policy_says(world: World) -> None:
    """Each (route, role) answers exactly MATRIX's status; a refusal is a problem body."""
    routes = openapi_routes(world.service)
    assert routes == set(MATRIX) == set(REQUESTS), (
        f"routes without a row: {sorted(routes - set(MATRIX))}; "
        f"rows for routes that are gone: {sorted(set(MATRIX) - routes)}")
    wrong = []
    for route in sorted(MATRIX, key=lambda r: (r[1], r[0])):
        for role in ROLES:
            r = REQUESTS[route](world, role)
            expected = MATRIX[route][role]
            if r.status_code != expected:
                wrong.append(f"{route[0]} {route[1]} as {role}: {r.status_code} "
                             f"(expected {expected}) {r.text[:160]}")
            elif r.status_code in (403, 404):
                problem = r.json()
                if not (r.headers["content-type"].startswith("application/problem+json")
                        and problem.get("status") == r.status_code and problem.get("detail")):
                    wrong.append(f"{route[0]} {route[1]} as {role}: refusal without a "
                                 f"problem body: {r.text[:160]}")
    assert not wrong, "\n".join(wrong)


def test_a_refused_role_changed_nothing(world: World) -> None:
    """The refusals above write nothing: a refused submission, site, tenant or key leaves no
    row behind (checked through the operator's view)."""
    for role in ("provider", "agent"):
        assert REQUESTS[("POST", "/api/v1/tasks")](world, role).status_code == 403
    for role in ("user", "agent"):
        assert REQUESTS[("POST", "/api/v1/sites")](world, role).status_code == 403
    for role in ("user", "provider", "agent"):
        assert REQUESTS[("POST", "/api/v1/tenants")](world, role).status_code == 403
    tasks = world.call("operator", "GET", "/api/v1/tasks").json()["tasks"]
    assert {t["id"] for t in tasks} == {world.task, world.attempt["task"]}
    sites = {s["id"] for s in world.call("operator", "GET", "/api/v1/sites").json()}
    assert not any(s.startswith(("site-user", "site-agent")) for s in sites)
    for role in ("user", "provider", "agent"):
        r = world.call("operator", "GET", f"/api/v1/tenants/new-{role}")
        assert r.status_code == 404
