"""The network page (every site the viewer may see, on a schematic map and in a table) and each
site's own page (its pools, queue, load over time, prices and power).

What a viewer sees is what `computility.server.store.sites.list_sites` lets it see: operators
every site, providers their own, users the sites their tenant may use. Load is read with two
grouped counts over the rows holding work (`computility.server.sampling.pools_now`), never one
query per site, so the page stays fast at a thousand sites and a hundred thousand tasks.

The map is a schematic longitude/latitude canvas drawn on the server as inline SVG (an official
map would need an approval number, so no borders are drawn): a light grid with labelled degrees,
the regions joined by their links, and each site a circle whose area follows its capacity and
whose colour its busy share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, literal_column, select
from starlette.concurrency import run_in_threadpool

from computility.domain.network import Link, Network
from computility.server.db import schema as db
from computility.server.plane import ControlPlane
from computility.server.sampling import (
    PoolNow,
    curve_at,
    local_day_start,
    pools_now,
    tick_times,
)
from computility.server.store.sites import list_sites
from computility.server.web.render import page
from computility.server.web.session import Viewer, viewer
from computility.wire.api import SiteOut

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100
"""Sites per page of the table (the map shows them all)."""
LATEST_TASKS = 20
"""Tasks listed on a site's page for its owner or an operator."""
SITE_HISTORY_S = 24 * 3600.0
LABEL_SITES_UP_TO = 30
"""Sites are named on the map when there are at most this many; beyond, the regions are (every
circle keeps its tooltip and link)."""

LINKS_PER_REGION = 3
"""Links drawn from each region on the map: its fastest (every link is in the model)."""

GOLDEN_ANGLE = math.pi * (3 - math.sqrt(5))
"""Successive sites at one spot turn by this angle: an even sunflower, never a spiral arm."""

GREEN, AMBER, RED = (0x1A, 0x7F, 0x37), (0xE0, 0x9B, 0x00), (0xC6, 0x28, 0x28)


def load_colour(share: float) -> str:
    """Green (idle) through amber (half busy) to red (full), as ``#rrggbb``."""
    share = min(max(share, 0.0), 1.0)
    a, b, f = (GREEN, AMBER, share * 2) if share <= 0.5 else (AMBER, RED, share * 2 - 1)
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class SiteSummary:
    """One row of the sites table and one circle of the map."""

    id: str
    owner: str
    region: str
    region_name: str
    online: bool
    last_seen_at: float | None
    lat: float
    lon: float
    devices: list[tuple[str, int]]
    capacity_cu: float
    busy_cu: float
    queued_tasks: int
    running: int
    price_min: int | None
    price_max: int | None

    @property
    def busy_share(self) -> float:
        return self.busy_cu / self.capacity_cu if self.capacity_cu > 0 else 0.0


def summarise(sites: Sequence[SiteOut], pools: Sequence[PoolNow],
              where: dict[str, tuple[float, float]], base: Network) -> list[SiteSummary]:
    by_site: dict[str, list[PoolNow]] = {}
    for p in pools:
        by_site.setdefault(p.site_id, []).append(p)
    names = {r.id: r.name for r in base.regions}
    out = []
    for s in sites:
        own = by_site.get(s.id, [])
        prices = [p.price_micro for p in own]
        lat, lon = where.get(s.id, (0.0, 0.0))
        out.append(SiteSummary(
            id=s.id, owner=s.owner, region=s.region, region_name=names.get(s.region, s.region),
            online=s.online, last_seen_at=s.last_seen_at, lat=lat, lon=lon,
            devices=[(p.device, p.count) for p in own],
            capacity_cu=sum(p.capacity_cu for p in own), busy_cu=sum(p.busy_cu for p in own),
            queued_tasks=sum(p.queued_tasks for p in own), running=sum(p.running for p in own),
            price_min=min(prices) if prices else None, price_max=max(prices) if prices else None,
        ))
    return out


# --------------------------------------------------------------------------- the map


def _grid_step(span: float) -> float:
    for step in (1.0, 2.0, 5.0, 10.0, 20.0, 30.0):
        if span / step <= 8:
            return step
    return 45.0


def _nearest_links(base: Network, shown: set[str]) -> list[Link]:
    """Each shown region's `LINKS_PER_REGION` lowest-latency links to other shown regions: the
    network's backbone, without the full mesh of every pair that hides the sites."""
    out: list[Link] = []
    for region in sorted(shown):
        own = sorted((k for k in base.links if k.src == region and k.dst in shown),
                     key=lambda k: (k.latency_ms, k.dst))
        out.extend(own[:LINKS_PER_REGION])
    return out


