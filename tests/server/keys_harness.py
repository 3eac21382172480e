"""What the key and audit tests share: a tenant with users, a provider and a site, key ids, the
audit log read straight from the database, and a dashboard sign-in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select

from computility.server.db import schema as db
from computility.testing.controlplane import LocalControlPlane, new_tenant

CPU = "EPYC-7763"


def key_id(key: str) -> str:
    return key.split("_")[1]


def make_key(service: LocalControlPlane, tenant: str, user: str, role: str = "user") -> str:
    with service.client() as admin:
        r = admin.post(f"/api/v1/tenants/{tenant}/keys", json={"user": user, "role": role})
        assert r.status_code == 201, r.text
        key: str = r.json()["key"]
        return key


def register_site(service: LocalControlPlane, provider_key: str, site: str,
                  count: int = 4) -> str:
    """Register (or register again) `site`; its fresh agent key."""
    body = {"id": site, "region": "ZJK", "backend": "fake",
            "pools": [{"id": "cpu", "device": CPU, "count": count, "price_per_cu_hour": 0.5}]}
    with service.client(provider_key) as c:
        r = c.post("/api/v1/sites", json=body)
        assert r.status_code == 201, r.text
        key: str = r.json()["agent_key"]
        return key


@dataclass
class Tenant:
    """Tenant ``acme``: users alice (two keys) and bob, a provider and its site's agent."""

    alice: str
    alice2: str
    bob: str
    provider: str
    agent: str


def acme(service: LocalControlPlane) -> Tenant:
    with service.client() as admin:
        alice = new_tenant(admin, "acme", "user")  # user "user-1"
    provider = make_key(service, "acme", "prov", "provider")
    return Tenant(alice=alice, alice2=make_key(service, "acme", "user-1"),
                  bob=make_key(service, "acme", "bob"), provider=provider,
                  agent=register_site(service, provider, "acme-site"))


def works(service: LocalControlPlane, key: str) -> int:
    """The status of a plain read with `key` (200: the key works; 401: it does not)."""
    with service.client(key) as c:
        return c.get("/api/v1/whoami").status_code


def beats(service: LocalControlPlane, agent_key: str) -> int:
    with service.client(agent_key) as c:
        return c.post("/api/v1/agent/heartbeat", json={"free": {"cpu": 4}}).status_code


def stored_events(service: LocalControlPlane, **where: Any) -> list[dict[str, Any]]:
    t = db.audit_events
    query = select(t).order_by(t.c.id)
    for name, value in where.items():
        query = query.where(t.c[name] == value)
    with service.plane.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def sign_in(url: str, key: str) -> httpx.Response:
    """Post `key` to the dashboard's sign-in form as a browser does; the form's answer."""
    with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as client:
        form = client.get("/login")
        found = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert found is not None, form.text
        return client.post("/login", data={"api_key": key, "csrf": found.group(1),
                                           "next": "/"})
