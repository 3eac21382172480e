"""Signing in and out, and choosing the language."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from computility.server.problems import ApiError
from computility.server.ratelimit import client_address, limiter_of
from computility.server.web.i18n import LANGUAGES
from computility.server.web.render import SECURITY_HEADERS, page
from computility.server.web.session import (
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_S,
    Viewer,
    check_key,
    checked_viewer,
    close_session,
    open_session,
    request_lang,
    safe_next,
)

router = APIRouter(include_in_schema=False)


def _secure(request: Request) -> bool:
    """Whether the browser reached us over HTTPS: directly, or through a TLS-terminating proxy
    that says so (the cookie then carries ``Secure`` and never travels in clear)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _login_form(request: Request, next_url: str, error: str | None = None,
                status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = page(request, "login.html", {"next": safe_next(next_url), "error": error,
                                            "login_csrf": token}, status=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True,
                        samesite="strict", secure=_secure(request), path="/login")
    return response


def _refused_form(request: Request, next_url: str, refused: ApiError) -> HTMLResponse:
    """The form again, answered 429: this address failed to sign in too often."""
    response = _login_form(request, next_url, "login.too_many", status=429)
    response.headers.update(refused.headers)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return _login_form(request, next)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, api_key: Annotated[str, Form()] = "",
                csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not csrf or not hmac.compare_digest(expected, csrf):
        return _login_form(request, next, "login.expired_form", status=403)
    limiter, client = limiter_of(request), client_address(request)
    refused = limiter.refusal(client, "dashboard")
    if refused is not None:  # a valid key too: a guesser must not learn which guess was right
        return _refused_form(request, next, refused)
    plane = request.app.state.plane
    who = await run_in_threadpool(check_key, plane, api_key)
    if isinstance(who, str):
        # Only a well-formed key that does not verify is a guess (see `api.deps.identity`).
        refused = limiter.failed(client, "dashboard") if who == "login.unknown" else None
        if refused is not None:
            return _refused_form(request, next, refused)
        return _login_form(request, next, who, status=401)
    token, _ = await run_in_threadpool(open_session, plane, who, request_lang(request))
    response = RedirectResponse(safe_next(next), status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(SESSION_S), httponly=True,
                        samesite="strict", secure=_secure(request), path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, who: Annotated[Viewer, Depends(checked_viewer)]) -> Response:
    await run_in_threadpool(close_session, request.app.state.plane, who.session_id)
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
def choose_language(request: Request, lang: str, next: str = "/") -> Response:
    """A preference, not a change of state on the server: a plain link may set it."""
    response = RedirectResponse(safe_next(next), status_code=303, headers=SECURITY_HEADERS)
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax",
                            secure=_secure(request), path="/")
    return response
