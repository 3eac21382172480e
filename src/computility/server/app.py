"""The FastAPI application: routes, problem-details errors, body limits, metrics, lifecycle.

`create_app` opens (and migrates) the database, bootstraps the first tenant, gives every lease
one more TTL after a restart, and starts the scheduling loop; shutting down stops the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy import Engine, func, insert, select, update
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from computility.server.api import admin, agent, sites, tasks
from computility.server.auth import new_key
from computility.server.db import schema as db
from computility.server.db.engine import make_engine, sqlite_url, upgrade
from computility.server.plane import ControlPlane
from computility.server.problems import ApiError
from computility.server.scheduling import SchedulingLoop
from computility.server.settings import Settings, default_replica
from computility.server.store.attempts import grace_after_restart
from computility.server.web import install_web
from computility.wire.archives import BlobTooLarge

log = logging.getLogger("computility.server")
API_VERSION = "v1"
UPLOAD_PATHS = ("/api/v1/uploads", "/api/v1/agent/attempts/")


def open_database(settings: Settings) -> Engine:
    url = settings.db_url
    if url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = sqlite_url(settings.data_dir)
    engine = make_engine(url, settings.replica or default_replica())
    upgrade(engine)
    return engine


def bootstrap(plane: ControlPlane) -> str | None:
    """On first start: tenant ``default`` and an operator key (returned once); else None."""
    with plane.write() as conn:
        if conn.execute(select(func.count()).select_from(db.tenants)).scalar():
            return None
        now = time.time()
        conn.execute(insert(db.tenants).values(id="default", created_at=now,
                                               budget_period="month"))
        user_id = conn.execute(insert(db.users).returning(db.users.c.id).values(
            tenant_id="default", name="admin", role="operator", created_at=now)).scalar_one()
        key_id, key, secret_hash = new_key()
        conn.execute(insert(db.api_keys).values(
            id=key_id, user_id=user_id, tenant_id="default", role="operator",
            secret_sha256=secret_hash, created_at=now))
    return key


def begin_shutdown(app: FastAPI) -> None:
    """Answer open long polls now (empty), so that a graceful stop need not cut them off."""
    app.state.closing = True
    if app.state.wake_leases is not None:
        app.state.wake_leases()


def local_provider_key(plane: ControlPlane) -> str:
    """A fresh provider key of tenant ``default`` for the site `computility up` runs here.

    Made on every start (the earlier one is revoked), so the local agent never depends on a key
    that was shown once and is kept nowhere.
    """
    with plane.write() as conn:
        now = time.time()
        user_id = conn.execute(select(db.users.c.id).where(
            db.users.c.tenant_id == "default", db.users.c.name == "local-site")).scalar()
        if user_id is None:
            user_id = conn.execute(insert(db.users).returning(db.users.c.id).values(
                tenant_id="default", name="local-site", role="provider",
                created_at=now)).scalar_one()
        conn.execute(update(db.api_keys).where(db.api_keys.c.user_id == user_id,
                                               db.api_keys.c.revoked_at.is_(None))
                     .values(revoked_at=now))
        key_id, key, secret_hash = new_key()
        conn.execute(insert(db.api_keys).values(
            id=key_id, user_id=user_id, tenant_id="default", role="provider",
            secret_sha256=secret_hash, created_at=now))
    return key


class BodyLimit:
    """Refuse bodies over the limit with 413 before reading them whole (uploads excepted, the
    blob store enforces theirs while streaming)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith(UPLOAD_PATHS):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.limit)(scope, receive, send)


class _BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read; an HTTP exception, so the framework passes it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: at most {limit} bytes")


def _too_large(limit: int) -> JSONResponse:
    return _problem(ApiError(413, "Content Too Large",
                             f"body: at most {limit} bytes", [{"field": "body",
                                                               "message": "too large"}]))


