"""Supply and demand (operators only): the network's capacity against the work on it and
waiting for it, utilisation per site and per device type, prices and carbon, over a chosen time
range, refreshed live.

Everything over time comes from the ``samples`` the scheduling leader writes
(`computility.server.sampling`), aggregated in SQL over at most `MAX_POINTS` sampling ticks
picked evenly across the range (fewer on a very large network, so one refresh reads a bounded
number of rows); the figures for now come from the live tables. The charts' fragment is polled
by htmx every 10 s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import case, func, literal_column, select
from starlette.concurrency import run_in_threadpool

from computility.server.db import schema as db
from computility.server.plane import ControlPlane
from computility.server.sampling import PoolNow, points_for, pools_now, tick_times
from computility.server.web.render import page
from computility.server.web.session import Viewer, require_operator, viewer

router = APIRouter(include_in_schema=False)

RANGES = {"1h": 3600.0, "6h": 6 * 3600.0, "24h": 24 * 3600.0, "7d": 7 * 86400.0}
"""The time ranges a viewer may choose, by their query value."""
DEFAULT_RANGE = "24h"
DEVICE_SERIES = 6
"""Device types drawn in the utilisation chart: the largest by capacity (all are in the
table)."""
SITE_TICKS = 24
"""Ticks a site's mean utilisation over the range is read from (of the charts' ticks, evenly):
one figure per site needs fewer instants than a curve, and a thousand sites read fewer rows."""
SITE_ROWS = 50
"""Sites listed in the utilisation table, busiest first."""


def _online(column: Any) -> Any:
    """`column` where the pool's site was online at the tick, else 0: offline capacity is no
    supply."""
    return case((db.samples.c.online.is_(True), column), else_=0.0)


def _share(busy: float, capacity: float) -> float | None:
    return busy / capacity if capacity > 0 else None


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100.0 * share, 2)


def _history(conn: Any, ticks: list[float]) -> list[Any]:
    """Per tick and device type: online capacity, busy, queued, and capacity-weighted sums of
    price, electricity price and carbon intensity (divided into means by the caller)."""
    s = db.samples
    cap = _online(s.c.capacity_cu)
    return list(conn.execute(
        select(s.c.at, s.c.device, func.sum(cap).label("cap"), func.sum(s.c.busy_cu).label("busy"),
               func.sum(s.c.queued_cu).label("queued"),
               func.sum(s.c.queued_tasks).label("tasks"),
               func.sum(_online(s.c.price_micro_per_cu_hour * s.c.capacity_cu)).label("price"),
               func.sum(_online(s.c.electricity_price_micro * s.c.capacity_cu)).label("elec"),
               func.sum(_online(s.c.carbon_kg_per_kwh * s.c.capacity_cu)).label("carbon"))
        .where(s.c.at.in_(ticks)).group_by(s.c.at, s.c.device).order_by(s.c.at)))


def _per_site(conn: Any, ticks: list[float]) -> dict[str, float | None]:
    """Each site's utilisation over the ticks: busy CU over online capacity, summed."""
    s = db.samples
    rows = conn.execute(
        select(s.c.site_id, func.sum(s.c.busy_cu), func.sum(_online(s.c.capacity_cu)))
        .where(s.c.at.in_(ticks)).group_by(s.c.site_id))
    return {site: _share(float(busy or 0), float(cap or 0)) for site, busy, cap in rows}


@dataclass
class Series:
    """The history as columns, one entry per tick: network totals and per device type."""

    x: list[float]
    total: dict[str, list[float]]
    dev_busy: dict[str, list[float]]
    dev_cap: dict[str, list[float]]

    @classmethod
    def of(cls, history: list[Any]) -> Series:
        x = sorted({float(r.at) for r in history})
        col = {at: i for i, at in enumerate(x)}
        n = len(x)
        total = {k: [0.0] * n for k in ("cap", "busy", "queued", "tasks", "price", "elec",
                                        "carbon")}
        dev_busy: dict[str, list[float]] = {}
        dev_cap: dict[str, list[float]] = {}
        for r in history:
            i = col[float(r.at)]
            for k in total:
                total[k][i] += float(getattr(r, k) or 0.0)
            dev_busy.setdefault(r.device, [0.0] * n)[i] += float(r.busy or 0.0)
            dev_cap.setdefault(r.device, [0.0] * n)[i] += float(r.cap or 0.0)
        return cls(x, total, dev_busy, dev_cap)

    def mean(self, key: str, scale: float) -> list[float | None]:
        """A capacity-weighted mean per tick (None where nothing was online)."""
        return [None if not c else round(self.total[key][i] / c / scale, 6)
                for i, c in enumerate(self.total["cap"])]

    def rounded(self, key: str) -> list[float]:
        return [round(v, 3) for v in self.total[key]]

    def device_share(self, device: str) -> list[float | None]:
        n = len(self.x)
        return [_percent(_share(b, c)) for b, c in zip(
            self.dev_busy.get(device, [0.0] * n), self.dev_cap.get(device, [0.0] * n),
            strict=True)]

    def device_mean(self, device: str) -> float | None:
        return _share(sum(self.dev_busy.get(device, [])), sum(self.dev_cap.get(device, [])))


def _present(pools: list[PoolNow], pending: int) -> dict[str, Any]:
    online = [p for p in pools if p.online]
    now: dict[str, Any] = {
        "capacity": sum(p.capacity_cu for p in online), "busy": sum(p.busy_cu for p in pools),
        "queued_cu": sum(p.queued_cu for p in pools),
        "queued": sum(p.queued_tasks for p in pools), "pending": pending,
        "sites_online": len({p.site_id for p in online}),
        "sites": len({p.site_id for p in pools})}
    now["share"] = _share(now["busy"], now["capacity"])
    return now


