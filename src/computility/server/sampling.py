"""Supply and demand over time: what every pool offers and carries, sampled for the dashboard.

The live tables hold only the present (a pool's devices, the tasks on it now), so the scheduling
leader writes one ``samples`` row per pool every `Settings.sample_s` seconds (`maybe_sample`,
called by the scheduling loop after a cycle, never inside one): its capacity, the work leased or
running on it and queued for it (in CU), its price, and its site's electricity price and carbon
intensity at that hour, read from the site's hourly curves on the scheduling clock as the cost
model reads them. Samples
older than `KEEP_S` are deleted as new ones are written.

The present is read the same way by the pages (`pool_loads`, `pools_now`): two grouped counts
over the rows that hold work (active attempts by ``state``, queued tasks by the partial index),
never a pass over every task.

History is read as instants (`tick_times`): for a chart of ``n`` points, ``n`` ticks spread over
the range (each the first at least ``range / n`` after the one before), found by a loose index
scan (one index probe per point), then only those ticks' rows are aggregated. A chart's cost
is thus bounded by its points times the pools, however long the history is, and every point
is a true state of the network (as a metrics system's range query evaluates instants at a
step), not an average that hides a full hour.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, func, insert, literal_column, select, text

from computility.domain.devices import default_catalogue
from computility.domain.errors import UnknownDeviceType
from computility.domain.network import hour_index
from computility.domain.site import MILLI
from computility.server.db import schema as db
from computility.server.live import EPOCH, cost_time
from computility.server.plane import ControlPlane

log = logging.getLogger("computility.sampling")

KEEP_S = 30 * 86400.0
"""Samples are kept for 30 days: the longest range a chart shows is a week."""
MAX_POINTS = 300
"""A chart's series have at most this many points: more than a screen's width shows nothing
more."""

_last_sample: weakref.WeakKeyDictionary[ControlPlane, float] = weakref.WeakKeyDictionary()
"""When each plane (this process's) last sampled; read from the table on its first tick, so a
new leader does not sample again a tick its predecessor wrote."""


# --------------------------------------------------------------------------- the present


@dataclass(frozen=True, slots=True)
class PoolLoad:
    """The work on one pool now: attempts holding devices and tasks queued for it."""

    running: int = 0
    """Attempts leased or running."""
    busy_units: int = 0
    queued: int = 0
    queued_units: int = 0


@dataclass(frozen=True, slots=True)
class PoolNow:
    """One pool as the pages and the sampler see it: its size, load and price, in CU."""

    site_id: str
    pool_id: str
    device: str
    count: int
    capacity_cu: float
    busy_cu: float
    queued_cu: float
    queued_tasks: int
    running: int
    price_micro: int
    online: bool

    @property
    def busy_share(self) -> float:
        return self.busy_cu / self.capacity_cu if self.capacity_cu > 0 else 0.0


def cu_per_unit(device: str) -> tuple[float, float]:
    """(CU of one scheduling unit, CU of one device) of a catalogue device: a unit is a core of
    a CPU, a thousandth of an accelerator. An unknown id (a catalogue that shrank) counts 0."""
    try:
        kind = default_catalogue().get(device)
    except UnknownDeviceType:
        return 0.0, 0.0
    return (kind.cu / MILLI if kind.is_accelerator else kind.cu), kind.cu


def pool_loads(conn: Connection, site_id: str | None = None) -> dict[tuple[str, str], PoolLoad]:
    """The work on every pool (or one site's) now, by (site, pool): two grouped reads over the
    indexed rows that hold work: active attempts by ``(state, ...)`` (or ``(site_id, state)``
    for one site), queued tasks by their partial index. States are literals, so the partial
    index applies whatever the driver does with parameters; on SQLite, whose statistics cannot
    tell that few of a long history's attempts are active, the state index is named."""
    hint = (" INDEXED BY ix_attempts_state_expiry"
            if site_id is None and conn.dialect.name == "sqlite" else "")
    where = " AND site_id = :site" if site_id is not None else ""
    active = text(f"SELECT site_id, pool_id, count(*), sum(units) FROM attempts{hint} "
                  f"WHERE state IN ('leased', 'running'){where} GROUP BY site_id, pool_id")
    t = db.tasks
    queued = select(t.c.site_id, t.c.pool_id, func.count(), func.sum(t.c.units)).where(
        t.c.state == literal_column("'queued'"))
    if site_id is not None:
        queued = queued.where(t.c.site_id == site_id)
    out: dict[tuple[str, str], PoolLoad] = {}
    params = {"site": site_id} if site_id is not None else {}
    for site, pool, n, units in conn.execute(active, params):
        out[(site, pool)] = PoolLoad(running=int(n), busy_units=int(units or 0))
    for site, pool, n, units in conn.execute(queued.group_by(t.c.site_id, t.c.pool_id)):
        if site is None or pool is None:
            continue
        got = out.get((site, pool), PoolLoad())
        out[(site, pool)] = PoolLoad(got.running, got.busy_units, int(n), int(units or 0))
    return out


def pools_now(conn: Connection, site_ids: Sequence[str] | None = None) -> list[PoolNow]:
    """Every pool (of `site_ids` only, when given) with its load now, in site and pool order."""
    p, s = db.pools, db.sites
    query = (select(p.c.site_id, p.c.pool_id, p.c.device, p.c.count,
                    p.c.price_micro_per_cu_hour, s.c.online)
             .join(s, s.c.id == p.c.site_id).order_by(p.c.site_id, p.c.position))
    one = site_ids[0] if site_ids is not None and len(site_ids) == 1 else None
    if one is not None:
        query = query.where(p.c.site_id == one)
    wanted = None if site_ids is None or one is not None else frozenset(site_ids)
    loads = pool_loads(conn, one)
    out: list[PoolNow] = []
    for site, pool, device, count, price, online in conn.execute(query):
        if wanted is not None and site not in wanted:
            continue
        unit_cu, device_cu = cu_per_unit(device)
        load = loads.get((site, pool), PoolLoad())
        out.append(PoolNow(
            site_id=site, pool_id=pool, device=device, count=int(count),
            capacity_cu=count * device_cu, busy_cu=load.busy_units * unit_cu,
            queued_cu=load.queued_units * unit_cu, queued_tasks=load.queued,
            running=load.running, price_micro=int(price), online=bool(online)))
    return out


# --------------------------------------------------------------------------- power curves


def curve_at(curve: Sequence[float] | None, flat: float, at: float,
             utc_offset_minutes: int, hours: int = 1) -> list[float]:
    """A site's hourly curve (None: flat at `flat`) for `hours` hours from the hour `at` (UNIX
    seconds) falls in, read as the cost model reads it (local time, 24 or 8760 values)."""
    if not curve:
        return [float(flat)] * hours
    steps = cost_time(at) + 3600.0 * np.arange(hours)
    index = hour_index(EPOCH, steps, len(curve), utc_offset_minutes)
    return [float(curve[int(i)]) for i in index]


def local_day_start(at: float, utc_offset_minutes: int) -> float:
    """The UNIX time of local midnight (in the network's time zone) of the day `at` is in."""
    local = at + utc_offset_minutes * 60.0
    return at - (local % 86400.0)


# --------------------------------------------------------------------------- sampling


def maybe_sample(plane: ControlPlane, now: float) -> int:
    """Sample every pool if `Settings.sample_s` has passed since the last tick; the rows
    written. Called by the leader's housekeeping: a failure is logged, never raised, so that
    scheduling goes on whatever happens to the charts."""
    try:
        last = _last_sample.get(plane)
        if last is None:
            with plane.engine.connect() as conn:
                last = float(conn.execute(select(func.max(db.samples.c.at))).scalar() or 0.0)
        # A last tick in the future (the clock was set back) is no reason to stop sampling.
        if now - last < plane.settings.sample_s and now >= last:
            _last_sample[plane] = last
            return 0
        _last_sample[plane] = now
        return sample(plane, now)
    except Exception:
        log.exception("sampling failed")
        return 0


def sample(plane: ControlPlane, at: float) -> int:
    """Write one row per pool for the tick `at` (one INSERT of all rows) and delete the samples
    older than `KEEP_S`; the rows written."""
    clock = plane.now()
    offset = plane.base.utc_offset_minutes
    with plane.engine.connect() as conn:
        pools = pools_now(conn)
        power = {r.id: r for r in conn.execute(
            select(db.sites.c.id, db.sites.c.electricity_price_micro,
                   db.sites.c.carbon_kg_per_kwh, db.sites.c.electricity_curve,
                   db.sites.c.carbon_curve)).all()}
    now_power: dict[str, tuple[int, float]] = {}
    for site_id, r in power.items():
        elec = curve_at(r.electricity_curve, r.electricity_price_micro, clock, offset)[0]
        carbon = curve_at(r.carbon_curve, r.carbon_kg_per_kwh, clock, offset)[0]
        now_power[site_id] = (round(elec), carbon)
    rows = [{
        "at": at, "site_id": p.site_id, "pool_id": p.pool_id, "device": p.device,
        "capacity_cu": p.capacity_cu, "busy_cu": p.busy_cu, "queued_cu": p.queued_cu,
        "queued_tasks": p.queued_tasks, "price_micro_per_cu_hour": p.price_micro,
        "electricity_price_micro": now_power.get(p.site_id, (0, 0.0))[0],
        "carbon_kg_per_kwh": now_power.get(p.site_id, (0, 0.0))[1], "online": p.online,
    } for p in pools]
    with plane.write() as conn:
        if rows:
            conn.execute(insert(db.samples), rows)
        conn.execute(delete(db.samples).where(db.samples.c.at < at - KEEP_S))
    return len(rows)


# --------------------------------------------------------------------------- history

_TICKS_SQL = (
    "WITH RECURSIVE ticks(at) AS ("
    " SELECT MIN(at) FROM samples WHERE at >= :since AND at <= :until{site}"
    " UNION ALL"
    " SELECT (SELECT MIN(s.at) FROM samples s WHERE s.at >= ticks.at + :step"
    " AND s.at <= :until{site_s})"
    " FROM ticks WHERE ticks.at IS NOT NULL"
    ") SELECT at FROM ticks WHERE at IS NOT NULL LIMIT :n"
)


def tick_times(conn: Connection, since: float, until: float, points: int = MAX_POINTS,
               site_id: str | None = None) -> list[float]:
    """At most `points` sampling ticks in [since, until], about evenly spaced: the first tick
    of the range, then each time the first tick at least ``(until - since) / points`` after
    the one before (a loose index scan of ``samples.at``, or of ``(site_id, at)`` for one
    site)."""
    points = max(1, points)
    step = max((until - since) / points, 1e-9)
    sql = _TICKS_SQL.format(site=" AND site_id = :site" if site_id else "",
                            site_s=" AND s.site_id = :site" if site_id else "")
    params: dict[str, Any] = {"since": float(since), "until": float(until), "step": step,
                              "n": points}
    if site_id:
        params["site"] = site_id
    return [float(r[0]) for r in conn.execute(text(sql), params)]


def points_for(conn: Connection, budget_rows: int = 100_000) -> int:
    """How many points a network-wide chart can afford: `MAX_POINTS`, fewer when the network
    has so many pools that reading each point's rows would take too long."""
    pools = int(conn.execute(select(func.count()).select_from(db.pools)).scalar() or 0)
    return max(24, min(MAX_POINTS, budget_rows // max(pools, 1)))

