"""Who is calling: every API route needs a key (not ``/healthz``, ``/readyz``, ``/metrics``).

The key comes as ``Authorization: Bearer cu_<id>_<secret>`` (or ``X-API-Key``). Keys are
looked up by id and checked with a constant-time comparison; verified keys are cached for a few
seconds so a burst of submissions does not re-read the key table each time (a revoked key stops
working within `CACHE_S`).
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from computility.server.auth import Identity, secret_matches, split_key
from computility.server.db import schema as db
from computility.server.observability.logging import bind
from computility.server.plane import ControlPlane
from computility.server.problems import ApiError

CACHE_S = 5.0
_cache: dict[str, tuple[float, str, Identity]] = {}
_cache_lock = threading.Lock()


async def plane_of(request: Request) -> ControlPlane:
    # Async (as `identity`): FastAPI runs a sync dependency in its thread pool, a hop that cost
    # each request more than the work itself.
    plane: ControlPlane = request.app.state.plane
    return plane


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "Unauthorized", detail)


async def identity(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Identity:
    key = x_api_key
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise _unauthorized("Authorization: expected 'Bearer cu_<id>_<secret>'")
        key = value.strip()
    if not key:
        raise _unauthorized("an API key is required (Authorization: Bearer cu_...)")
    parts = split_key(key)
    if parts is None:
        raise _unauthorized("malformed API key: expected cu_<id>_<secret>")
    key_id, secret = parts
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key_id)
    if hit is not None and hit[0] > now and secret_matches(secret, hit[1]):
        return _known(request, hit[2])
    plane: ControlPlane = request.app.state.plane
    row = await run_in_threadpool(_key_row, plane, key_id)
    if row is None or row["revoked_at"] is not None or not secret_matches(
        secret, row["secret_sha256"]
    ):
        raise _unauthorized("unknown or revoked API key")
    who = Identity(key_id=key_id, tenant=row["tenant_id"], role=row["role"],
                   user_id=row["user_id"], site=row["site_id"])
    with _cache_lock:
        _cache[key_id] = (now + CACHE_S, row["secret_sha256"], who)
    return _known(request, who)


def _known(request: Request, who: Identity) -> Identity:
    """The caller, now in the request's log context: its tenant, and the site (an agent's own,
    or the one the path names) and task the request is about."""
    params = request.path_params
    bind(tenant=who.tenant, site_id=who.site or params.get("site_id"),
         task_id=params.get("task_id"))
    return who


def _key_row(plane: ControlPlane, key_id: str) -> Any:
    with plane.engine.connect() as conn:
        return conn.execute(select(db.api_keys).where(db.api_keys.c.id == key_id)
                            ).mappings().first()


Caller = Annotated[Identity, Depends(identity)]
Plane = Annotated[ControlPlane, Depends(plane_of)]
