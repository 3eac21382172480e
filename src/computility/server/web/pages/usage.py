"""Usage & bills: a tenant's bill over a period, itemised by site and device, its daily spend,
the same as CSV, and for providers (and operators) what their sites earned.

The bill is the API's (`computility.server.store.billing.usage`), so the page, the CSV, the CLI
and the SDK never disagree; the items and the daily spend are sums over the same ledger rows in
SQL (``ix_ledger_tenant_time`` serves the tenant and the window), never rows read into Python.

Periods are the CLI's ``usage --period`` values (month, day, week, all, ``YYYY-MM``,
``YYYY-MM-DD``), read in the network's own time zone, the one every page shows times in.
"""

from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Integer, cast, func, literal_column, select
from starlette.concurrency import run_in_threadpool

from computility.domain.money import MICRO, to_micro
from computility.server.auth import Identity
from computility.server.db import schema as db
from computility.server.db.engine import is_sqlite
from computility.server.plane import ControlPlane
from computility.server.store import billing
from computility.server.web.pages.tasks import BadQuery, bad_query_page
from computility.server.web.render import SECURITY_HEADERS, page
from computility.server.web.session import PageForbidden, Viewer, viewer

router = APIRouter(include_in_schema=False)

PERIOD_WORDS = ("month", "day", "week", "all")
DAY_S = 86400
MAX_CHART_DAYS = 3660
"""The daily-spend chart shows at most ten years of days (the latest ones)."""
LINES_SHOWN = 200
"""The page shows the largest lines (and sites' earnings) only; the CSV has every line, and the
totals count them all. A tenant may have run on every one of 1,000 sites."""
TENANTS_LISTED = 1000
"""An operator picks a tenant from at most this many (any other can still be typed)."""
CSV_COLUMNS = ("site", "device", "attempts", "cu_hours", "kwh", "carbon_kg", "gb_moved",
               "compute", "energy", "network", "total", "currency")


def period_window(period: str, now: float, offset_minutes: int) -> tuple[float, float] | None:
    """The [since, until) UNIX window of a period value, in the network's time zone (None: not
    a period). An open period ends now."""
    zone = timezone(timedelta(minutes=offset_minutes))
    today = datetime.fromtimestamp(now, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return today.replace(day=1).timestamp(), now
    if period == "day":
        return today.timestamp(), now
    if period == "week":
        return now - 7 * DAY_S, now
    if period == "all":
        return 0.0, now
    try:
        if re.fullmatch(r"\d{4}-\d{2}", period):
            first = datetime.strptime(period, "%Y-%m").replace(tzinfo=zone)
            following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
            return first.timestamp(), following.timestamp()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", period):
            day = datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=zone)
            return day.timestamp(), (day + timedelta(days=1)).timestamp()
    except (ValueError, OverflowError):  # 2026-13, 2026-02-30, 9999-12 (its next month)
        return None
    return None


@dataclass(frozen=True)
class BillQuery:
    """Whose bill over which window, as asked in the query string."""

    tenant: str
    period: str
    since: float
    until: float

    def query(self, own_tenant: str) -> str:
        pairs = [("period", self.period)]
        if self.tenant != own_tenant:
            pairs.append(("tenant", self.tenant))
        return urlencode(pairs)


def _tenant_exists(plane: ControlPlane, tenant: str) -> bool:
    with plane.engine.connect() as conn:
        return conn.execute(select(db.tenants.c.id).where(db.tenants.c.id == tenant)
                            ).first() is not None


