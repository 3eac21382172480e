"""Browser sessions: an API key is exchanged once for a session cookie, and every form carries a
CSRF token.

Why a session rather than the key in the browser: the key is a long-lived bearer secret; the
cookie is HttpOnly (no script can read it), SameSite=Strict (no other site's page can make the
browser send it), expires after `SESSION_S`, and dies with its key (a revoked key signs its
sessions out at their next request). The database keeps only the SHA-256 of the cookie's
secret.

CSRF: each session has its own random token, put in every form (``csrf``) and sent by htmx as
``X-CSRF-Token``; every state-changing request must carry it. The sign-in form, which has no
session yet, uses a double-submit token instead: the same random value in a SameSite=Strict
cookie and in the form, so a form posted from another site arrives without the cookie and is
refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from sqlalchemy import delete, insert, select
from starlette.concurrency import run_in_threadpool

from computility.server.auth import Identity, revoked, secret_matches, split_key
from computility.server.db import schema as db
from computility.server.plane import ControlPlane
from computility.server.store import audit
from computility.server.web.i18n import LANGUAGES, Translator, translator

SESSION_COOKIE = "cu_session"
LOGIN_CSRF_COOKIE = "cu_login_csrf"
LANG_COOKIE = "cu_lang"
SESSION_S = 12 * 3600.0
"""A session lasts 12 hours from sign-in, then the key must be given again."""
SIGN_IN_ROLES = ("user", "provider", "operator")
"""Agent keys act for one site's agent and never sign in to the dashboard."""


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to the sign-in form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRefused(Exception):
    """A state-changing request without this session's CSRF token (answered 403)."""


class PageForbidden(Exception):
    """The viewer's role or tenant may not see this page (answered 403 with a page)."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page: the key's identity, the session's CSRF token and language."""

    who: Identity
    session_id: str
    csrf: str
    lang: str
    t: Translator = field(compare=False)

    @property
    def operator(self) -> bool:
        return self.who.operator

    @property
    def tenant(self) -> str:
        return self.who.tenant

    @property
    def role(self) -> str:
        return self.who.role


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_lang(request: Request) -> str:
    """The language of a page: the ``cu_lang`` cookie, else the browser's preference."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    accept = request.headers.get("accept-language", "").lower()
    return "zh" if accept.startswith("zh") else "en"


def check_key(plane: ControlPlane, key: str) -> Identity | str:
    """The identity of an API key allowed to sign in, or why it is not (a message key)."""
    parts = split_key(key.strip())
    if parts is None:
        return "login.malformed"
    key_id, secret = parts
    with plane.engine.connect() as conn:
        row = conn.execute(select(db.api_keys).where(db.api_keys.c.id == key_id)
                           ).mappings().first()
    if row is None or revoked(row["revoked_at"], time.time()) or not secret_matches(
            secret, row["secret_sha256"]):
        return "login.unknown"
    if row["role"] not in SIGN_IN_ROLES:
        return "login.agent_key"
    return Identity(key_id=key_id, tenant=row["tenant_id"], role=row["role"],
                    user_id=row["user_id"], site=row["site_id"])


def open_session(plane: ControlPlane, who: Identity, lang: str) -> tuple[str, str]:
    """A new session for `who`: (the cookie's value, the session's CSRF token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = time.time()
    with plane.write() as conn:
        conn.execute(delete(db.web_sessions).where(db.web_sessions.c.expires_at < now))
        conn.execute(insert(db.web_sessions).values(
            id=_digest(token), key_id=who.key_id, csrf=csrf, lang=lang, created_at=now,
            expires_at=now + SESSION_S))
        audit.record(conn, who, "session.open", f"key:{who.key_id}")
    return token, csrf


def close_session(plane: ControlPlane, session_id: str) -> None:
    with plane.write() as conn:
        conn.execute(delete(db.web_sessions).where(db.web_sessions.c.id == session_id))


def _session_row(plane: ControlPlane, token: str) -> Any:
    s, k = db.web_sessions, db.api_keys
    with plane.engine.connect() as conn:
        return conn.execute(
            select(s.c.id, s.c.csrf, s.c.expires_at, k.c.id.label("key_id"), k.c.tenant_id,
                   k.c.role, k.c.user_id, k.c.site_id, k.c.revoked_at)
            .join(k, k.c.id == s.c.key_id).where(s.c.id == _digest(token))
        ).mappings().first()


async def viewer(request: Request) -> Viewer:
    """The signed-in viewer of a page (a FastAPI dependency); `SignInRequired` otherwise."""
    token = request.cookies.get(SESSION_COOKIE)
    here = return_path(request)
    if not token or len(token) > 100:
        raise SignInRequired(here)
    plane: ControlPlane = request.app.state.plane
    row = await run_in_threadpool(_session_row, plane, token)
    if row is None or revoked(row["revoked_at"], time.time()) or \
            row["expires_at"] < time.time():
        raise SignInRequired(here)
    who = Identity(key_id=row["key_id"], tenant=row["tenant_id"], role=row["role"],
                   user_id=row["user_id"], site=row["site_id"])
    lang = request_lang(request)
    return Viewer(who=who, session_id=row["id"], csrf=row["csrf"], lang=lang,
                  t=translator(lang))


async def checked_viewer(request: Request) -> Viewer:
    """`viewer`, for a state-changing request: its CSRF token must match the session's (from
    the ``X-CSRF-Token`` header or the form's ``csrf`` field); `CsrfRefused` otherwise."""
    who = await viewer(request)
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        value = form.get("csrf")
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, who.csrf):
        raise CsrfRefused()
    return who


def return_path(request: Request) -> str:
    """Where to come back to after signing in: the page itself for a page; for a live
    fragment (an htmx request), the page the fragment is part of; for a form post, the start
    page (a post cannot be replayed as a link)."""
    if request.headers.get("hx-request"):
        current = urlsplit(request.headers.get("hx-current-url", ""))
        return safe_next(current.path + (f"?{current.query}" if current.query else ""))
    if request.method not in ("GET", "HEAD"):
        return "/"
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def require_operator(who: Viewer) -> None:
    if not who.operator:
        raise PageForbidden()


def login_url(next_url: str) -> str:
    return "/login?next=" + quote(next_url, safe="")


def safe_next(next_url: str | None) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    if not next_url or not next_url.startswith("/") or next_url.startswith("//") \
            or "\\" in next_url:
        return "/"
    return next_url
