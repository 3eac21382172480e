"""The audit log: each audited action leaves exactly one event naming its actor and target,
written in the action's own transaction (a failed action leaves none); operators read it all,
providers their tenant's, users nothing; no secret ever reaches it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from keys_harness import acme, key_id, make_key, register_site, sign_in, stored_events
from sqlalchemy import select

from computility.server.auth import Identity
from computility.server.db import schema as db
from computility.server.store import audit
from computility.server.validation import runs
from computility.testing.controlplane import LocalControlPlane

SPEC = {"run": "true", "resources": {"cpus": 1}}


def admin_id(service: LocalControlPlane) -> str:
    return key_id(service.admin_key)


def only(events: list[dict[str, Any]], action: str) -> dict[str, Any]:
    found = [e for e in events if e["action"] == action]
    assert len(found) == 1, (action, events)
    return found[0]


def test_tenant_and_key_actions_each_leave_one_event_naming_actor_and_target(
    service: LocalControlPlane,
) -> None:
    with service.client() as admin:
        assert admin.post("/api/v1/tenants", json={"id": "acme", "budget": 10}).status_code == 201
        assert admin.put("/api/v1/tenants/acme", json={"id": "acme", "budget": 20,
                                                       "concurrent_cu_quota": 8}
                         ).status_code == 200
        made = admin.post("/api/v1/tenants/acme/keys", json={"user": "alice"}).json()
        rotated = admin.post(f"/api/v1/keys/{made['id']}/rotate", json={"grace_s": 60}).json()
        assert admin.delete(f"/api/v1/keys/{rotated['id']}").status_code == 200
        assert admin.delete(f"/api/v1/keys/{rotated['id']}").status_code == 200  # no-op
    events = stored_events(service)
    assert [e["action"] for e in events] == ["tenant.create", "tenant.update", "key.create",
                                             "key.rotate", "key.revoke"]
    for e in events:
        assert (e["key_id"], e["actor_tenant"], e["role"], e["tenant"]) == (
            admin_id(service), "default", "operator", "acme")
    create, update, key, rotate, revoke = events
    assert create["target"] == update["target"] == "tenant:acme"
    assert create["detail"] == {"concurrent_cu_quota": None, "budget": 10.0}
    assert update["detail"] == {"concurrent_cu_quota": 8.0, "budget": 20.0}
    assert key["target"] == f"key:{made['id']}"
    assert key["detail"] == {"tenant": "acme", "user": "alice", "role": "user"}
    assert rotate["target"] == f"key:{made['id']}"
    assert rotate["detail"]["new_key_id"] == rotated["id"] and rotate["detail"]["grace_s"] == 60
    assert revoke["target"] == f"key:{rotated['id']}"
    assert events[0]["at"] <= events[-1]["at"] <= time.time()


def test_site_registrations_leave_one_event_each_with_the_pools(
    service: LocalControlPlane,
) -> None:
    tenant = acme(service)
    register_site(service, tenant.provider, "acme-site", count=8)  # a pool changes
    register_site(service, tenant.provider, "acme-site", count=8)  # nothing changes
    events = stored_events(service, target="site:acme-site")
    assert [e["action"] for e in events] == ["site.register", "site.update", "site.update"]
    first, grown, same = events
    for e in events:
        assert (e["key_id"], e["role"], e["tenant"]) == (key_id(tenant.provider), "provider",
                                                         "acme")
    assert first["detail"]["pools"]["cpu"]["count"] == 4 and "pools_changed" not in first["detail"]
    assert grown["detail"]["pools"]["cpu"]["count"] == 8 and grown["detail"]["pools_changed"]
    assert same["detail"]["pools_changed"] is False
    assert grown["detail"]["agent_keys_revoked"] == 1
    assert first["detail"]["agent_key_id"] == key_id(tenant.agent)


def test_a_user_revoking_its_own_key_is_recorded_under_its_own_key(
    service: LocalControlPlane,
) -> None:
    tenant = acme(service)
    with service.client(tenant.alice) as c:
        assert c.delete(f"/api/v1/keys/{key_id(tenant.alice2)}").status_code == 200
    event = only(stored_events(service), "key.revoke")
    assert (event["key_id"], event["role"], event["tenant"], event["target"]) == (
        key_id(tenant.alice), "user", "acme", f"key:{key_id(tenant.alice2)}")


def test_an_operator_cancelling_another_tenants_task_is_recorded_and_a_users_own_cancel_not(
    service: LocalControlPlane,
) -> None:
    tenant = acme(service)
    with service.client(tenant.alice) as c:
        own = c.post("/api/v1/tasks", json=SPEC).json()["id"]
        theirs = c.post("/api/v1/tasks", json=SPEC).json()["id"]
        assert c.post(f"/api/v1/tasks/{own}/cancel").status_code == 200
    with service.client() as admin:
        assert admin.post(f"/api/v1/tasks/{theirs}/cancel").status_code == 200
        assert admin.post(f"/api/v1/tasks/{theirs}/cancel").status_code == 200  # ended: no-op
    events = [e for e in stored_events(service) if e["action"] == "task.cancel"]
    assert len(events) == 1
    assert (events[0]["key_id"], events[0]["tenant"], events[0]["target"]) == (
        admin_id(service), "acme", f"task:{theirs}")


def test_validation_runs_started_and_cancelled_are_recorded(service: LocalControlPlane) -> None:
    who = Identity(key_id=admin_id(service), tenant="default", role="operator")
    new = runs.NewRun(tenant="default", key_id=who.key_id, trace="sample", network="default",
                      policies=("balanced",), options={})
    run_id = runs.create_run(service.plane, new, who)
    assert runs.cancel(service.plane, run_id, who)
    assert not runs.cancel(service.plane, run_id, who)  # already ended: nothing recorded
    events = stored_events(service, target=f"validation_run:{run_id}")
    assert [e["action"] for e in events] == ["validation.start", "validation.cancel"]
    assert events[0]["detail"] == {"trace": "sample", "network": "default",
                                   "policies": ["balanced"]}


def test_a_dashboard_sign_in_is_recorded_and_a_refused_one_is_not(
    service: LocalControlPlane,
) -> None:
    assert sign_in(service.url, service.admin_key).status_code == 303
    assert sign_in(service.url, service.admin_key[:-4] + "abcd").status_code == 401
    event = only(stored_events(service), "session.open")
    assert (event["key_id"], event["target"]) == (admin_id(service),
                                                  f"key:{admin_id(service)}")


def test_failed_actions_leave_no_event(service: LocalControlPlane) -> None:
    tenant = acme(service)
    before = stored_events(service)
    with service.client() as admin:
        assert admin.post("/api/v1/tenants", json={"id": "acme"}).status_code == 409
        assert admin.put("/api/v1/tenants/nowhere", json={"id": "nowhere"}).status_code == 404
        assert admin.post("/api/v1/tenants/nowhere/keys", json={"user": "x"}).status_code == 404
        assert admin.delete(f"/api/v1/keys/{key_id(tenant.bob)}").status_code == 200
        assert admin.post(f"/api/v1/keys/{key_id(tenant.bob)}/rotate").status_code == 409
    other = make_key(service, "default", "rival", "provider")
    with service.client(other) as c:
        taken = c.post("/api/v1/sites", json={
            "id": "acme-site", "region": "ZJK", "backend": "fake",
            "pools": [{"id": "cpu", "device": "EPYC-7763", "count": 1, "price_per_cu_hour": 1}]})
        assert taken.status_code == 409
    after = stored_events(service)[len(before):]
    assert [e["action"] for e in after] == ["key.revoke", "key.create"]  # bob's, rival's


def test_an_event_commits_and_rolls_back_with_its_action(service: LocalControlPlane) -> None:
    who = Identity(key_id=admin_id(service), tenant="default", role="operator")
    with pytest.raises(RuntimeError), service.plane.write() as conn:
        conn.execute(db.tenants.insert().values(id="ghost", created_at=1.0,
                                                budget_period="month"))
        audit.record(conn, who, "tenant.create", "tenant:ghost")
        raise RuntimeError("the action fails after its event was written")
    with service.plane.engine.connect() as conn:
        assert conn.execute(select(db.tenants.c.id).where(db.tenants.c.id == "ghost")).first() \
            is None
    assert stored_events(service) == []


def test_no_secret_ever_appears_in_an_event(service: LocalControlPlane) -> None:
    tenant = acme(service)
    secrets = [tenant.alice, tenant.alice2, tenant.bob, tenant.provider, tenant.agent,
               service.admin_key]
    with service.client() as admin:
        rotated = admin.post(f"/api/v1/keys/{key_id(tenant.alice)}/rotate").json()
        secrets.append(rotated["key"])
        listing = admin.get("/api/v1/audit", params={"limit": 1000}).text
    secrets.append(register_site(service, tenant.provider, "acme-site"))
    assert sign_in(service.url, tenant.provider).status_code == 303
    who = Identity(key_id=admin_id(service), tenant="default", role="operator")
    with service.plane.write() as conn:  # a careless caller's detail is redacted
        audit.record(conn, who, "key.create", "key:x", {"note": f"made {tenant.bob}",
                                                        "secret": "hunter2"})
    with service.plane.engine.connect() as conn:
        hashes = conn.execute(select(db.api_keys.c.secret_sha256)).scalars().all()
    stored = json.dumps(stored_events(service))
    careless = stored_events(service, target="key:x")[0]["detail"]
    assert careless == {"note": f"made {audit.REDACTED}", "secret": audit.REDACTED}
    for text in (stored, listing):
        for secret in secrets:
            assert secret.split("_", 2)[2] not in text
        assert not any(h in text for h in hashes)


def test_operators_read_every_event_filtered_and_page_by_page(
    service: LocalControlPlane,
) -> None:
    tenant = acme(service)
    with service.client() as admin:
        admin.post("/api/v1/tenants", json={"id": "other"})
        everything = admin.get("/api/v1/audit", params={"limit": 1000}).json()
        ids = [e["id"] for e in everything["events"]]
        assert ids == sorted(ids, reverse=True) and everything["next_cursor"] is None
        assert {e["tenant"] for e in everything["events"]} == {"acme", "other"}
        acme_only = admin.get("/api/v1/audit", params={"tenant": "acme"}).json()["events"]
        assert acme_only and {e["tenant"] for e in acme_only} == {"acme"}
        keys = admin.get("/api/v1/audit", params={"action": "key"}).json()["events"]
        assert keys and {e["action"] for e in keys} == {"key.create"}
        exact = admin.get("/api/v1/audit", params={"action": "site.register"}).json()["events"]
        assert [e["target"] for e in exact] == ["site:acme-site"]
        since = everything["events"][1]["at"]
        recent = admin.get("/api/v1/audit", params={"since": since}).json()["events"]
        assert {e["id"] for e in recent} == {e["id"] for e in everything["events"]
                                             if e["at"] >= since}
        pages: list[int] = []
        cursor: int | None = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"before": cursor} if cursor else {})
            page = admin.get("/api/v1/audit", params=params).json()
            pages += [e["id"] for e in page["events"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == ids
    assert tenant.provider  # the world the events are about


def test_a_provider_reads_its_own_tenants_events_and_users_and_agents_none(
    service: LocalControlPlane,
) -> None:
    tenant = acme(service)
    with service.client() as admin:
        admin.post("/api/v1/tenants", json={"id": "other"})
    with service.client(tenant.provider) as c:
        r = c.get("/api/v1/audit")
        assert r.status_code == 200, r.text
        seen = r.json()["events"]
        assert seen and {e["tenant"] for e in seen} == {"acme"}
        assert {"key.create", "site.register"} <= {e["action"] for e in seen}
        assert c.get("/api/v1/audit", params={"tenant": "other"}).status_code == 403
    for key in (tenant.alice, tenant.agent):
        with service.client(key) as c:
            assert c.get("/api/v1/audit").status_code == 403


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "query.limit"),
    ({"before": "0"}, "query.before"),
    ({"since": "yesterday"}, "query.since"),
    ({"action": "DROP TABLE"}, "query.action"),
    ({"tenant": "a b"}, "query.tenant"),
])
def test_bad_audit_query_is_a_422_naming_the_parameter(
    service: LocalControlPlane, params: dict[str, str], field: str,
) -> None:
    with service.client() as admin:
        r = admin.get("/api/v1/audit", params=params)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