@dataclass(frozen=True)
class Frame:
    """The projection: degrees to SVG user units (longitudes shortened by the cosine of the
    middle latitude, so shapes are not stretched), and the margin around the canvas that
    crowded spots spill into."""

    west: float
    north: float
    lon_span: float
    lat_span: float
    squash: float
    scale: float
    margin: float

    @classmethod
    def around(cls, lats: list[float], lons: list[float], east_room: float,
               margin: float) -> Frame:
        mid_lat, mid_lon = (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2
        lat_span = max(max(lats) - min(lats) + 3.0, 6.0)
        lon_span = max(max(lons) - min(lons) + 3.0, 8.0)
        squash = max(math.cos(math.radians(mid_lat)), 0.2)
        west, north = mid_lon - lon_span / 2, mid_lat + lat_span / 2
        lon_span += east_room
        scale = min(1000.0 / (lon_span * squash), 640.0 / lat_span)
        return cls(west, north, lon_span, lat_span, squash, scale, margin)

    @property
    def width(self) -> float:
        return self.lon_span * self.squash * self.scale

    @property
    def height(self) -> float:
        return self.lat_span * self.scale

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (round((lon - self.west) * self.squash * self.scale, 1),
                round((self.north - lat) * self.scale, 1))

    def grid(self) -> list[dict[str, Any]]:
        """Meridians and parallels every few degrees, each with its label."""
        m, lines = self.margin, []
        step = _grid_step(max(self.lat_span, self.lon_span))
        lon = math.ceil((self.west - m / self.scale / self.squash) / step) * step
        while lon < self.west + self.lon_span:
            x, _ = self.xy(self.north, lon)
            lines.append({"x1": x, "y1": -m, "x2": x, "y2": round(self.height + m, 1),
                          "lx": x + 3, "ly": 12 - m, "deg": abs(round(lon)),
                          "axis": "E" if lon >= 0 else "W"})
            lon += step
        lat = math.ceil((self.north - self.lat_span - m / self.scale) / step) * step
        while lat < self.north + m / self.scale:
            _, y = self.xy(lat, self.west)
            lines.append({"x1": -m, "y1": y, "x2": round(self.width + m, 1), "y2": y,
                          "lx": 3 - m, "ly": y - 3, "deg": abs(round(lat)),
                          "axis": "N" if lat >= 0 else "S"})
            lat += step
        return lines


def _spread(crowd: int) -> tuple[float, float, float]:
    """(spacing, smallest radius, largest radius) of circles when `crowd` sites share a spot:
    a few sites get large circles; a hundred in one region shrink so the region stays a
    readable cluster."""
    if crowd <= 4:
        return 9.0, 4.0, 20.0
    spacing = max(2.5, 60.0 / math.sqrt(crowd))
    largest = max(3.0, spacing * 0.9)
    return spacing, min(4.0, largest / 2.5), largest


def build_map(base: Network, sites: Sequence[SiteSummary], regions_with_sites: set[str]
              ) -> dict[str, Any]:
    """The map's geometry in SVG user units: grid lines with degree labels, region links,
    regions and site circles (area by capacity, colour by load; sites at one spot spread in a
    sunflower around it, the largest in the middle)."""
    regions = [r for r in base.regions if r.id in regions_with_sites] or list(base.regions)
    spots: dict[tuple[float, float], int] = {}
    for s in sites:
        spots[(s.lat, s.lon)] = spots.get((s.lat, s.lon), 0) + 1
    crowd = max(spots.values(), default=1)
    spacing, smallest, largest = _spread(crowd)
    labelled = len(sites) <= LABEL_SITES_UP_TO
    frame = Frame.around([r.lat for r in regions] + [s.lat for s in sites],
                         [r.lon for r in regions] + [s.lon for s in sites],
                         2.0 if labelled else 0.0,  # room east of the last site for its name
                         round(spacing * math.sqrt(max(crowd - 1, 0)) + largest + 2, 1))
    at = {r.id: frame.xy(r.lat, r.lon) for r in regions}
    links = []
    seen: set[tuple[str, str]] = set()
    fastest = min((k.latency_ms for k in base.links), default=1.0) or 1.0
    for link in _nearest_links(base, set(at)):
        pair = (min(link.src, link.dst), max(link.src, link.dst))
        if pair in seen:
            continue
        seen.add(pair)
        (x1, y1), (x2, y2) = at[link.src], at[link.dst]
        links.append({"x1": x1, "y1": y1, "x2": x2, "y2": y2, "src": link.src,
                      "dst": link.dst, "latency_ms": link.latency_ms,
                      "gbps": link.bandwidth_gbps,
                      "opacity": round(0.15 + 0.5 * fastest / max(link.latency_ms, fastest), 2)})
    biggest = max((s.capacity_cu for s in sites), default=0.0) or 1.0
    placed: dict[tuple[float, float], int] = {}
    circles = []
    for s in sorted(sites, key=lambda s: (-s.capacity_cu, s.id)):
        x, y = frame.xy(s.lat, s.lon)
        k = placed.get((x, y), 0)
        placed[(x, y)] = k + 1
        if k:
            x = round(x + spacing * math.sqrt(k) * math.cos(k * GOLDEN_ANGLE), 1)
            y = round(y + spacing * math.sqrt(k) * math.sin(k * GOLDEN_ANGLE), 1)
        r = smallest + (largest - smallest) * math.sqrt(max(s.capacity_cu, 0.0) / biggest)
        circles.append({"site": s, "x": x, "y": y, "r": round(r, 1),
                        "colour": load_colour(s.busy_share) if s.online else "#9aa3ad"})
    m = frame.margin
    return {"view": f"{-m} {-m} {round(frame.width + 2 * m, 1)} {round(frame.height + 2 * m, 1)}",
            "grid": frame.grid(), "links": links, "label_sites": labelled,
            "regions": [{"id": r.id, "name": r.name, "x": at[r.id][0], "y": at[r.id][1]}
                        for r in regions],
            "circles": circles}


# --------------------------------------------------------------------------- reading


def _places(conn: Any, ids: set[str]) -> dict[str, tuple[float, float]]:
    s = db.sites
    return {r.id: (float(r.lat), float(r.lon))
            for r in conn.execute(select(s.c.id, s.c.lat, s.c.lon)) if r.id in ids}


def network_view(plane: ControlPlane, v: Viewer, after: str | None) -> dict[str, Any]:
    sites = list_sites(plane, v.who)
    ids = {s.id for s in sites}
    with plane.engine.connect() as conn:
        pools = [p for p in pools_now(conn) if p.site_id in ids]
        where = _places(conn, ids)
    summary = summarise(sites, pools, where, plane.base)
    online = [s for s in summary if s.online]
    totals = {"sites": len(summary), "online": len(online),
              "capacity_cu": sum(s.capacity_cu for s in online),
              "busy_cu": sum(s.busy_cu for s in summary),
              "queued": sum(s.queued_tasks for s in summary),
              "running": sum(s.running for s in summary)}
    totals["busy_share"] = (totals["busy_cu"] / totals["capacity_cu"]
                            if totals["capacity_cu"] else 0.0)
    rows = [s for s in summary if after is None or s.id > after]
    return {"totals": totals, "map": build_map(plane.base, summary, {s.region for s in summary}),
            "rows": rows[:PAGE_SIZE], "next_after": rows[PAGE_SIZE - 1].id
            if len(rows) > PAGE_SIZE else None, "after": after}


@router.get("/", response_class=HTMLResponse)
async def network(request: Request, who: Annotated[Viewer, Depends(viewer)],
                  after: str | None = None) -> HTMLResponse:
    view = await run_in_threadpool(network_view, request.app.state.plane, who, after or None)
    return page(request, "network.html", {"who": who, **view})


# --------------------------------------------------------------------------- one site


def _latest_tasks(conn: Any, site_id: str) -> list[dict[str, Any]]:
    """The latest tasks queued, leased or running on the site: the queued ones by the partial
    index, the others through their active attempts (indexed by site and state)."""
    t, a = db.tasks, db.attempts
    cols = (t.c.id, t.c.tenant_id, t.c.name, t.c.state, t.c.pool_id, t.c.cu, t.c.updated_at)
    queued = conn.execute(select(*cols).where(
        t.c.state == literal_column("'queued'"), t.c.site_id == site_id)
        .order_by(t.c.id.desc()).limit(LATEST_TASKS)).mappings().all()
    active = conn.execute(select(*cols[:4], a.c.pool_id, t.c.cu, t.c.updated_at)
                          .join(a, a.c.task_id == t.c.id).where(
        a.c.site_id == site_id,
        a.c.state.in_([literal_column("'leased'"), literal_column("'running'")]))
        .order_by(t.c.id.desc()).limit(LATEST_TASKS)).mappings().all()
    both = sorted([dict(r) for r in (*queued, *active)], key=lambda r: -r["id"])
    return both[:LATEST_TASKS]


def _attempt_states(conn: Any, site_id: str) -> dict[str, int]:
    a = db.attempts
    return {state: int(n) for state, n in conn.execute(
        select(a.c.state, func.count()).where(
            a.c.site_id == site_id,
            a.c.state.in_([literal_column("'leased'"), literal_column("'running'")]))
        .group_by(a.c.state))}


def _history(conn: Any, site_id: str, until: float) -> dict[str, Any]:
    """The site's capacity, busy and queued CU over the last day, one point per tick picked."""
    s = db.samples
    ticks = tick_times(conn, until - SITE_HISTORY_S, until, site_id=site_id)
    x: list[float] = []
    series: dict[str, list[float]] = {"capacity": [], "busy": [], "queued": []}
    if ticks:
        rows = conn.execute(select(s.c.at, s.c.online, s.c.capacity_cu, s.c.busy_cu,
                                   s.c.queued_cu).where(s.c.site_id == site_id,
                                                        s.c.at.in_(ticks))).all()
        at_of: dict[float, list[float]] = {}
        for at, online, cap, busy, queued in rows:
            acc = at_of.setdefault(float(at), [0.0, 0.0, 0.0])
            acc[0] += cap if online else 0.0
            acc[1] += busy
            acc[2] += queued
        for at in sorted(at_of):
            x.append(at)
            for name, value in zip(series, at_of[at], strict=True):
                series[name].append(round(value, 3))
    return {"x": x, "series": series}


def site_view(plane: ControlPlane, v: Viewer, site_id: str) -> dict[str, Any] | None:
    found = list_sites(plane, v.who, site_id)
    if not found:
        return None
    site = found[0]
    s = db.sites
    clock = plane.now()
    offset = plane.base.utc_offset_minutes
    with plane.engine.connect() as conn:
        row = conn.execute(select(s.c.lat, s.c.lon, s.c.pue, s.c.electricity_price_micro,
                                  s.c.carbon_kg_per_kwh, s.c.electricity_curve,
                                  s.c.carbon_curve, s.c.backend).where(s.c.id == site_id)).one()
        pools = pools_now(conn, [site_id])
        states = _attempt_states(conn, site_id)
        owner = v.operator or (v.role == "provider" and v.tenant == site.owner)
        latest = _latest_tasks(conn, site_id) if owner else []
        history = _history(conn, site_id, time.time())
    for task in latest:
        # A provider sees that its site runs other tenants' work, not what that work is called
        # (the API never shows a provider key another tenant's tasks either).
        task["foreign"] = not v.operator and task["tenant_id"] != v.tenant
        if task["foreign"]:
            task["name"] = None
    summary = summarise([site], pools, {site_id: (row.lat, row.lon)}, plane.base)[0]
    day = local_day_start(clock, offset)
    elec_day = curve_at(row.electricity_curve, row.electricity_price_micro, day, offset, 24)
    carbon_day = curve_at(row.carbon_curve, row.carbon_kg_per_kwh, day, offset, 24)
    elec_now = curve_at(row.electricity_curve, row.electricity_price_micro, clock, offset)[0]
    carbon_now = curve_at(row.carbon_curve, row.carbon_kg_per_kwh, clock, offset)[0]
    hour = int((clock - day) // 3600)
    free = {p.id: p.free for p in site.pools}
    return {
        "site": site, "summary": summary, "pools": pools, "free": free, "pue": row.pue,
        "backend": row.backend, "queue": {"queued": summary.queued_tasks,
                                          "leased": states.get("leased", 0),
                                          "running": states.get("running", 0)},
        "owner_view": owner, "latest": latest, "show_tenant": v.operator,
        "elec_now": elec_now, "carbon_now": carbon_now, "hour": hour,
        "load_chart": {"x": history["x"], "unit": "CU", "series": [
            {"label": v.t(f"site.series.{k}"), "values": vals}
            for k, vals in history["series"].items()]},
        "elec_chart": {"x": list(range(24)), "time": False, "unit": f"{plane.currency}/kWh",
                       "series": [{"label": v.t("site.electricity"),
                                   "values": [round(e / 1e6, 4) for e in elec_day]}]},
        "carbon_chart": {"x": list(range(24)), "time": False, "unit": "kgCO2e/kWh",
                         "series": [{"label": v.t("site.carbon"),
                                     "values": [round(c, 4) for c in carbon_day]}]},
    }


@router.get("/sites/{site_id}", response_class=HTMLResponse)
async def site_page(request: Request, site_id: str,
                    who: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    view = await run_in_threadpool(site_view, request.app.state.plane, who, site_id)
    if view is None:
        return page(request, "error.html", {"who": who, "kind": "not_found"}, status=404)
    return page(request, "site.html", {"who": who, **view})
