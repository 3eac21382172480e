"""Tenant isolation, route by route: no key of tenant B can read or change anything of tenant A.

The walk takes every route of the live ``/openapi.json``. `RULES` says, for each one, how it is
checked; a route the document has and `RULES` lacks fails the walk, so a new endpoint cannot
ship without an isolation rule.

- Routes that name a resource (``{task_id}``, ``{site_id}``, ``{attempt_id}``, ``{tenant_id}``)
  are called with A's resources and B's user, provider and agent keys in turn: each answer must
  be 403 or 404 (never 2xx, never 500). The same reads with A's own keys answer 200, which shows
  the ids substituted are real.
- Tenant-scoped routes (listings, submissions, quotes, uploads, the agent's heartbeat and lease
  for B's own site) must answer B with nothing of A's, and what B creates belongs to B.

Afterwards everything of A's — tasks, attempts, logs, outputs, site, pools, ledger, keys,
tenant, usage and earnings — reads exactly as before, through A's keys and in the database.

Both sites are private to their own tenant (``tenants: [own]``), so that no placement can
legitimately put one tenant's work on the other's site; both name their pool ``cpu``, so that a
pool name alone never selects a row.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from computility.server.db import schema as db
from computility.testing.controlplane import LocalControlPlane, new_tenant, wait_until

CPU = "EPYC-7763"
A_STDOUT = b"A's secret stdout\n"
A_OUTPUTS = b"A's secret outputs (a tar.gz, as far as the server knows)"
A_WORKDIR = b"A's secret workdir"
SHARED_IDEMPOTENCY_KEY = "nightly-run"
SPEC = {"run": "python work.py", "resources": {"cpus": 1}, "envs": {"FAKE_RUN_S": "1"}}
DENIED = frozenset({403, 404})


# -- the world: tenant A with work, tenant B next to it ------------------------------------------


@dataclass
class World:
    service: LocalControlPlane
    keys: dict[str, str]  # "a_user", "a_provider", "a_agent", "b_user", "b_provider", "b_agent"
    tasks: dict[str, int]  # A's tasks: "done", "running", "queued"
    attempts: dict[str, dict[str, Any]]  # A's leases: "done", "running"
    upload: str = ""
    b_tasks: set[int] = field(default_factory=set)

    def client(self, who: str | None) -> httpx.Client:
        headers = {} if who is None else {"Authorization": f"Bearer {self.keys[who]}"}
        return httpx.Client(base_url=self.service.url, headers=headers, timeout=30,
                            verify=False)

    def call(self, who: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        with self.client(who) as c:
            return c.request(method, path, **kw)

    @property
    def a_task_ids(self) -> set[int]:
        return set(self.tasks.values())


def register(service: LocalControlPlane, provider: str, site: str, tenant: str) -> str:
    """A site private to `tenant` with one 64-core pool ``cpu``; returns its agent key."""
    body = {"id": site, "region": "ZJK", "backend": "fake", "tenants": [tenant],
            "electricity_price_per_kwh": 0.5, "carbon_kg_per_kwh": 0.5,
            "pools": [{"id": "cpu", "device": CPU, "count": 64, "price_per_cu_hour": 0.5}]}
    r = httpx.post(f"{service.url}/api/v1/sites", json=body, timeout=30,
                   headers={"Authorization": f"Bearer {provider}"})
    assert r.status_code == 201, r.text
    key: str = r.json()["agent_key"]
    return key


@pytest.fixture
def world(service: LocalControlPlane) -> Iterator[World]:
    with service.client() as admin:
        keys = {
            "a_user": new_tenant(admin, "A", "user"),
            "a_provider": new_tenant(admin, "A", "provider"),
            "b_user": new_tenant(admin, "B", "user"),
            "b_provider": new_tenant(admin, "B", "provider"),
        }
    keys["a_agent"] = register(service, keys["a_provider"], "site-a", "A")
    keys["b_agent"] = register(service, keys["b_provider"], "site-b", "B")
    w = World(service, keys, {}, {})
    with w.client("a_user") as a, w.client("a_agent") as agent:
        for name in ("done", "running", "queued"):
            headers = {"Idempotency-Key": SHARED_IDEMPOTENCY_KEY} if name == "done" else {}
            r = a.post("/api/v1/tasks", json={**SPEC, "name": f"a-{name}"}, headers=headers)
            assert r.status_code == 201, r.text
            w.tasks[name] = r.json()["id"]
        wait_until(lambda: all(a.get(f"/api/v1/tasks/{t}").json()["state"] == "queued"
                               for t in w.tasks.values()), timeout=5)
        leases = agent.post("/api/v1/agent/lease", json={
            "free": {"cpu": 64}, "wait_s": 0, "max_tasks": 2}).json()["leases"]
        by_task = {x["task"]: x for x in leases}
        assert set(by_task) == {w.tasks["done"], w.tasks["running"]}, leases
        for name in ("done", "running"):
            lease = by_task[w.tasks[name]]
            w.attempts[name] = lease
            path = f"/api/v1/agent/attempts/{lease['attempt']}"
            assert agent.post(f"{path}/report", json={
                "token": lease["token"], "state": "running"}).status_code == 200
        done = w.attempts["done"]
        path = f"/api/v1/agent/attempts/{done['attempt']}"
        token = {"X-Attempt-Token": str(done["token"])}
        assert agent.put(f"{path}/files/stdout", content=A_STDOUT,
                         headers=token).status_code == 204
        assert agent.put(f"{path}/files/outputs", content=A_OUTPUTS,
                         headers=token).status_code == 204
        r = agent.post(f"{path}/report", json={"token": done["token"], "state": "exited",
                                               "exit_code": 0, "run_s": 60})
        assert r.status_code == 200 and r.json()["billed"], r.text
        r = a.post("/api/v1/uploads", content=A_WORKDIR)
        assert r.status_code == 201, r.text
        w.upload = r.json()["digest"]
    yield w


# -- snapshots of everything A owns ---------------------------------------------------------------


def without(d: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in names}


def api_snapshot(w: World) -> dict[str, Any]:
    """What A's keys read about A's things (windows' moving ``until`` left out)."""
    out: dict[str, Any] = {}
    with w.client("a_user") as a:
        out["list"] = a.get("/api/v1/tasks").json()
        for name, tid in w.tasks.items():
            out[f"task {name}"] = a.get(f"/api/v1/tasks/{tid}").json()
            out[f"attempts {name}"] = a.get(f"/api/v1/tasks/{tid}/attempts").json()
            for stream in ("stdout", "stderr"):
                r = a.get(f"/api/v1/tasks/{tid}/logs", params={"stream": stream})
                out[f"{stream} {name}"] = (r.status_code, r.content)
            r = a.get(f"/api/v1/tasks/{tid}/outputs")
            out[f"outputs {name}"] = (r.status_code, r.content)
        out["usage"] = without(a.get("/api/v1/usage").json(), "until")
        out["tenant"] = a.get("/api/v1/tenants/A").json()
    with w.client("a_provider") as p:
        out["site"] = p.get("/api/v1/sites/site-a").json()
        out["earnings"] = [without(s, "until")
                           for s in p.get("/api/v1/earnings").json()["sites"]]
    return out


def db_snapshot(w: World) -> dict[str, Any]:
    """Every row of A's, straight from the database."""
    ids = sorted(w.a_task_ids)
    t = db
    with w.service.plane.engine.connect() as conn:
        def rows(query: Any) -> list[dict[str, Any]]:
            return [dict(r) for r in conn.execute(query).mappings()]

        return {
            "tenant": rows(select(t.tenants).where(t.tenants.c.id == "A")),
            "users": rows(select(t.users).where(t.users.c.tenant_id == "A")
                          .order_by(t.users.c.id)),
            "keys": rows(select(t.api_keys).where(t.api_keys.c.tenant_id == "A")
                         .order_by(t.api_keys.c.id)),
            "tasks": rows(select(t.tasks).where(t.tasks.c.tenant_id == "A")
                          .order_by(t.tasks.c.id)),
            "attempts": rows(select(t.attempts).where(t.attempts.c.task_id.in_(ids))
                             .order_by(t.attempts.c.id)),
            "site": rows(select(t.sites).where(t.sites.c.id == "site-a")),
            "pools": rows(select(t.pools).where(t.pools.c.site_id == "site-a")),
            "ledger": rows(select(t.ledger).where(t.ledger.c.tenant_id == "A")
                           .order_by(t.ledger.c.id)),
            "earned": rows(select(t.ledger).where(t.ledger.c.owner_tenant_id == "A")
                           .order_by(t.ledger.c.id)),
            "files": rows(select(t.task_files).where(t.task_files.c.task_id.in_(ids))
                          .order_by(t.task_files.c.task_id, t.task_files.c.kind)),
            "uploads": rows(select(t.uploads).where(t.uploads.c.tenant_id == "A")),
        }


# -- the rules ------------------------------------------------------------------------------------

B_KEYS = ("b_user", "b_provider", "b_agent")
Failures = list[str]


def text_of(r: httpx.Response) -> str:
    return r.text[:300].replace("\n", " ")


def mentions_a(w: World, r: httpx.Response) -> list[str]:
    """What of A's a response body shows: A's task ids (as ``"id"``/``"task"`` fields), A's
    site, A's tenant, A's secrets."""
    found = []
    body = r.text
    for tid in w.a_task_ids:
        if re.search(rf'"(id|task)"\s*:\s*{tid}\b', body):
            found.append(f"task {tid}")
    for secret in (r'"site-a"', r'"(tenant|owner)"\s*:\s*"A"', re.escape(A_STDOUT.decode()),
                   re.escape(A_OUTPUTS.decode())):
        if re.search(secret, body):
            found.append(secret)
    return found


def params_for(w: World | None, path: str) -> list[dict[str, Any]]:
    """Every substitution of the path's parameters with A's resources (`w` None: made-up
    ones)."""
    choices: dict[str, list[Any]] = {
        "task_id": sorted(w.a_task_ids) if w else [1],
        "site_id": ["site-a"],
        "tenant_id": ["A"],
        "attempt_id": [a["attempt"] for a in w.attempts.values()] if w else [1],
        "kind": ["stdout", "stderr", "outputs"],
        "key_id": [w.keys[k].split("_")[1] for k in ("a_user", "a_provider", "a_agent")]
        if w else ["0123456789abcdef"],
    }
    names = re.findall(r"{(\w+)}", path)
    unknown = [n for n in names if n not in choices]
    assert not unknown, f"{path}: no A resource to substitute for {unknown}; add one"
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(choices[n] for n in names))]


