"""Quotes and the budget period: what a task would cost where, from the same cost model as bills.

A quote lists every candidate pool (the task fits a node there, the site lets the tenant in, the
spec's placement rules allow it, a ``residency: local`` input is held there) with the expected
run there (the estimate scaled by the speed model), its price, its maximum (a run of the whole
timeout) and its energy and carbon. Where a ``residency: any`` input must move to the site, the
line shows the transfer's seconds and GB, and both price and maximum include its egress. Tasks
with the same demand share one computation, so quoting a batch of 10^4 alike tasks costs one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import Connection, func, select

from computility.server.db import schema as db
from computility.server.live import Demand, LiveNetwork, bills, site_rules


@dataclass(frozen=True, slots=True)
class QuoteLine:
    row: int
    site: str
    pool: str
    device: str
    region: str
    units: int
    run_s: float
    price_micro: int
    max_micro: int
    kwh: float
    carbon_kg: float
    free_now: bool
    transfer_s: float = 0.0
    moved_gb: float = 0.0


def _key(d: Demand) -> tuple[object, ...]:
    return (d.cpus, d.gpu_milli, d.devices, d.ref_device, d.run_s, d.timeout_s,
            repr(d.rules), d.location, d.precision, d.dataset, d.data_local)


def quote_rows(
    live: LiveNetwork,
    demands: Sequence[Demand],
    tenant: str,
    now_ts: float,
    every_site: bool = False,
) -> list[list[QuoteLine]]:
    """Each demand's candidates, cheapest first. `every_site`: offline sites count too (what a
    task could ever use), else only online ones."""
    if live.empty or not demands:
        return [[] for _ in demands]
    unique: dict[tuple[object, ...], int] = {}
    rows: list[int] = []
    for d in demands:
        rows.append(unique.setdefault(_key(d), len(unique)))
    firsts = [0] * len(unique)
    for i, r in reversed(list(enumerate(rows))):
        firsts[r] = i
    reps = [demands[i] for i in firsts]
    workload = live.workload(list(range(len(reps))), reps, [tenant] * len(reps), now_ts)
    order = {int(t): i for i, t in enumerate(workload.ids.tolist())}
    rules = {
        order[i]: rule for i, d in enumerate(reps) if (rule := site_rules(d.rules)) is not None
    }
    speed = live.speed(workload)
    placement = live.placement(workload, "balanced", speed, rules)
    allowed = np.array(
        [s.allowed_tenants is None or tenant in s.allowed_tenants for s in live.sites], np.bool_
    )[live.pool_site]
    if not every_site:
        allowed &= live.online
    with_free = _free_units(live)
    arrays = live.network.arrays
    regions = [r.id for r in live.network.regions]
    site_region = arrays.site_region
    computed: list[list[QuoteLine]] = []
    for i, d in enumerate(reps):
        t = order[i]
        pools = np.flatnonzero(placement.candidates_mask(t) & allowed)
        if pools.shape[0] == 0:
            computed.append([])
            continue
        units = np.where(arrays.pool_is_cpu[pools], d.cpus, d.gpu_milli).astype(np.int64)
        factor = speed.factors[speed.task_class[t], pools]
        run = np.minimum(d.run_s * factor, d.timeout_s)
        move = live.data_move(d.dataset, d.data_local, pools.tolist())
        expected = bills(
            live.price(pools.tolist(), units.tolist(), run.tolist(), now_ts, move), 0.0)
        longest = bills(
            live.price(pools.tolist(), units.tolist(), [d.timeout_s] * len(pools), now_ts, move),
            0.0,
        )
        lines = []
        for j, p in enumerate(pools.tolist()):
            site, pool = live.pool_keys[p]
            lines.append(QuoteLine(
                row=p, site=site, pool=pool, device=live.devices[p].id,
                region=regions[int(site_region[live.pool_site[p]])], units=int(units[j]),
                run_s=float(run[j]), price_micro=expected[j].total_micro,
                max_micro=longest[j].total_micro, kwh=expected[j].kwh,
                carbon_kg=expected[j].carbon_kg,
                free_now=bool(live.online[p]) and with_free[p] >= units[j],
                transfer_s=float(move.seconds[j]), moved_gb=float(move.moved_gb[j]),
            ))
        lines.sort(key=lambda q: (q.price_micro, q.row))
        computed.append(lines)
    return [computed[r] for r in rows]


_CacheKey = tuple[LiveNetwork, str, tuple[object, ...]]
_ADMISSION_CACHE: dict[_CacheKey, tuple[float, list[QuoteLine]]] = {}
ADMISSION_CACHE_S = 1.0
ADMISSION_CACHE_MAX = 4096


def admission_quotes(
    live: LiveNetwork, demands: Sequence[Demand], tenant: str, now_ts: float
) -> list[list[QuoteLine]]:
    """`quote_rows(..., every_site=True)` for admission checks, reusing a demand's lines for up
    to `ADMISSION_CACHE_S` (a stream of alike submissions prices once a second, not per task)."""
    out: list[list[QuoteLine] | None] = []
    missing: list[int] = []
    for i, d in enumerate(demands):
        hit = _ADMISSION_CACHE.get((live, tenant, _key(d)))
        if hit is not None and now_ts - hit[0] < ADMISSION_CACHE_S:
            out.append(hit[1])
        else:
            out.append(None)
            missing.append(i)
    if missing:
        fresh = quote_rows(live, [demands[i] for i in missing], tenant, now_ts, every_site=True)
        if len(_ADMISSION_CACHE) > ADMISSION_CACHE_MAX:
            _ADMISSION_CACHE.clear()
        for i, lines in zip(missing, fresh, strict=True):
            out[i] = lines
            _ADMISSION_CACHE[(live, tenant, _key(demands[i]))] = (now_ts, lines)
    return [lines or [] for lines in out]


def _free_units(live: LiveNetwork) -> np.ndarray:
    return np.array([live.free_of(i) for i in range(len(live.pool_keys))], np.int64)


NETWORK_TZ = timezone(timedelta(hours=8))


def period_start(now_ts: float, offset_minutes: int = 480) -> float:
    """Start of the calendar month (in the network's time zone) that `now_ts` falls in."""
    tz = timezone(timedelta(minutes=offset_minutes))
    now = datetime.fromtimestamp(now_ts, tz)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def spent_this_period(conn: Connection, tenant: str, now_ts: float | None = None) -> int:
    since = period_start(time.time() if now_ts is None else now_ts)
    total = conn.execute(
        select(func.sum(db.ledger.c.total_micro)).where(
            db.ledger.c.tenant_id == tenant, db.ledger.c.created_at >= since
        )
    ).scalar()
    return int(total or 0)