def _problem(error: ApiError) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": error.title, "status": error.status,
                            "detail": error.detail, "errors": error.errors}
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(body, status_code=error.status, media_type="application/problem+json",
                        headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, error: ApiError) -> JSONResponse:
        return _problem(error)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = []
        status = 422
        for e in error.errors():
            if e.get("type") == "json_invalid":
                status = 400
                errors.append({"field": "body", "message": f"not valid JSON: {e.get('msg')}"})
                continue
            message = str(e.get("msg", "invalid"))
            if e.get("type") == "extra_forbidden":
                message = "no such field"
            errors.append({"field": _field(e.get("loc", ())), "message": message})
        detail = "; ".join(f"{x['field']}: {x['message']}" for x in errors[:5])
        title = "Bad Request" if status == 400 else "Unprocessable Content"
        return _problem(ApiError(status, title, detail, errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(error.status_code).phrase
        errors = [{"field": "body", "message": "too large"}] if error.status_code == 413 else []
        return _problem(ApiError(error.status_code, title, str(error.detail), errors))

    @app.exception_handler(BlobTooLarge)
    async def _blob(_: Request, error: BlobTooLarge) -> JSONResponse:
        return _problem(ApiError(413, "Content Too Large", f"body: at most {error.limit} bytes",
                                 [{"field": "body", "message": "too large"}]))

    @app.exception_handler(json.JSONDecodeError)
    async def _json(_: Request, error: json.JSONDecodeError) -> JSONResponse:
        return _problem(ApiError(400, "Bad Request", f"body: not valid JSON: {error}"))

    @app.exception_handler(Exception)
    async def _bug(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=error)
        return _problem(ApiError(500, "Internal Server Error",
                                 "an unexpected error; it has been logged"))


def install_metrics(app: FastAPI, plane: ControlPlane) -> None:
    registry = CollectorRegistry()
    by_state = Gauge("computility_tasks", "Tasks by state", ["state"], registry=registry)
    sites_online = Gauge("computility_sites_online", "Sites online", registry=registry)
    duplicates = Counter("computility_duplicate_reports", "Refused stale or repeated attempt "
                         "reports", registry=registry)
    cycle_s = Gauge("computility_scheduling_cycle_seconds", "Last scheduling cycle's wall time",
                    registry=registry)
    seen = {"duplicates": 0}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        with plane.engine.connect() as conn:
            for state, n in conn.execute(select(db.tasks.c.state, func.count())
                                         .group_by(db.tasks.c.state)):
                by_state.labels(state).set(n)
            sites_online.set(conn.execute(select(func.count()).select_from(db.sites)
                                          .where(db.sites.c.online.is_(True))).scalar() or 0)
        duplicates.inc(plane.duplicates - seen["duplicates"])
        seen["duplicates"] = plane.duplicates
        loop = getattr(app.state, "loop", None)
        if loop is not None and loop.last is not None:
            cycle_s.set(loop.last.wall_s)
        return PlainTextResponse(generate_latest(registry).decode(),
                                 media_type="text/plain; version=0.0.4")


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    engine = engine or open_database(settings)
    plane = ControlPlane(engine, settings)
    first_key = bootstrap(plane)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wake = asyncio.Event()
        app.state.lease_wake = wake
        aio = asyncio.get_running_loop()
        def wake_leases() -> None:
            aio.call_soon_threadsafe(wake.set)

        plane.on_placed.append(wake_leases)
        app.state.wake_leases = wake_leases
        grace_after_restart(plane, time.time())
        loop = SchedulingLoop(plane) if settings.run_loop else None
        app.state.loop = loop
        if loop is not None:
            loop.start()
        try:
            yield
        finally:
            if loop is not None:
                await asyncio.to_thread(loop.stop)
            plane.on_placed.clear()

    app = FastAPI(title="Computility control plane", version="0.1.0", lifespan=lifespan,
                  description="Submit tasks, register sites, lease work, meter and bill it.")
    app.state.plane = plane
    app.state.first_key = first_key
    app.state.loop = None
    app.state.closing = False
    app.state.leaving_sites = set()  # sites whose agent said it is leaving (api.agent)
    app.state.wake_leases = None
    install_errors(app)
    for router in (tasks.router, sites.router, agent.router, admin.router):
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    install_metrics(app, plane)
    install_web(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


Handler = Callable[[Request], Awaitable[Any]]