def token_of(w: World, attempt_id: int) -> int:
    return next(int(a["token"]) for a in w.attempts.values() if a["attempt"] == attempt_id)


@dataclass(frozen=True)
class Foreign:
    """A route naming A's resources: every B key gets one of `allowed` (403/404)."""

    body: Callable[[World, dict[str, Any]], dict[str, Any]] = lambda w, p: {}
    allowed: frozenset[int] = DENIED
    owner: str | None = None
    """A's key for the positive control (a GET that must answer 200 for A), if any."""

    def check(self, w: World, method: str, path: str) -> Failures:
        failures = []
        for p in params_for(w, path):
            url = path.format(**p)
            for who in B_KEYS:
                r = w.call(who, method, url, **self.body(w, p))
                if r.status_code not in self.allowed:
                    failures.append(f"{who} {method} {url}: {r.status_code} {text_of(r)}")
            if self.owner is not None:
                r = w.call(self.owner, method, url, **self.body(w, p))
                if r.status_code != 200:
                    failures.append(f"control: {self.owner} {method} {url}: {r.status_code} "
                                    f"(the substituted id is not A's?) {text_of(r)}")
        return failures


@dataclass(frozen=True)
class Scoped:
    """A route that answers about the caller's own tenant: `check` proves it shows nothing of
    A's and creates only B's."""

    check_fn: Callable[[World], Failures]

    def check(self, w: World, method: str, path: str) -> Failures:
        return [f"{method} {path}: {f}" for f in self.check_fn(w)]


