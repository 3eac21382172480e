"""Rendering pages: one Jinja2 environment (autoescaped), the filters every page uses, and the
security headers every page carries.

Pages are rendered on the server and complete without JavaScript; htmx swaps fragments for the
live parts and uPlot draws the charts from JSON embedded in the page (``<script
type="application/json">``, data that never runs), so the Content-Security-Policy allows scripts
from this origin only.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from computility.domain.money import from_micro
from computility.server.web.i18n import LANGUAGES, translator

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""On every dashboard page: scripts only from this origin, never framed, never cached (pages
show a tenant's data)."""


def money(micro: int | float | None, currency: str = "CNY", digits: int = 2) -> str:
    """Micro-units as money, with enough digits that a small bill does not read as zero."""
    if micro is None:
        return "—"
    value = float(from_micro(int(micro)))
    if value != 0 and abs(value) < 10 ** -digits:
        digits = min(6, max(digits, 1 - math.floor(math.log10(abs(value)))))
    return f"{value:,.{digits}f} {currency}"


def number(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def percent(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``: the two largest units."""
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min" if s % 3600 // 60 else f"{s // 3600} h"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def timestamp(ts: float | None, offset_minutes: int = 480) -> str:
    """A UNIX time in the network's own time zone (UTC+8 for the national network)."""
    if ts is None:
        return "—"
    zone = dt.timezone(dt.timedelta(minutes=offset_minutes))
    when = dt.datetime.fromtimestamp(ts, zone)
    sign = "+" if offset_minutes >= 0 else "-"
    hours = abs(offset_minutes) // 60
    return when.strftime("%Y-%m-%d %H:%M:%S") + f" UTC{sign}{hours}"


def json_data(value: Any) -> Markup:
    """Data for a page's scripts, safe inside ``<script type="application/json">``."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("computility.server.web", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, number=number, percent=percent, duration=duration,
                       json_data=json_data)
    return env


def page(request: Request, template: str, context: dict[str, Any], status: int = 200,
         lang: str | None = None) -> HTMLResponse:
    """Render `template` with the frame's context: the viewer (``who``, may be None), its
    translator ``t``, the language, the time-zone offset and ``ts`` (a timestamp formatter)."""
    from computility.server.web.session import request_lang

    who = context.get("who")
    lang = lang or (who.lang if who is not None else request_lang(request))
    plane = request.app.state.plane
    offset = int(getattr(plane.base, "utc_offset_minutes", 480))
    ctx = {"request": request, "who": None, "t": translator(lang), "lang": lang,
           "languages": LANGUAGES, "path": request.url.path,
           "query": request.url.query, "currency": plane.currency,
           "ts": functools.partial(timestamp, offset_minutes=offset), **context}
    html = environment().get_template(template).render(ctx)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
