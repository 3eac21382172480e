"""One ASGI middleware around every request: its id, its latency, its access line.

- **Request id**: the caller's ``X-Request-ID`` when it is a sane token (so a request can be
  followed from a proxy or a client's own logs), else a fresh one; set as the request's log
  context (every line the request causes carries it) and echoed in the response's
  ``X-Request-ID``.
- **Latency**: ``computility_http_request_duration_seconds`` by method, *route template*
  (``/api/v1/tasks/{task_id}``, never the raw path: one series per route, not per task) and
  status class; paths no route matches count as ``unmatched``. Submissions are also counted by
  kind and outcome (``computility_submissions_total``), here because only here is every outcome
  seen, the requests refused before the handler (no key, a body too large) included.
- **Access line**: one line per request on logger ``computility.access`` with method, path,
  route, status and duration as fields. The agent protocol's and the probes' routine successes
  (heartbeats, long polls, reports, scrapes: hundreds a second on a large network) are logged at
  DEBUG; everything else at INFO, and server errors at WARNING.

A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: no extra task per request,
and streamed bodies (uploads, long polls) pass through untouched. It is added last, so it is the
outermost middleware and sees every request (the body limit's 413s included).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from computility.server.observability.logging import begin_request
from computility.server.observability.metrics import ServerMetrics

access = logging.getLogger("computility.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
"""What a caller's request id may be; anything else (too long, spaces, control characters that
could forge log lines) is replaced by a fresh id."""

SUBMISSION_ROUTES = {"/api/v1/tasks": "single", "/api/v1/tasks/batch": "batch"}
"""POSTs to these route templates are submissions (`computility_submissions_total`)."""

QUIET_PREFIXES = ("/api/v1/agent/", "/metrics", "/healthz", "/readyz", "/static")
"""Route templates whose successes are routine traffic, logged at DEBUG."""

UNMATCHED = "unmatched"


def request_id_of(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` if sane, else a fresh random id."""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            given = bytes(value).decode("latin-1")
            if _SANE_ID.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request (``unmatched`` when none did)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if isinstance(path, str) and path else UNMATCHED


class RequestObservability:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        begin_request(request_id)
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = str(scope.get("method", ""))
        route = route_template(scope)
        self.metrics.observe_request(method, route, status, seconds)
        kind = SUBMISSION_ROUTES.get(route)
        if kind is not None and method == "POST":
            self.metrics.observe_submission(kind, status)
        if status >= 500:
            level = logging.WARNING
        elif status < 400 and route.startswith(QUIET_PREFIXES):
            level = logging.DEBUG
        else:
            level = logging.INFO
        if access.isEnabledFor(level):
            path = str(scope.get("path", ""))
            access.log(level, "%s %s %d %.1f ms", method, path, status, seconds * 1000,
                       extra={"method": method, "path": path, "route": route,
                              "status": status, "duration_s": round(seconds, 6)})
