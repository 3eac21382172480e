"""The dashboard: server-rendered pages over the control plane's own database, served at ``/``.

`install_web` mounts the static files, the sign-in routes and every page's router, and answers
the dashboard's own failures as pages (sign in again, not allowed, refused form) rather than the
API's problem documents.
"""

from __future__ import annotations

from importlib import import_module, resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from computility.server.web.render import SECURITY_HEADERS, page
from computility.server.web.session import (
    CsrfRefused,
    PageForbidden,
    SignInRequired,
    login_url,
)

PAGE_MODULES = ("login", "network", "supply", "tasks", "usage", "validation")
"""The routers under ``computility.server.web.pages``, each one part of the dashboard (a module
not yet present is skipped, so the dashboard grows a page at a time)."""


def install_web(app: FastAPI) -> None:
    static = resources.files("computility.server.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    for name in PAGE_MODULES:
        try:
            module = import_module(f"computility.server.web.pages.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"computility.server.web.pages.{name}":
                raise
            continue
        app.include_router(module.router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, error: SignInRequired) -> Response:
        target = login_url(error.next_url)
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused) -> HTMLResponse:
        return page(request, "error.html", {"kind": "csrf"}, status=403)

    @app.exception_handler(PageForbidden)
    async def _forbidden(request: Request, _: PageForbidden) -> HTMLResponse:
        return page(request, "error.html", {"kind": "forbidden"}, status=403)
