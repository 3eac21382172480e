"""The audit log: who did what to what, for operators and providers to read back.

`record` writes into the caller's open transaction, never one of its own: an action and its
record commit together or not at all, so the log never claims what did not happen and never
misses what did. Details hold ids, names and figures only; anything that looks like an API key
is redacted before it is stored, whatever a caller passes.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from sqlalchemy import Connection, insert, or_, select

from computility.server.auth import Identity
from computility.server.db import schema as db
from computility.server.plane import ControlPlane
from computility.server.problems import forbidden
from computility.wire.api import AuditEvent, AuditList

LIST_LIMIT_MAX = 1000
REDACTED = "[redacted]"
_KEY_LIKE = re.compile(r"cu_[A-Za-z0-9]+_[A-Za-z0-9_-]{8,}")
_SECRET_NAMES = frozenset({"key", "secret", "api_key", "agent_key", "secret_sha256", "token",
                           "csrf", "password"})


def record(conn: Connection, who: Identity | None, action: str, target: str,
           detail: dict[str, Any] | None = None, *, tenant: str | None = None) -> None:
    """Add one event to the transaction `conn` is in. `tenant` is the tenant the action
    concerns (default: the actor's); `who` None is the service acting on its own."""
    conn.execute(insert(db.audit_events).values(
        at=time.time(), key_id=who.key_id if who else None,
        actor_tenant=who.tenant if who else None, role=who.role if who else None,
        tenant=tenant if tenant is not None else (who.tenant if who else None),
        action=action, target=target[:128],
        detail=_scrub(detail) if detail is not None else None))


def _scrub(value: Any, name: str = "") -> Any:
    if name.lower() in _SECRET_NAMES:
        return REDACTED
    if isinstance(value, dict):
        return {str(k): _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return _KEY_LIKE.sub(REDACTED, value)
    return value


def events(
    plane: ControlPlane, who: Identity, *, tenant: str | None, action: str | None,
    since: float | None, before: int | None, limit: int,
) -> AuditList:
    """A page of events, newest first; `before` is the cursor the previous page returned.

    Operators read every event; providers those that concern their tenant or were done by it;
    users and agents none (their own actions are their tasks, which they can list)."""
    t = db.audit_events
    if not who.may_provide():
        raise forbidden("reading the audit log needs a provider or operator key")
    query = select(t)
    if not who.operator:
        if tenant is not None and tenant != who.tenant:
            raise forbidden("a provider reads only its own tenant's audit events")
        query = query.where(or_(t.c.tenant == who.tenant, t.c.actor_tenant == who.tenant))
    elif tenant is not None:
        query = query.where(t.c.tenant == tenant)
    if action is not None:
        # ``key`` matches ``key.create``, ``key.revoke``, …; ``key.revoke`` only itself.
        query = query.where(or_(t.c.action == action,
                                t.c.action.startswith(f"{action}.", autoescape=True)))
    if since is not None:
        query = query.where(t.c.at >= since)
    if before is not None:
        query = query.where(t.c.id < before)
    query = query.order_by(t.c.id.desc()).limit(limit + 1)
    with plane.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = [AuditEvent(id=int(r["id"]), at=r["at"], key=r["key_id"],
                      actor_tenant=r["actor_tenant"], role=r["role"], tenant=r["tenant"],
                      action=r["action"], target=r["target"], detail=_detail(r["detail"]))
           for r in rows]
    return AuditList(events=out, next_cursor=out[-1].id if more and out else None)


def _detail(value: Any) -> dict[str, Any] | None:
    """A stored detail as a mapping (some drivers hand JSON back as text)."""
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else None
