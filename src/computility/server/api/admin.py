"""Tenants, keys, identity and usage: operators create tenants and keys; everyone reads their own
usage."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from sqlalchemy import insert, select, update

from computility.domain.money import from_micro, to_micro
from computility.server.api.deps import Caller, Plane
from computility.server.auth import new_key
from computility.server.db import schema as db
from computility.server.problems import conflict, forbidden, invalid, not_found
from computility.server.store import audit, billing
from computility.server.store.files import upload
from computility.server.store.tasks import budget_changed
from computility.wire.api import KeyIn, KeyOut, TenantIn, TenantOut, Usage

router = APIRouter(prefix="/api/v1", tags=["tenants"])


def _tenant_out(row: dict[str, object]) -> TenantOut:
    budget = row["budget_micro"]
    return TenantOut(id=str(row["id"]), concurrent_cu_quota=row["concurrent_cu_quota"],  # type: ignore[arg-type]
                     budget=None if budget is None else from_micro(int(budget)),  # type: ignore[call-overload]
                     budget_period=str(row["budget_period"]))


def _limits(body: TenantIn) -> dict[str, object]:
    return {"concurrent_cu_quota": body.concurrent_cu_quota, "budget": body.budget}


@router.get("/whoami")
def whoami(who: Caller) -> dict[str, str | None]:
    return {"tenant": who.tenant, "role": who.role, "site": who.site, "key": who.key_id}


@router.post("/tenants", status_code=201, response_model=TenantOut)
def create_tenant(body: TenantIn, who: Caller, plane: Plane) -> TenantOut:
    if not who.operator:
        raise forbidden("creating tenants needs an operator key")
    values = {"id": body.id, "created_at": time.time(),
              "concurrent_cu_quota": body.concurrent_cu_quota,
              "budget_micro": None if body.budget is None else to_micro(body.budget),
              "budget_period": "month"}
    with plane.write() as conn:
        if conn.execute(select(db.tenants.c.id).where(db.tenants.c.id == body.id)).first():
            raise conflict(f"tenant '{body.id}' exists")
        conn.execute(insert(db.tenants).values(**values))
        audit.record(conn, who, "tenant.create", f"tenant:{body.id}", _limits(body),
                     tenant=body.id)
    return _tenant_out(values)


@router.put("/tenants/{tenant_id}", response_model=TenantOut)
def set_tenant(tenant_id: str, body: TenantIn, who: Caller, plane: Plane) -> TenantOut:
    if not who.operator:
        raise forbidden("changing quotas and budgets needs an operator key")
    if body.id != tenant_id:
        raise invalid("id", f"the tenant of the path, '{tenant_id}', got '{body.id}'")
    with plane.write() as conn:
        done = conn.execute(update(db.tenants).where(db.tenants.c.id == tenant_id).values(
            concurrent_cu_quota=body.concurrent_cu_quota,
            budget_micro=None if body.budget is None else to_micro(body.budget))).rowcount
        if not done:
            raise not_found("tenant", tenant_id)
        audit.record(conn, who, "tenant.update", f"tenant:{tenant_id}", _limits(body),
                     tenant=tenant_id)
        row = conn.execute(select(db.tenants).where(db.tenants.c.id == tenant_id)).mappings().one()
    budget_changed(tenant_id)
    plane.wake_scheduler.set()
    return _tenant_out(dict(row))


@router.get("/tenants/{tenant_id}", response_model=TenantOut)
def get_tenant(tenant_id: str, who: Caller, plane: Plane) -> TenantOut:
    if tenant_id != who.tenant and not who.operator:
        raise not_found("tenant", tenant_id)
    with plane.engine.connect() as conn:
        row = conn.execute(select(db.tenants).where(db.tenants.c.id == tenant_id)
                           ).mappings().first()
    if row is None:
        raise not_found("tenant", tenant_id)
    return _tenant_out(dict(row))


@router.post("/tenants/{tenant_id}/keys", status_code=201, response_model=KeyOut)
def create_key(tenant_id: str, body: KeyIn, who: Caller, plane: Plane) -> KeyOut:
    if not who.operator:
        raise forbidden("creating keys needs an operator key")
    key_id, key, secret_hash = new_key()
    now = time.time()
    with plane.write() as conn:
        if not conn.execute(select(db.tenants.c.id).where(db.tenants.c.id == tenant_id)).first():
            raise not_found("tenant", tenant_id)
        user_id = conn.execute(select(db.users.c.id).where(
            db.users.c.tenant_id == tenant_id, db.users.c.name == body.user)).scalar()
        if user_id is None:
            user_id = conn.execute(insert(db.users).returning(db.users.c.id).values(
                tenant_id=tenant_id, name=body.user, role=body.role, created_at=now)
            ).scalar_one()
        conn.execute(insert(db.api_keys).values(
            id=key_id, user_id=user_id, tenant_id=tenant_id, role=body.role,
            secret_sha256=secret_hash, created_at=now))
        audit.record(conn, who, "key.create", f"key:{key_id}",
                     {"tenant": tenant_id, "user": body.user, "role": body.role},
                     tenant=tenant_id)
    return KeyOut(id=key_id, tenant=tenant_id, user=body.user, role=body.role, key=key)


@router.get("/usage", response_model=Usage)
def usage(
    who: Caller, plane: Plane, tenant: str | None = None, since: float | None = None,
    until: float | None = None,
) -> Usage:
    return billing.usage(plane, who, tenant, since, until)


@router.post("/uploads", status_code=201)
async def upload_blob(request: Request, who: Caller, plane: Plane) -> dict[str, object]:
    if not who.may_submit():
        raise forbidden("uploading needs a user or operator key")
    digest, size = await upload(plane, who, request.stream())
    return {"digest": f"sha256:{digest}", "size": size}