def expect(w: World, who: str, method: str, path: str, statuses: set[int],
           **kw: Any) -> tuple[httpx.Response, Failures]:
    r = w.call(who, method, path, **kw)
    failures = []
    if r.status_code not in statuses:
        failures.append(f"{who}: {r.status_code}, expected {sorted(statuses)}: {text_of(r)}")
    elif r.status_code < 300 and (seen := mentions_a(w, r)):
        failures.append(f"{who}: shows A's {seen}: {text_of(r)}")
    return r, failures


def b_only_reads(path: str, statuses: dict[str, set[int]],
                 extra: Callable[[World, str, httpx.Response], Failures] | None = None,
                 **kw: Any) -> Scoped:
    """A read whose answer, for each B key, has a status in `statuses[key]` and nothing of A's."""

    def check(w: World) -> Failures:
        failures = []
        for who in B_KEYS:
            r, f = expect(w, who, "GET", path, statuses[who], **kw)
            failures += f
            if not f and r.status_code == 200 and extra is not None:
                failures += [f"{who}: {x}" for x in extra(w, who, r)]
        return failures

    return Scoped(check)


def check_task_list(w: World) -> Failures:
    failures = []
    for who in B_KEYS:
        for params in ({}, {"name": "a-done"}, {"state": "running"}, {"state": "queued"},
                       {"limit": 1000}):
            # An agent key reads no tasks at all (agent protocol only).
            statuses = {403} if who == "b_agent" else {200}
            r, f = expect(w, who, "GET", "/api/v1/tasks", statuses, params=params)
            failures += [f"{x} (params {params})" for x in f]
            if r.status_code == 200 and {t["tenant"] for t in r.json()["tasks"]} - {"B"}:
                failures.append(f"{who} {params}: lists other tenants' tasks")
    return failures


