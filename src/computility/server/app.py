"""The FastAPI application: routes, problem-details errors, body limits, lifecycle.

Metrics, logs and health probes: `computility.server.observability`.

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

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, func, insert, select, update
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from computility.server.api import admin, agent, keys, sites, tasks
from computility.server.auth import new_key
from computility.server.db import schema as db
from computility.server.db.engine import make_engine, sqlite_url, upgrade
from computility.server.heap import tune_for_serving
from computility.server.observability import install_observability
from computility.server.plane import ControlPlane
from computility.server.problems import ApiError
from computility.server.ratelimit import FailureLimiter
from computility.server.scheduling import SchedulingLoop
from computility.server.settings import Settings, default_replica
from computility.server.store.attempts import grace_after_restart
from computility.server.validation import start_validation_worker, stop_validation_worker
from computility.server.web import install_web
from computility.wire.archives import BlobTooLarge

log = logging.getLogger("computility.server")
API_VERSION = "v1"
UPLOAD_PATHS = ("/api/v1/uploads", "/api/v1/agent/attempts/")
UPLOAD_PAGES = ("/validation/runs",)
"""Dashboard routes that take an upload: exempt from the body limit by exact path only (they
enforce their own, before reading the body)."""
"""Bodies the limit does not cover: each of these routes enforces its own while reading (a
validation run's uploaded trace: `computility.server.validation.choices.MAX_UPLOAD_BYTES`)."""


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
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(UPLOAD_PATHS) or path in UPLOAD_PAGES:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if (length is not None and length.isascii() and length.isdigit()
                and int(length) > self.limit):
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
                            "detail": _encodable(error.detail),
                            "errors": [{k: _encodable(v) for k, v in e.items()}
                                       for e in error.errors]}
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    headers.update(error.headers)
    return JSONResponse(body, status_code=error.status, media_type="application/problem+json",
                        headers=headers)


def _encodable(text: str) -> str:
    """`text` as UTF-8 can carry it: a lone surrogate a client sent (JSON allows ``"\\ud800"``)
    and an error quotes back is escaped, or rendering the problem itself would fail."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, error: ClientDisconnect) -> JSONResponse:
        # The client went away mid-body (an agent killed or cut off while it uploads): its
        # fault, not the service's; the partial upload is already discarded, no one reads this.
        return _problem(ApiError(400, "Bad Request",
                                 "body: the client closed the connection before sending all of "
                                 "it"))

    @app.exception_handler(Exception)
    async def _bug(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=error)
        return _problem(ApiError(500, "Internal Server Error",
                                 "an unexpected error; it has been logged"))


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    engine = engine or open_database(settings)
    plane = ControlPlane(engine, settings)
    first_key = bootstrap(plane)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wake = asyncio.Event()
        app.state.lease_wake = wake
        anyio.to_thread.current_default_thread_limiter().total_tokens = \
            settings.threads_for(engine)
        if settings.tune_heap:
            tune_for_serving()
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
        start_validation_worker(app)
        if plane.loop_reads is not None:
            await plane.loop_reads.open()
        try:
            yield
        finally:
            if plane.loop_reads is not None:
                await plane.loop_reads.close()
            await asyncio.to_thread(stop_validation_worker, app)
            if loop is not None:
                await asyncio.to_thread(loop.stop)
            plane.on_placed.clear()

    app = FastAPI(title="Computility control plane", version="0.1.0", lifespan=lifespan,
                  description="Submit tasks, register sites, lease work, meter and bill it.")
    app.state.plane = plane
    app.state.first_key = first_key
    app.state.auth_limiter = FailureLimiter(
        settings.auth_failure_limit, settings.auth_failure_window_s,
        settings.auth_tracked_clients,
        on_refused=lambda kind: plane.metrics.auth_refused.labels(kind).inc())
    app.state.loop = None
    app.state.closing = False
    app.state.leaving_sites = set()  # sites whose agent said it is leaving (api.agent)
    app.state.wake_leases = None
    install_errors(app)
    for router in (tasks.router, sites.router, agent.router, admin.router, keys.router):
        app.include_router(router)
    install_web(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # Last: its middleware is then the outermost, seeing every request (413s included).
    install_observability(app, plane)
    return app


Handler = Callable[[Request], Awaitable[Any]]