def parse_bill_query(request: Request, who: Viewer) -> BillQuery:
    """`BadQuery` for a period or tenant this page does not know; `PageForbidden` for another
    tenant's bill asked by a key that may see only its own."""
    params = request.query_params
    period = str(params.get("period") or "month").strip()
    plane: ControlPlane = request.app.state.plane
    window = period_window(period, time.time(), plane.base.utc_offset_minutes)
    if window is None:
        raise BadQuery("period", who.t("usage.bad.period"), period)
    tenant = str(params.get("tenant") or "").strip() or who.tenant
    if tenant != who.tenant:
        if not who.operator:
            raise PageForbidden()
        if len(tenant) > 64 or not _tenant_exists(plane, tenant):
            raise BadQuery("tenant", who.t("usage.bad.tenant"), tenant)
    return BillQuery(tenant=tenant, period=period, since=window[0], until=window[1])


def _in_window(q: BillQuery) -> list[Any]:
    led = db.ledger.c
    return [led.tenant_id == q.tenant, led.created_at >= q.since, led.created_at < q.until]


def items(plane: ControlPlane, q: BillQuery) -> list[dict[str, Any]]:
    """The bill's lines: one per site and device, money in micro-units."""
    led = db.ledger.c
    query = select(
        led.site_id, led.device, func.count(), func.sum(led.cu_hours), func.sum(led.kwh),
        func.sum(led.carbon_kg), func.sum(led.gb_moved), func.sum(led.compute_micro),
        func.sum(led.energy_micro), func.sum(led.network_micro), func.sum(led.total_micro),
    ).where(*_in_window(q)).group_by(led.site_id, led.device).order_by(led.site_id, led.device)
    keys = ("site", "device", "attempts", "cu_hours", "kwh", "carbon_kg", "gb_moved",
            "compute_micro", "energy_micro", "network_micro", "total_micro")
    with plane.engine.connect() as conn:
        rows = conn.execute(query).all()
    out = []
    for row in rows:
        line = dict(zip(keys, row, strict=True))
        for k in keys[2:]:
            line[k] = int(line[k] or 0) if k == "attempts" or k.endswith("_micro") \
                else float(line[k] or 0.0)
        out.append(line)
    return out