def submitted_tasks(w: World, who: str, r: httpx.Response, batch: bool) -> Failures:
    tasks = r.json()["tasks"] if batch else [r.json()]
    failures = []
    for t in tasks:
        w.b_tasks.add(t["id"])
        if t["tenant"] != "B" or t["id"] in w.a_task_ids:
            failures.append(f"{who}: the submission landed as {t['tenant']}/{t['id']}")
    return failures


def check_submit(batch: bool) -> Scoped:
    path = "/api/v1/tasks/batch" if batch else "/api/v1/tasks"

    def body(spec: dict[str, Any]) -> dict[str, Any]:
        return {"tasks": [spec]} if batch else spec

    def check(w: World) -> Failures:
        failures = []
        key = {"Idempotency-Key": SHARED_IDEMPOTENCY_KEY}
        for who in ("b_provider", "b_agent"):
            failures += expect(w, who, "POST", path, {403}, json=body(SPEC), headers=key)[1]
        # The same Idempotency-Key as A's submission: a new task of B's, not A's task back.
        r, f = expect(w, "b_user", "POST", path, {200, 201}, json=body(SPEC), headers=key)
        failures += f or submitted_tasks(w, "b_user", r, batch)
        # Asking for A's private site by name: refused, or B's task (never placed there).
        spec = {**SPEC, "placement": {"sites": ["site-a"]}}
        r, f = expect(w, "b_user", "POST", path, {201, 403, 404, 422}, json=body(spec))
        failures += f or (submitted_tasks(w, "b_user", r, batch) if r.status_code == 201
                          else [])
        return failures

    return Scoped(check)


def check_quote(w: World) -> Failures:
    failures = []
    for who in B_KEYS:
        for spec in (SPEC, {**SPEC, "placement": {"sites": ["site-a"]}}):
            r, f = expect(w, who, "POST", "/api/v1/quote", {200, 403}, json=spec)
            failures += f
            if r.status_code == 200 and {c["site"] for c in r.json()["candidates"]} - {
                    "site-b"}:
                failures.append(f"{who}: quotes other sites: {text_of(r)}")
    return failures


def check_register(w: World) -> Failures:
    body = {"id": "site-a", "region": "TF", "backend": "fake", "tenants": ["B"],
            "pools": [{"id": "cpu", "device": CPU, "count": 1, "price_per_cu_hour": 0}]}
    failures = []
    for who in B_KEYS:  # taking over A's site id: refused (409 reveals only that it is taken)
        failures += expect(w, who, "POST", "/api/v1/sites", {403, 404, 409}, json=body)[1]
    for who in ("b_user", "b_agent"):
        failures += expect(w, who, "POST", "/api/v1/sites", {403},
                           json={**body, "id": "site-b2"})[1]
    r, f = expect(w, "b_provider", "POST", "/api/v1/sites", {201},
                  json={**body, "id": "site-b2"})
    failures += f
    if r.status_code == 201 and r.json()["site"]["owner"] != "B":
        failures.append(f"b_provider: a new site registered as {r.json()['site']['owner']}'s")
    return failures


