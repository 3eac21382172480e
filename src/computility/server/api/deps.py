"""Who is calling: every API route needs a key (not ``/healthz``, ``/readyz``, ``/metrics``).

The key comes as ``Authorization: Bearer cu_<id>_<secret>`` (or ``X-API-Key``). Keys are
looked up by id and checked with a constant-time comparison; verified keys are cached for a few
seconds so a burst of submissions does not re-read the key table each time (a revoked key stops
working within `CACHE_S`).
"""

from __future__ import annotations

import threading
import time
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import bindparam, select

from computility.server.auth import Identity, revoked, secret_matches, split_key
from computility.server.db import schema as db
from computility.server.observability.logging import bind
from computility.server.plane import ControlPlane
from computility.server.problems import ApiError, forbidden
from computility.server.ratelimit import client_address, limiter_of

CACHE_S = 5.0
UNKNOWN_KEY = "unknown or revoked API key"
_cache: dict[str, tuple[float, str, Identity]] = {}
_cache_lock = threading.Lock()
_revocations = 0
"""Counts `forget` calls: a key row read before a revocation is not cached after it."""


def forget(key_ids: list[str], site: str | None = None) -> None:
    """Drop revoked keys (and with `site`, that site's agent keys) from this replica's cache,
    so they stop working here at once (other replicas stop honouring them within `CACHE_S`)."""
    global _revocations
    with _cache_lock:
        _revocations += 1
        for key_id in key_ids:
            _cache.pop(key_id, None)
        if site is not None:
            for key_id in [k for k, hit in _cache.items() if hit[2].site == site]:
                del _cache[key_id]


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
    """The caller. A well-formed key that does not verify counts against the caller's address
    (no key or a malformed one can never succeed, so it guesses nothing), and an address that
    failed too often is refused with 429 whatever key it sends (`computility.server.ratelimit`).
    """
    limiter, client = limiter_of(request), client_address(request)
    refused = limiter.refusal(client)
    if refused is not None:
        raise refused
    try:
        who = await _verified(request, authorization, x_api_key)
    except ApiError as error:
        if error.detail != UNKNOWN_KEY:
            raise
        raise limiter.failed(client) or error from None
    if who.role == "agent" and not request.url.path.startswith(AGENT_PATHS):
        # Least privilege: an agent key lives on a site's machine and needs nothing else.
        raise forbidden("an agent key serves only the agent protocol (/api/v1/agent/...) and "
                        "/api/v1/whoami")
    return who


async def _verified(
    request: Request, authorization: str | None, x_api_key: str | None,
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
    with _cache_lock:
        generation = _revocations
    row = await plane.one(_KEY_ROW, {"key_id": key_id})
    if row is None or revoked(row["revoked_at"], time.time()) or not secret_matches(
        secret, row["secret_sha256"]
    ):
        raise _unauthorized(UNKNOWN_KEY)
    who = Identity(key_id=key_id, tenant=row["tenant_id"], role=row["role"],
                   user_id=row["user_id"], site=row["site_id"])
    # A key in a rotation's grace period is cached no longer than it has left.
    until = now + CACHE_S if row["revoked_at"] is None else \
        now + min(CACHE_S, row["revoked_at"] - time.time())
    with _cache_lock:
        if generation == _revocations:  # no revocation raced this read
            _cache[key_id] = (until, row["secret_sha256"], who)
    return _known(request, who)


def _known(request: Request, who: Identity) -> Identity:
    """The caller, now in the request's log context: its tenant, and the site (an agent's own,
    or the one the path names) and task the request is about."""
    params = request.path_params
    bind(tenant=who.tenant, site_id=who.site or params.get("site_id"),
         task_id=params.get("task_id"))
    return who


_KEY_ROW = select(db.api_keys).where(db.api_keys.c.id == bindparam("key_id"))


AGENT_PATHS = ("/api/v1/agent/", "/api/v1/whoami")
"""The only paths an agent key may call."""

Caller = Annotated[Identity, Depends(identity)]
Plane = Annotated[ControlPlane, Depends(plane_of)]