def _sum_items(lines: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("attempts", "cu_hours", "kwh", "carbon_kg", "gb_moved", "compute_micro",
            "energy_micro", "network_micro", "total_micro")
    return {k: sum(line[k] for line in lines) for k in keys}


def daily_spend(plane: ControlPlane, q: BillQuery, offset_minutes: int) -> dict[str, Any]:
    """The chart's spec: the spend of each day of the window (in the network's time zone), in
    currency units; days with none are 0. Days are summed in SQL."""
    led = db.ledger.c
    # Literal numbers, not bound parameters: the expression must read the same in GROUP BY.
    shifted = (led.created_at + literal_column(str(offset_minutes * 60))) / literal_column(
        f"{DAY_S}.0")
    day = cast(shifted, Integer) if is_sqlite(plane.engine) else func.floor(shifted)
    with plane.engine.connect() as conn:
        spent = {int(d): int(micro or 0) for d, micro in conn.execute(
            select(day, func.sum(led.total_micro)).where(*_in_window(q)).group_by(day)).all()}
    offset_s = offset_minutes * 60
    first = int((q.since + offset_s) // DAY_S) if q.since > 0 else min(spent, default=0)
    last = int((min(q.until, time.time()) - 1 + offset_s) // DAY_S)
    if not spent and q.since <= 0:
        first = last
    first = max(first, last - MAX_CHART_DAYS + 1)
    days = range(first, last + 1)
    return {"x": [d * DAY_S - offset_s for d in days],
            "series": [{"label": "", "values": [spent.get(d, 0) / MICRO for d in days],
                        "fill": True}]}


def tenants(plane: ControlPlane) -> list[str]:
    with plane.engine.connect() as conn:
        return list(conn.execute(select(db.tenants.c.id).order_by(db.tenants.c.id)
                                 .limit(TENANTS_LISTED)).scalars())


def bill_data(plane: ControlPlane, who: Identity, q: BillQuery) -> dict[str, Any]:
    """Everything the usage page shows."""
    offset = plane.base.utc_offset_minutes
    bill = billing.usage(plane, who, q.tenant, q.since, q.until)
    lines = items(plane, q)
    earned = billing.earnings(plane, who, q.since, q.until) if who.may_provide() else None
    largest = sorted(lines, key=lambda line: (-line["total_micro"], line["site"]))
    sites_earned = [] if earned is None else sorted(
        earned.sites, key=lambda s: (-s.total, s.site))
    return {
        "bill": bill, "lines": largest[:LINES_SHOWN], "line_total": _sum_items(lines),
        "lines_more": max(0, len(lines) - LINES_SHOWN),
        "earnings_more": max(0, len(sites_earned) - LINES_SHOWN),
        "total_micro": to_micro(bill.total), "compute_micro": to_micro(bill.compute),
        "energy_micro": to_micro(bill.energy), "network_micro": to_micro(bill.network),
        "budget_micro": None if bill.budget is None else to_micro(bill.budget),
        "budget_left_micro": None if bill.budget_left is None else to_micro(bill.budget_left),
        "chart": daily_spend(plane, q, offset),
        "earnings": None if earned is None else [
            {**s.model_dump(), "total_micro": to_micro(s.total)}
            for s in sites_earned[:LINES_SHOWN]],
        "tenants": tenants(plane) if who.operator else [],
    }


def _recent_months(now: float, offset_minutes: int, n: int = 6) -> list[str]:
    zone = timezone(timedelta(minutes=offset_minutes))
    month = datetime.fromtimestamp(now, zone).replace(day=1)
    out = []
    for _ in range(n):
        month = (month - timedelta(days=1)).replace(day=1)
        out.append(month.strftime("%Y-%m"))
    return out


@router.get("/usage", response_class=HTMLResponse)
async def usage(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    plane: ControlPlane = request.app.state.plane
    try:
        q = await run_in_threadpool(parse_bill_query, request, who)
    except BadQuery as error:
        return bad_query_page(request, who, error)
    data = await run_in_threadpool(bill_data, plane, who.who, q)
    data["chart"]["series"][0]["label"] = who.t("usage.chart.spend")
    data["chart"]["unit"] = plane.currency
    return page(request, "usage.html", {
        "who": who, "q": q, "this_query": q.query(who.tenant), "period_words": PERIOD_WORDS,
        "recent_months": _recent_months(time.time(), plane.base.utc_offset_minutes), **data})


def _amount(micro: int) -> str:
    """Micro-units as an exact decimal number of the currency (``1.234567``)."""
    return str(Decimal(micro).scaleb(-6).quantize(Decimal("0.000001")))


def bill_csv(lines: list[dict[str, Any]], currency: str) -> str:
    """The itemised bill as CSV: one row per site and device, then a ``total`` row; money as
    exact decimals, so the rows add up to the total to the micro-unit."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    total = _sum_items(lines)
    for line in [*lines, {**total, "site": "total", "device": ""}]:
        writer.writerow([
            line["site"], line["device"], line["attempts"], f"{line['cu_hours']:.6f}",
            f"{line['kwh']:.6f}", f"{line['carbon_kg']:.6f}", f"{line['gb_moved']:.6f}",
            _amount(line["compute_micro"]), _amount(line["energy_micro"]),
            _amount(line["network_micro"]), _amount(line["total_micro"]), currency])
    return out.getvalue()


@router.get("/usage.csv", response_model=None)
async def usage_csv(request: Request,
                    who: Annotated[Viewer, Depends(viewer)]) -> Response:
    plane: ControlPlane = request.app.state.plane
    try:
        q = await run_in_threadpool(parse_bill_query, request, who)
    except BadQuery as error:
        return bad_query_page(request, who, error)
    lines = await run_in_threadpool(items, plane, q)
    name = f"usage-{q.tenant}-{q.period}.csv"
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    headers = {**SECURITY_HEADERS, "Content-Disposition":
               f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"}
    return Response(bill_csv(lines, plane.currency), media_type="text/csv; charset=utf-8",
                    headers=headers)