def site_ids(expected: dict[str, set[str]]) -> Callable[[World, str, httpx.Response], Failures]:
    def extra(w: World, who: str, r: httpx.Response) -> Failures:
        ids = {s["id"] for s in r.json()}
        return [] if ids <= expected[who] else [f"lists sites {sorted(ids)}"]

    return extra


def check_heartbeat(w: World) -> Failures:
    failures = []
    stolen = [{"attempt": a["attempt"], "token": a["token"]} for a in w.attempts.values()]
    body = {"free": {"cpu": 64}, "running": stolen}
    for who in ("b_user", "b_provider"):
        failures += expect(w, who, "POST", "/api/v1/agent/heartbeat", {403}, json=body)[1]
    r, f = expect(w, "b_agent", "POST", "/api/v1/agent/heartbeat", {200}, json=body)
    failures += f
    if r.status_code == 200:
        reply = r.json()
        if sorted(reply["unknown"]) != sorted(a["attempt"] for a in stolen) or reply["cancel"]:
            failures.append(f"b_agent: A's attempts not answered as unknown: {reply}")
    return failures


def check_lease(w: World) -> Failures:
    failures = []
    body = {"free": {"cpu": 64}, "wait_s": 1, "max_tasks": 1024}
    for who in ("b_user", "b_provider"):
        failures += expect(w, who, "POST", "/api/v1/agent/lease", {403}, json=body)[1]
    r, f = expect(w, "b_agent", "POST", "/api/v1/agent/lease", {200}, json=body)
    failures += f
    if r.status_code == 200:
        for lease in r.json()["leases"]:
            if lease["task"] not in w.b_tasks:
                failures.append(f"b_agent: leased task {lease['task']}, not one of B's")
    return failures


def check_whoami(w: World) -> Failures:
    failures = []
    for who in B_KEYS:
        r, f = expect(w, who, "GET", "/api/v1/whoami", {200})
        failures += f
        if r.status_code == 200 and r.json()["tenant"] != "B":
            failures.append(f"{who}: whoami says {r.json()}")
    return failures


def check_usage(w: World) -> Failures:
    failures = []
    for who in B_KEYS:
        r, f = expect(w, who, "GET", "/api/v1/usage", {200, 403})
        failures += f
        if r.status_code == 200 and (r.json()["tenant"] != "B" or r.json()["attempts"]):
            failures.append(f"{who}: usage {r.json()}")
        failures += expect(w, who, "GET", "/api/v1/usage", DENIED, params={"tenant": "A"})[1]
    return failures


def check_upload(w: World) -> Failures:
    failures = []
    for who in ("b_provider", "b_agent"):
        failures += expect(w, who, "POST", "/api/v1/uploads", {403}, content=b"B's bytes")[1]
    failures += expect(w, "b_user", "POST", "/api/v1/uploads", {201},
                       content=b"B's own workdir")[1]
    return failures


def check_earnings(w: World) -> Failures:
    failures = []
    for who in ("b_user", "b_agent"):
        failures += expect(w, who, "GET", "/api/v1/earnings", {403})[1]
    r, f = expect(w, "b_provider", "GET", "/api/v1/earnings", {200})
    failures += f
    if r.status_code == 200:
        earned = r.json()
        if earned["owner"] != "B" or {s["site"] for s in earned["sites"]} - {"site-b",
                                                                               "site-b2"}:
            failures.append(f"b_provider: earnings {earned}")
    return failures


def check_key_list(w: World) -> Failures:
    failures = expect(w, "b_agent", "GET", "/api/v1/keys", {403})[1]
    for who in ("b_user", "b_provider"):
        r, f = expect(w, who, "GET", "/api/v1/keys", {200}, params={"revoked": "true"})
        failures += f
        if r.status_code == 200 and {k["tenant"] for k in r.json()["keys"]} != {"B"}:
            failures.append(f"{who}: lists keys {r.json()}")
        failures += expect(w, who, "GET", "/api/v1/keys", {403}, params={"tenant": "A"})[1]
    return failures