def _devices(pools: list[PoolNow], series: Series) -> list[dict[str, Any]]:
    """Device types by online capacity now, largest first, with their utilisation now and
    over the range."""
    now: dict[str, dict[str, float]] = {}
    for p in pools:
        d = now.setdefault(p.device, {"cap": 0.0, "busy": 0.0})
        d["cap"] += p.capacity_cu if p.online else 0.0
        d["busy"] += p.busy_cu
    return [{"device": d, **now[d], "share": _share(now[d]["busy"], now[d]["cap"]),
             "mean": series.device_mean(d)}
            for d in sorted(now, key=lambda d: (-now[d]["cap"], d))]


def _sites(pools: list[PoolNow], mean: dict[str, float | None], regions: dict[str, str],
           names: dict[str, str]) -> list[dict[str, Any]]:
    """Every site with its utilisation now and over the range, busiest over the range first."""
    now: dict[str, dict[str, float]] = {}
    for p in pools:
        s = now.setdefault(p.site_id, {"cap": 0.0, "busy": 0.0, "tasks": 0.0})
        s["cap"] += p.capacity_cu
        s["busy"] += p.busy_cu
        s["tasks"] += p.queued_tasks
    rows: list[dict[str, Any]] = [
        {"id": sid, "region": names.get(regions.get(sid, ""), regions.get(sid, "")),
         "cap": s["cap"], "share": _share(s["busy"], s["cap"]), "mean": mean.get(sid),
         "tasks": int(s["tasks"])} for sid, s in now.items()]
    rows.sort(key=lambda r: (-(r["mean"] if r["mean"] is not None else -1.0),
                             -(r["share"] or 0.0), r["id"]))
    return rows


def supply_view(plane: ControlPlane, v: Viewer, span: str) -> dict[str, Any]:
    until = time.time()
    with plane.engine.connect() as conn:
        pools = pools_now(conn)
        pending = int(conn.execute(select(func.count()).select_from(db.tasks).where(
            db.tasks.c.state.in_([literal_column("'pending'"), literal_column("'held'")]))
        ).scalar() or 0)
        ticks = tick_times(conn, until - RANGES[span], until, points_for(conn))
        series = Series.of(_history(conn, ticks) if ticks else [])
        every = max(1, -(-len(ticks) // SITE_TICKS))
        site_mean = _per_site(conn, ticks[::every]) if ticks else {}
        regions = dict(conn.execute(select(db.sites.c.id, db.sites.c.region)).all())
    t = v.t
    devices = _devices(pools, series)
    sites = _sites(pools, site_mean, regions, {r.id: r.name for r in plane.base.regions})
    x = series.x
    charts = {
        "capacity": {"x": x, "unit": "CU", "series": [
            {"label": t("supply.series.capacity"), "values": series.rounded("cap")},
            {"label": t("supply.series.busy"), "values": series.rounded("busy"), "fill": True},
            {"label": t("supply.series.queued"), "values": series.rounded("queued")}]},
        "queue": {"x": x, "unit": t("supply.unit_tasks"), "series": [
            {"label": t("supply.series.queued_tasks"),
             "values": [int(c) for c in series.total["tasks"]]}]},
        "devices": {"x": x, "unit": "%", "series": [
            {"label": d["device"], "values": series.device_share(d["device"])}
            for d in devices[:DEVICE_SERIES]]},
        "prices": {"x": x, "unit": plane.currency, "series": [
            {"label": t("supply.series.price"), "values": series.mean("price", 1e6)},
            {"label": t("supply.series.electricity"), "values": series.mean("elec", 1e6)}]},
        "carbon": {"x": x, "unit": "kgCO2e/kWh", "series": [
            {"label": t("supply.series.carbon"), "values": series.mean("carbon", 1.0)}]},
    }
    return {"range": span, "ranges": list(RANGES), "now": _present(pools, pending),
            "charts": charts, "points": len(x), "devices": devices, "sites": sites[:SITE_ROWS],
            "more_sites": max(0, len(sites) - SITE_ROWS), "updated": until}


def _bad_range(request: Request, who: Viewer, value: str, template: str) -> HTMLResponse:
    message = who.t("supply.bad_range", value=value[:40], allowed=", ".join(RANGES))
    return page(request, template, {"who": who, "error": message, "range": DEFAULT_RANGE,
                                    "ranges": list(RANGES)}, status=400)


RangeParam = Annotated[str, Query(alias="range")]


@router.get("/supply", response_class=HTMLResponse)
async def supply(request: Request, who: Annotated[Viewer, Depends(viewer)],
                 span: RangeParam = DEFAULT_RANGE) -> HTMLResponse:
    require_operator(who)
    if span not in RANGES:
        return _bad_range(request, who, span, "supply.html")
    view = await run_in_threadpool(supply_view, request.app.state.plane, who, span)
    return page(request, "supply.html", {"who": who, "error": None, **view})


@router.get("/supply/charts", response_class=HTMLResponse)
async def supply_charts(request: Request, who: Annotated[Viewer, Depends(viewer)],
                        span: RangeParam = DEFAULT_RANGE) -> HTMLResponse:
    """The live part of the page, polled by htmx."""
    require_operator(who)
    if span not in RANGES:
        return _bad_range(request, who, span, "_supply_error.html")
    view = await run_in_threadpool(supply_view, request.app.state.plane, who, span)
    return page(request, "_supply_charts.html", {"who": who, **view})
