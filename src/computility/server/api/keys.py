"""API keys from their holders' side (list, revoke, rotate) and the audit log.

Who may touch which key: its holder's user (any of that user's keys), a provider its tenant's
site agents' keys, an operator every key. Any other key answers 404, as a key that does not
exist does, so ids cannot be probed. Revoking drops the key from this replica's cache at once;
other replicas stop honouring it within `deps.CACHE_S` seconds.

A rotation makes a key for the same user, tenant and role (and site, for an agent's key) and
revokes the old one, at once or after ``grace_s`` seconds, during which both work: a running
script or agent has that long to switch.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import Connection, insert, or_, select, update

from computility.server.api.deps import Caller, Plane, forget
from computility.server.auth import Identity, new_key, revoked
from computility.server.db import schema as db
from computility.server.db.retry import retrying
from computility.server.problems import conflict, forbidden, not_found
from computility.server.store import audit
from computility.wire.api import (
    MAX_ID,
    SLUG,
    AuditList,
    KeyInfo,
    KeyList,
    KeyRotate,
    KeyRotated,
)

router = APIRouter(prefix="/api/v1", tags=["keys"])
KeyId = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,32}$")]
LIST_LIMIT_MAX = 1000
k, u = db.api_keys, db.users
_COLUMNS = (k.c.id, k.c.tenant_id, k.c.user_id, k.c.role, k.c.site_id, k.c.created_at,
            k.c.revoked_at, u.c.name)


def _managing(who: Identity) -> None:
    if who.role == "agent":
        raise forbidden("managing keys needs a user, provider or operator key")


def _mine(who: Identity) -> Any:
    """The keys `who` may see and manage (for an operator, every key)."""
    if who.operator:
        return True
    own = k.c.user_id == who.user_id if who.user_id is not None else k.c.id == who.key_id
    if who.role == "provider":
        return or_(own, (k.c.tenant_id == who.tenant) & (k.c.role == "agent"))
    return own


def _info(row: Any) -> KeyInfo:
    return KeyInfo(id=row["id"], tenant=row["tenant_id"], user=row["name"], role=row["role"],
                   site=row["site_id"], created_at=row["created_at"],
                   revoked_at=row["revoked_at"])


def _query() -> Any:
    return select(*_COLUMNS).select_from(k.outerjoin(u, u.c.id == k.c.user_id))


@router.get("/keys", response_model=KeyList)
def list_keys(
    who: Caller, plane: Plane,
    tenant: Annotated[str | None, Query(pattern=SLUG)] = None,
    revoked_too: Annotated[bool, Query(alias="revoked")] = False,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = 200,
) -> KeyList:
    """The caller's keys, newest first (an operator's: every tenant's, or `tenant`'s). Keys
    that stopped working are left out unless ``revoked=true``."""
    _managing(who)
    if tenant is not None and tenant != who.tenant and not who.operator:
        raise forbidden("listing another tenant's keys needs an operator key")
    query = _query().where(_mine(who))
    if tenant is not None:
        query = query.where(k.c.tenant_id == tenant)
    if not revoked_too:
        query = query.where(or_(k.c.revoked_at.is_(None), k.c.revoked_at > time.time()))
    query = query.order_by(k.c.created_at.desc(), k.c.id).limit(limit + 1)
    with plane.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return KeyList(keys=[_info(r) for r in rows[:limit]], truncated=len(rows) > limit)


def _own_key(conn: Connection, who: Identity, key_id: str) -> Any:
    row = conn.execute(_query().where(k.c.id == key_id, _mine(who))).mappings().first()
    if row is None:
        raise not_found("key", key_id)
    return row


def _revoke(plane: Plane, who: Identity, key_id: str) -> KeyInfo:
    now = time.time()
    with plane.write() as conn:
        row = _own_key(conn, who, key_id)
        if not revoked(row["revoked_at"], now):  # twice is once: no second event
            conn.execute(update(k).where(k.c.id == key_id).values(revoked_at=now))
            audit.record(conn, who, "key.revoke", f"key:{key_id}", _about(row),
                         tenant=row["tenant_id"])
        row = _own_key(conn, who, key_id)
    return _info(row)


@router.delete("/keys/{key_id}", response_model=KeyInfo)
def revoke_key(key_id: KeyId, who: Caller, plane: Plane) -> KeyInfo:
    """Revoke a key now (a key in a rotation's grace period too). Revoking a revoked key
    changes nothing and answers the same."""
    _managing(who)
    info = retrying(_revoke, plane, who, key_id)
    forget([key_id])
    return info


def _rotate(plane: Plane, who: Identity, key_id: str, grace_s: float) -> KeyRotated:
    now = time.time()
    new_id, key, secret_hash = new_key()
    with plane.write() as conn:
        row = _own_key(conn, who, key_id)
        if row["revoked_at"] is not None:
            raise conflict(f"key '{key_id}' is revoked" if revoked(row["revoked_at"], now)
                           else f"key '{key_id}' was rotated already; rotate its successor")
        conn.execute(insert(k).values(
            id=new_id, user_id=row["user_id"], site_id=row["site_id"], tenant_id=row["tenant_id"],
            role=row["role"], secret_sha256=secret_hash, created_at=now))
        conn.execute(update(k).where(k.c.id == key_id).values(revoked_at=now + grace_s))
        audit.record(conn, who, "key.rotate", f"key:{key_id}",
                     {**_about(row), "new_key_id": new_id, "grace_s": grace_s},
                     tenant=row["tenant_id"])
        old = _own_key(conn, who, key_id)
    return KeyRotated(id=new_id, tenant=row["tenant_id"], user=row["name"], role=row["role"],
                      site=row["site_id"], key=key, replaces=_info(old))


@router.post("/keys/{key_id}/rotate", status_code=201, response_model=KeyRotated)
def rotate_key(
    key_id: KeyId, who: Caller, plane: Plane, body: KeyRotate | None = None,
) -> KeyRotated:
    """A new key in the old one's place, its secret shown this once; the old one stops working
    after ``grace_s`` seconds (default: at once)."""
    _managing(who)
    grace_s = body.grace_s if body is not None else 0.0
    rotated = retrying(_rotate, plane, who, key_id, grace_s)
    forget([key_id])  # read again, it is cached no longer than its grace period
    return rotated


def _about(row: Any) -> dict[str, Any]:
    """A key as an audit event describes it: whose it is, never its secret."""
    return {"tenant": row["tenant_id"], "user": row["name"], "role": row["role"],
            "site": row["site_id"]}


@router.get("/audit", response_model=AuditList, tags=["audit"])
def audit_log(
    who: Caller, plane: Plane,
    tenant: Annotated[str | None, Query(pattern=SLUG)] = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z_]{1,24}(\.[a-z_]{1,24})?$")] = None,
    since: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=audit.LIST_LIMIT_MAX)] = 100,
) -> AuditList:
    """Audit events, newest first: every event for an operator, its tenant's for a provider.
    ``action=key`` matches every ``key.*`` event; ``before`` is the previous page's
    ``next_cursor``."""
    return audit.events(plane, who, tenant=tenant, action=action, since=since, before=before,
                        limit=limit)