def check_audit(w: World) -> Failures:
    failures = []
    for who in ("b_user", "b_agent"):
        failures += expect(w, who, "GET", "/api/v1/audit", {403})[1]
    r, f = expect(w, "b_provider", "GET", "/api/v1/audit", {200})
    failures += f
    if r.status_code == 200 and not r.json()["events"]:
        failures.append("b_provider: no events of its own (its site registrations)")
    failures += expect(w, "b_provider", "GET", "/api/v1/audit", {403}, params={"tenant": "A"})[1]
    return failures


def report_body(w: World, p: dict[str, Any]) -> dict[str, Any]:
    """A's real token: even a B key that somehow learnt it must not report A's attempt."""
    return {"json": {"token": token_of(w, p["attempt_id"]), "state": "exited",
                     "exit_code": 0, "run_s": 1}}


def file_body(w: World, p: dict[str, Any]) -> dict[str, Any]:
    return {"content": b"B was here", "headers": {
        "X-Attempt-Token": str(token_of(w, p["attempt_id"]))}}


RULES: dict[tuple[str, str], Foreign | Scoped] = {
    # tasks
    ("POST", "/api/v1/tasks"): check_submit(batch=False),
    ("POST", "/api/v1/tasks/batch"): check_submit(batch=True),
    ("GET", "/api/v1/tasks"): Scoped(check_task_list),
    ("GET", "/api/v1/tasks/{task_id}"): Foreign(owner="a_user"),
    ("POST", "/api/v1/tasks/{task_id}/cancel"): Foreign(),
    ("GET", "/api/v1/tasks/{task_id}/attempts"): Foreign(owner="a_user"),
    ("GET", "/api/v1/tasks/{task_id}/explain"): Foreign(owner="a_user"),
    ("GET", "/api/v1/tasks/{task_id}/logs"): Foreign(owner="a_user"),
    ("GET", "/api/v1/tasks/{task_id}/outputs"): Foreign(),
    ("POST", "/api/v1/quote"): Scoped(check_quote),
    # sites
    ("POST", "/api/v1/sites"): Scoped(check_register),
    ("GET", "/api/v1/sites"): b_only_reads("/api/v1/sites",
                                           {"b_user": {200}, "b_provider": {200},
                                            "b_agent": {403}},
                                           site_ids({"b_user": {"site-b", "site-b2"},
                                                     "b_provider": {"site-b", "site-b2"}})),
    ("GET", "/api/v1/sites/{site_id}"): Foreign(owner="a_provider"),
    ("GET", "/api/v1/earnings"): Scoped(check_earnings),
    # the agent protocol
    ("POST", "/api/v1/agent/heartbeat"): Scoped(check_heartbeat),
    ("POST", "/api/v1/agent/lease"): Scoped(check_lease),
    ("POST", "/api/v1/agent/attempts/{attempt_id}/report"): Foreign(body=report_body),
    ("PUT", "/api/v1/agent/attempts/{attempt_id}/files/{kind}"): Foreign(body=file_body),
    ("GET", "/api/v1/agent/attempts/{attempt_id}/workdir"): Foreign(),
    # tenants, keys, identity, usage, uploads
    ("GET", "/api/v1/whoami"): Scoped(check_whoami),
    ("POST", "/api/v1/tenants"): Foreign(
        body=lambda w, p: {"json": {"id": "A", "budget": 0}}, allowed=frozenset({403})),
    ("PUT", "/api/v1/tenants/{tenant_id}"): Foreign(
        body=lambda w, p: {"json": {"id": "A", "budget": 0, "concurrent_cu_quota": 0}}),
    ("GET", "/api/v1/tenants/{tenant_id}"): Foreign(owner="a_user"),
    ("POST", "/api/v1/tenants/{tenant_id}/keys"): Foreign(
        body=lambda w, p: {"json": {"user": "intruder", "role": "operator"}}),
    ("GET", "/api/v1/usage"): Scoped(check_usage),
    ("GET", "/api/v1/keys"): Scoped(check_key_list),
    ("DELETE", "/api/v1/keys/{key_id}"): Foreign(),
    ("POST", "/api/v1/keys/{key_id}/rotate"): Foreign(body=lambda w, p: {"json": {}}),
    ("GET", "/api/v1/audit"): Scoped(check_audit),
    ("POST", "/api/v1/uploads"): Scoped(check_upload),
}


