"""API keys from their holders' side: listing (never a secret), revoking (at once, once),
rotating (at once or after a grace period), for users, providers' agents and operators."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from keys_harness import Tenant, acme, beats, key_id, make_key, register_site, works
from sqlalchemy import select

from computility.server.db import schema as db
from computility.testing.controlplane import LocalControlPlane


@pytest.fixture
def tenant(service: LocalControlPlane) -> Iterator[Tenant]:
    yield acme(service)


def listed(service: LocalControlPlane, key: str | None, **params: str) -> list[dict[str, object]]:
    with service.client(key) as c:
        r = c.get("/api/v1/keys", params=params)
    assert r.status_code == 200, r.text
    keys: list[dict[str, object]] = r.json()["keys"]
    return keys


def test_a_user_lists_its_own_keys_and_never_a_secret_or_its_hash(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    with service.client(tenant.alice) as c:
        r = c.get("/api/v1/keys")
    assert r.status_code == 200, r.text
    mine = {key_id(tenant.alice), key_id(tenant.alice2)}
    assert {k["id"] for k in r.json()["keys"]} == mine
    first = next(k for k in r.json()["keys"] if k["id"] == key_id(tenant.alice))
    assert first["tenant"] == "acme" and first["user"] == "user-1" and first["role"] == "user"
    assert first["site"] is None and first["revoked_at"] is None and first["created_at"] > 0
    with service.plane.engine.connect() as conn:
        hashes = conn.execute(select(db.api_keys.c.secret_sha256)).scalars().all()
    everything = listed(service, None, revoked="true")
    for body in (r.text, str(everything)):
        for key in (tenant.alice, tenant.alice2, tenant.bob, tenant.provider, tenant.agent,
                    service.admin_key):
            assert key.split("_", 2)[2] not in body
        assert not any(h in body for h in hashes)


def test_a_provider_lists_its_own_keys_and_its_sites_agent_keys(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    keys = listed(service, tenant.provider)
    assert {k["id"] for k in keys} == {key_id(tenant.provider), key_id(tenant.agent)}
    agent = next(k for k in keys if k["role"] == "agent")
    assert agent["site"] == "acme-site" and agent["user"] is None


def test_an_operator_lists_every_tenants_keys_or_one_tenants(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    acme_ids = {key_id(k) for k in (tenant.alice, tenant.alice2, tenant.bob, tenant.provider,
                                    tenant.agent)}
    assert {k["id"] for k in listed(service, None, tenant="acme")} == acme_ids
    every = {k["id"] for k in listed(service, None)}
    assert acme_ids | {key_id(service.admin_key)} <= every
    with service.client(tenant.alice) as c:
        assert c.get("/api/v1/keys", params={"tenant": "default"}).status_code == 403


def test_revoked_keys_are_listed_only_when_asked_for(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    with service.client(tenant.alice) as c:
        assert c.delete(f"/api/v1/keys/{key_id(tenant.alice2)}").status_code == 200
    assert {k["id"] for k in listed(service, tenant.alice)} == {key_id(tenant.alice)}
    shown = {k["id"]: k for k in listed(service, tenant.alice, revoked="true")}
    assert shown[key_id(tenant.alice2)]["revoked_at"] is not None


def test_a_revoked_key_stops_working_on_the_very_next_request(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    assert works(service, tenant.alice2) == 200  # now in this replica's key cache
    with service.client(tenant.alice) as c:
        r = c.delete(f"/api/v1/keys/{key_id(tenant.alice2)}")
        assert r.status_code == 200, r.text
        revoked_at = r.json()["revoked_at"]
        assert revoked_at is not None and revoked_at <= time.time()
        assert works(service, tenant.alice2) == 401
        again = c.delete(f"/api/v1/keys/{key_id(tenant.alice2)}")
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked_at
    assert works(service, tenant.alice) == 200


def test_a_key_may_revoke_itself(service: LocalControlPlane, tenant: Tenant) -> None:
    with service.client(tenant.bob) as c:
        assert c.delete(f"/api/v1/keys/{key_id(tenant.bob)}").status_code == 200
        assert c.get("/api/v1/whoami").status_code == 401


def test_someone_elses_key_answers_404_as_an_unknown_key_does(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    other_tenant = make_key(service, "default", "carol")
    cases = [(tenant.alice, tenant.bob), (tenant.alice, tenant.provider),
             (tenant.alice, tenant.agent), (tenant.provider, tenant.alice),
             (tenant.provider, other_tenant), (tenant.bob, service.admin_key)]
    for caller, target in cases:
        with service.client(caller) as c:
            for r in (c.delete(f"/api/v1/keys/{key_id(target)}"),
                      c.post(f"/api/v1/keys/{key_id(target)}/rotate", json={})):
                assert r.status_code == 404, (caller, target, r.text)
                assert r.json()["detail"] == f"no key '{key_id(target)}'"
            unknown = c.delete("/api/v1/keys/0123456789abcdef")
            assert unknown.status_code == 404
    for key in (tenant.bob, tenant.provider, tenant.agent, other_tenant, service.admin_key):
        assert works(service, key) == 200 if key != tenant.agent else beats(service, key) == 200


def test_an_agent_key_manages_no_keys(service: LocalControlPlane, tenant: Tenant) -> None:
    with service.client(tenant.agent) as c:
        assert c.get("/api/v1/keys").status_code == 403
        assert c.delete(f"/api/v1/keys/{key_id(tenant.agent)}").status_code == 403
    assert beats(service, tenant.agent) == 200


def test_an_operator_revokes_any_key(service: LocalControlPlane, tenant: Tenant) -> None:
    for key in (tenant.bob, tenant.provider):
        with service.client() as admin:
            assert admin.delete(f"/api/v1/keys/{key_id(key)}").status_code == 200
        assert works(service, key) == 401


def test_rotating_gives_a_working_key_for_the_same_user_and_stops_the_old_one_at_once(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    assert works(service, tenant.alice2) == 200
    with service.client(tenant.alice) as c:
        r = c.post(f"/api/v1/keys/{key_id(tenant.alice2)}/rotate")
    assert r.status_code == 201, r.text
    new = r.json()
    assert (new["tenant"], new["user"], new["role"], new["site"]) == ("acme", "user-1", "user",
                                                                      None)
    assert new["key"].startswith(f"cu_{new['id']}_")
    assert new["replaces"]["id"] == key_id(tenant.alice2)
    assert new["replaces"]["revoked_at"] <= time.time()
    assert works(service, tenant.alice2) == 401
    assert works(service, new["key"]) == 200
    with service.client(new["key"]) as c:
        assert c.get("/api/v1/whoami").json()["tenant"] == "acme"
    assert new["id"] in {k["id"] for k in listed(service, tenant.alice)}


def test_during_a_rotations_grace_period_both_keys_work_and_then_only_the_new_one(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    assert works(service, tenant.alice2) == 200
    with service.client(tenant.alice) as c:
        r = c.post(f"/api/v1/keys/{key_id(tenant.alice2)}/rotate", json={"grace_s": 2})
    assert r.status_code == 201, r.text
    new = r.json()
    ends = new["replaces"]["revoked_at"]
    assert ends > time.time()
    assert works(service, tenant.alice2) == 200 and works(service, new["key"]) == 200
    old = next(k for k in listed(service, tenant.alice) if k["id"] == key_id(tenant.alice2))
    assert old["revoked_at"] == ends  # listed as live, with the time it stops
    while time.time() < ends + 0.05:
        time.sleep(0.05)
    assert works(service, tenant.alice2) == 401
    assert works(service, new["key"]) == 200


def test_revoking_a_key_in_its_grace_period_ends_it_at_once(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    with service.client(tenant.alice) as c:
        r = c.post(f"/api/v1/keys/{key_id(tenant.alice2)}/rotate", json={"grace_s": 3600})
        assert works(service, tenant.alice2) == 200
        assert c.delete(f"/api/v1/keys/{key_id(tenant.alice2)}").json()["revoked_at"] <= \
            time.time()
    assert works(service, tenant.alice2) == 401 and works(service, r.json()["key"]) == 200


def test_a_revoked_or_already_rotated_key_cannot_be_rotated(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    with service.client(tenant.alice) as c:
        c.post(f"/api/v1/keys/{key_id(tenant.alice2)}/rotate", json={"grace_s": 60})
        again = c.post(f"/api/v1/keys/{key_id(tenant.alice2)}/rotate")
        assert again.status_code == 409 and "rotated already" in again.json()["detail"]
    with service.client() as admin:
        assert admin.delete(f"/api/v1/keys/{key_id(tenant.bob)}").status_code == 200
        gone = admin.post(f"/api/v1/keys/{key_id(tenant.bob)}/rotate")
    assert gone.status_code == 409 and "revoked" in gone.json()["detail"]


def test_a_provider_rotates_its_sites_agent_key_and_the_agent_heartbeats_with_the_new_one(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    assert beats(service, tenant.agent) == 200
    with service.client(tenant.provider) as c:
        r = c.post(f"/api/v1/keys/{key_id(tenant.agent)}/rotate", json={"grace_s": 600})
    assert r.status_code == 201, r.text
    new = r.json()
    assert (new["role"], new["site"], new["tenant"], new["user"]) == ("agent", "acme-site",
                                                                      "acme", None)
    assert beats(service, new["key"]) == 200
    assert beats(service, tenant.agent) == 200  # in its grace period
    # The agent's restart registers the site again: every earlier agent key ends, the
    # rotated one and the one in its grace period alike.
    fresh = register_site(service, tenant.provider, "acme-site")
    assert beats(service, fresh) == 200
    assert beats(service, new["key"]) == 401 and beats(service, tenant.agent) == 401


def test_an_operator_rotates_a_sites_agent_key_at_once(
    service: LocalControlPlane, tenant: Tenant,
) -> None:
    with service.client() as admin:
        r = admin.post(f"/api/v1/keys/{key_id(tenant.agent)}/rotate", json={"grace_s": 0})
    assert r.status_code == 201, r.text
    assert beats(service, tenant.agent) == 401 and beats(service, r.json()["key"]) == 200


@pytest.mark.parametrize(("body", "field"), [
    ({"grace_s": -1}, "grace_s"),
    ({"grace_s": 7 * 24 * 3600 + 1}, "grace_s"),
    ({"grace_s": "an hour"}, "grace_s"),
    ({"grace": 60}, "grace"),
])
def test_bad_rotation_input_is_a_422_naming_the_field(
    service: LocalControlPlane, tenant: Tenant, body: dict[str, object], field: str,
) -> None:
    with service.client(tenant.alice) as c:
        r = c.post(f"/api/v1/keys/{key_id(tenant.alice2)}/rotate", json=body)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert works(service, tenant.alice2) == 200  # nothing was rotated


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/api/v1/keys", {"limit": "0"}, "query.limit"),
    ("/api/v1/keys", {"tenant": "no spaces"}, "query.tenant"),
    ("/api/v1/keys", {"revoked": "perhaps"}, "query.revoked"),
    ("/api/v1/keys/not-a-key!", {}, "path.key_id"),
])
def test_bad_key_query_is_a_422_naming_the_parameter(
    service: LocalControlPlane, tenant: Tenant, path: str, params: dict[str, str], field: str,
) -> None:
    with service.client(tenant.alice) as c:
        r = c.delete(path) if "!" in path else c.get(path, params=params)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