def openapi_routes(service: LocalControlPlane) -> set[tuple[str, str]]:
    r = httpx.get(f"{service.url}/openapi.json", timeout=30)
    assert r.status_code == 200, r.text
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(m.upper(), path) for path, ops in r.json()["paths"].items() for m in ops
            if m in methods}


# -- the tests ------------------------------------------------------------------------------------


def test_no_route_lets_another_tenant_read_or_change_anything(world: World) -> None:
    """Every route of /openapi.json has an isolation rule, and with B's user, provider and agent
    keys none shows or changes anything of A's (see the module docstring)."""
    routes = openapi_routes(world.service)
    assert routes == set(RULES), (
        f"routes without an isolation rule: {sorted(routes - set(RULES))}; "
        f"rules for routes that are gone: {sorted(set(RULES) - routes)}")
    api_before, db_before = api_snapshot(world), db_snapshot(world)
    assert api_before["stdout done"] == (200, A_STDOUT)
    assert api_before["outputs done"] == (200, A_OUTPUTS)
    assert api_before["usage"]["attempts"] == 1

    failures: list[str] = []
    first = [("POST", "/api/v1/tasks"), ("POST", "/api/v1/tasks/batch")]  # then B has work
    for method, path in first + sorted(routes - set(first), key=lambda r: (r[1], r[0])):
        failures += RULES[(method, path)].check(world, method, path)

    api_after, db_after = api_snapshot(world), db_snapshot(world)
    time.sleep(0.3)  # let the server finish logging any 500 before pytest formats (CPython 3.11)
    assert not failures, "\n".join(failures)
    changed = [k for k in db_before if db_before[k] != db_after[k]]
    assert not changed, {k: (db_before[k], db_after[k]) for k in changed}
    changed = [k for k in api_before if api_before[k] != api_after[k]]
    assert not changed, {k: (api_before[k], api_after[k]) for k in changed}


def test_b_tasks_never_run_on_a_private_site_nor_receive_a_workdir(world: World) -> None:
    """B cannot name A's upload as its task's workdir; work B submits — even naming A's private
    site — is never leased by A's agent, and B's agent gets no workdir of A's for it."""
    stolen = world.call("b_user", "POST", "/api/v1/tasks", json={**SPEC, "workdir": world.upload})
    assert stolen.status_code in (403, 404, 422), stolen.text  # only one's own uploads
    b_ids = []
    for spec in (SPEC, {**SPEC, "placement": {"regions": ["ZJK"]}},
                 {**SPEC, "placement": {"sites": ["site-a"]}}):
        r = world.call("b_user", "POST", "/api/v1/tasks", json=spec)
        assert r.status_code in (201, 422), r.text
        if r.status_code == 201:
            b_ids.append(r.json()["id"])
    time.sleep(0.3)  # a few scheduling cycles
    with world.client("a_agent") as a_agent:
        leased = a_agent.post("/api/v1/agent/lease", json={
            "free": {"cpu": 64}, "wait_s": 0}).json()["leases"]
    assert {x["task"] for x in leased} <= world.a_task_ids
    with world.client("b_agent") as b_agent:
        mine = b_agent.post("/api/v1/agent/lease", json={
            "free": {"cpu": 64}, "wait_s": 1}).json()["leases"]
        for lease in mine:
            assert lease["task"] in b_ids
            r = b_agent.get(f"/api/v1/agent/attempts/{lease['attempt']}/workdir")
            assert A_WORKDIR not in r.content
    for tid in b_ids:
        task = world.call("b_user", "GET", f"/api/v1/tasks/{tid}").json()
        assert task["site"] in (None, "site-b"), task


def test_every_route_refuses_a_request_without_a_key(service: LocalControlPlane) -> None:
    """No route of /openapi.json answers anything but 401 to a caller with no key."""
    failures = []
    for method, path in sorted(openapi_routes(service)):
        for p in params_for(None, path)[:1]:
            r = httpx.request(method, service.url + path.format(**p), json={}, timeout=30,
                              headers={"X-Attempt-Token": "1"}, verify=False)
            if r.status_code != 401:
                failures.append(f"{method} {path}: {r.status_code} {text_of(r)}")
    time.sleep(0.3 if failures else 0)
    assert not failures, "\n".join(failures)
