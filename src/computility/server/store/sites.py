"""Sites from the provider's side: register (or re-register), list, and the agent's heartbeat."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import delete, insert, or_, select, update

from computility.domain.devices import default_catalogue
from computility.domain.errors import UnknownDeviceType
from computility.domain.money import from_micro, to_micro
from computility.domain.site import MILLI
from computility.server import states
from computility.server.auth import Identity, new_key
from computility.server.db import schema as db
from computility.server.db.among import among
from computility.server.observability.logging import log_context
from computility.server.plane import ControlPlane
from computility.server.problems import conflict, forbidden, invalid, not_found
from computility.server.store import audit
from computility.wire.api import (
    DatasetOut,
    Heartbeat,
    HeartbeatReply,
    PoolOut,
    SiteIn,
    SiteOut,
)

log = logging.getLogger("computility.sites")


def register(plane: ControlPlane, who: Identity, site: SiteIn) -> tuple[SiteOut, str]:
    """Create the site (or replace an own site's description) and a fresh agent key for it
    (the site's earlier agent keys are revoked)."""
    if not who.may_provide():
        raise forbidden("registering a site needs a provider or operator key")
    base = plane.base
    regions = {r.id: r for r in base.regions}
    if site.region not in regions:
        raise invalid("region", f"one of the network's regions ({', '.join(regions)})")
    catalogue = default_catalogue()
    pool_rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, p in enumerate(site.pools):
        if p.id in seen:
            raise invalid(f"pools[{i}].id", f"a pool id not used twice in the site, got '{p.id}'")
        seen.add(p.id)
        try:
            device = catalogue.get(p.device)
        except UnknownDeviceType:
            raise invalid(f"pools[{i}].device",
                          f"a catalogue device id or alias, got '{p.device}'") from None
        if p.count % p.devices_per_node:
            raise invalid(f"pools[{i}].devices_per_node",
                          f"a divisor of count {p.count}, got {p.devices_per_node}")
        units = p.count if not device.is_accelerator else p.count * MILLI
        pool_rows.append({
            "pool_id": p.id, "position": i, "device": device.id, "count": p.count,
            "devices_per_node": p.devices_per_node,
            "price_micro_per_cu_hour": to_micro(p.price_per_cu_hour), "free_units": units,
        })
    datasets = _datasets(site)
    local = [s for s in base.sites if s.region == site.region]
    region = regions[site.region]
    elec_curve = list(local[0].electricity_price_curve) if local else None
    carbon_curve = list(local[0].carbon_curve) if local else None
    elec = (to_micro(site.electricity_price_per_kwh) if site.electricity_price_per_kwh is not None
            else (local[0].electricity_price_per_kwh if local else 600_000))
    carbon = (site.carbon_kg_per_kwh if site.carbon_kg_per_kwh is not None
              else (local[0].carbon_kg_per_kwh if local else 0.55))
    if site.electricity_price_per_kwh is not None:
        elec_curve = None  # a stated price is flat
    if site.carbon_kg_per_kwh is not None:
        carbon_curve = None
    now = time.time()
    values: dict[str, Any] = {
        "region": site.region, "lat": site.lat if site.lat is not None else region.lat,
        "lon": site.lon if site.lon is not None else region.lon, "backend": site.backend,
        "pue": site.pue, "electricity_price_micro": elec, "carbon_kg_per_kwh": carbon,
        "electricity_curve": elec_curve, "carbon_curve": carbon_curve,
        "allowed_tenants": sorted(site.tenants) if site.tenants is not None else None,
        "datasets": datasets, "last_seen_at": now, "online": True,
    }
    key_id, key, secret_hash = new_key()
    with plane.write() as conn:
        owner = conn.execute(
            select(db.sites.c.owner_tenant_id).where(db.sites.c.id == site.id)
        ).scalar()
        if owner is not None and owner != who.tenant and not who.operator:
            raise conflict(f"site id '{site.id}' is registered by another provider")
        if owner is None:
            conn.execute(insert(db.sites).values(
                id=site.id, owner_tenant_id=who.tenant, registered_at=now, version=1, **values
            ))
        else:
            conn.execute(update(db.sites).where(db.sites.c.id == site.id)
                         .values(version=db.sites.c.version + 1, **values))
            busy = conn.execute(
                select(db.tasks.c.id).where(db.tasks.c.site_id == site.id,
                                            db.tasks.c.state == states.QUEUED)
            ).scalars().all()
            if busy:  # pools may have changed: queued tasks are placed again
                conn.execute(update(db.tasks).where(among(conn, db.tasks.c.id, busy)).values(
                    state=states.PENDING, site_id=None, pool_id=None,
                    version=db.tasks.c.version + 1, updated_at=now))
            before = _pool_summary(conn.execute(
                select(db.pools).where(db.pools.c.site_id == site.id)
                .order_by(db.pools.c.position)).mappings().all())
            conn.execute(delete(db.pools).where(db.pools.c.site_id == site.id))
        conn.execute(insert(db.pools), [{"site_id": site.id, **r} for r in pool_rows])
        # One live agent key per site: registering again (an agent's restart) revokes the
        # earlier ones (those in a rotation's grace period too), so an orphaned agent process
        # can no longer speak for the site.
        ended = conn.execute(update(db.api_keys).where(
            db.api_keys.c.site_id == site.id, db.api_keys.c.role == "agent",
            or_(db.api_keys.c.revoked_at.is_(None), db.api_keys.c.revoked_at > now))
            .values(revoked_at=now)).rowcount
        conn.execute(insert(db.api_keys).values(
            id=key_id, tenant_id=who.tenant if owner is None else owner, role="agent",
            site_id=site.id, secret_sha256=secret_hash, created_at=now,
        ))
        pools_now = _pool_summary(pool_rows)
        detail: dict[str, Any] = {"region": site.region, "backend": site.backend,
                                  "pools": pools_now, "agent_key_id": key_id,
                                  "agent_keys_revoked": ended}
        if owner is not None:
            detail["pools_changed"] = before != pools_now
        audit.record(conn, who, "site.register" if owner is None else "site.update",
                     f"site:{site.id}", detail, tenant=owner or who.tenant)
    plane.sites_changed()
    plane.wake_scheduler.set()
    with log_context(site_id=site.id):
        log.info("site %s %s with %d pools", site.id,
                 "registered" if owner is None else "registered again", len(pool_rows))
    return get(plane, who, site.id), key


def _pool_summary(rows: Any) -> dict[str, dict[str, Any]]:
    """Pools as an audit event shows them: device, count and price, by pool id."""
    return {r["pool_id"]: {"device": r["device"], "count": r["count"],
                           "devices_per_node": r["devices_per_node"],
                           "price_micro_per_cu_hour": r["price_micro_per_cu_hour"]}
            for r in rows}


def _datasets(site: SiteIn) -> list[dict[str, Any]]:
    """The datasets a site declares, as stored: names and sizes (the agent keeps the paths)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, d in enumerate(site.datasets):
        if d.id in seen:
            raise invalid(f"datasets[{i}].id",
                          f"a dataset id not used twice in the site, got '{d.id}'")
        seen.add(d.id)
        out.append({"id": d.id, "size_gb": d.size_gb})
    return out


def visible(who: Identity) -> Any:
    """Sites a key may manage: an operator's, every site; a provider's, its tenant's; an agent's,
    its own."""
    if who.operator:
        return True
    if who.role == "agent":
        return db.sites.c.id == who.site
    return db.sites.c.owner_tenant_id == who.tenant


def get(plane: ControlPlane, who: Identity, site_id: str) -> SiteOut:
    found = list_sites(plane, who, site_id)
    if not found:
        raise not_found("site", site_id)
    return found[0]


def list_sites(plane: ControlPlane, who: Identity, only: str | None = None) -> list[SiteOut]:
    """Own sites for providers and agents, every site for operators; users see the sites their
    tenant may use (without owners' private figures)."""
    query = select(db.sites)
    if who.role in ("user",):
        pass
    else:
        query = query.where(visible(who))
    if only is not None:
        query = query.where(db.sites.c.id == only)
    with plane.engine.connect() as conn:
        rows = conn.execute(query.order_by(db.sites.c.id)).mappings().all()
        pools = conn.execute(select(db.pools).order_by(db.pools.c.position)).mappings().all()
    by_site: dict[str, list[PoolOut]] = {}
    for p in pools:
        per = 1 if p["device"] in _cpu_ids() else MILLI
        by_site.setdefault(p["site_id"], []).append(PoolOut(
            id=p["pool_id"], device=p["device"], count=p["count"],
            devices_per_node=p["devices_per_node"],
            price_per_cu_hour=from_micro(p["price_micro_per_cu_hour"]),
            free=p["free_units"] / per,
        ))
    out = []
    for r in rows:
        allowed = r["allowed_tenants"]
        if who.role == "user" and allowed is not None and who.tenant not in allowed:
            continue
        out.append(SiteOut(
            id=r["id"], owner=r["owner_tenant_id"], region=r["region"], backend=r["backend"],
            online=bool(r["online"]), last_seen_at=r["last_seen_at"],
            pools=by_site.get(r["id"], []),
            tenants=allowed if who.role != "user" else None,
            datasets=[DatasetOut(id=d["id"], size_gb=d["size_gb"]) for d in r["datasets"] or ()],
        ))
    return out


def _cpu_ids() -> frozenset[str]:
    return frozenset(d.id for d in default_catalogue() if not d.is_accelerator)


def heartbeat(plane: ControlPlane, who: Identity, beat: Heartbeat) -> HeartbeatReply:
    """Record the site alive with its free capacity; renew the leases it still holds.

    Returns the attempts the agent must stop: cancelled by their users, or whose metered cost
    reached the task's ``max_price``; and those it named that the server no longer knows as its
    own (a stale token, an expired lease): the agent must stop them too.
    """
    site_id = _own_site(who)
    now = time.time()
    with plane.write() as conn:
        row = conn.execute(
            select(db.sites.c.online).where(db.sites.c.id == site_id)
        ).first()
        if row is None:
            raise not_found("site", site_id)
        values: dict[str, Any] = {"last_seen_at": now, "online": not beat.leaving}
        if bool(row[0]) == beat.leaving:
            values["version"] = db.sites.c.version + 1  # on or off line: rebuild the network
            plane.sites_changed()
        conn.execute(update(db.sites).where(db.sites.c.id == site_id).values(**values))
        if beat.leaving:
            conn.execute(update(db.tasks).where(
                db.tasks.c.site_id == site_id, db.tasks.c.state == states.QUEUED).values(
                state=states.PENDING, site_id=None, pool_id=None, units=None, cu=None,
                version=db.tasks.c.version + 1, updated_at=now,
                reason=f"placed again: site {site_id} went offline"))
        reported = free_units(conn, site_id, beat.free)
        unknown: list[int] = []
        cancel: list[int] = []
        if beat.running:
            ids = [r.attempt for r in beat.running]
            held = {
                a["id"]: a for a in conn.execute(
                    select(db.attempts.c.id, db.attempts.c.token, db.attempts.c.state,
                           db.attempts.c.task_id)
                    .where(among(conn, db.attempts.c.id, ids), db.attempts.c.site_id == site_id)
                ).mappings()
            }
            live_ids = []
            for r in beat.running:
                a = held.get(r.attempt)
                if a is None or a["token"] != r.token or a["state"] not in states.ACTIVE:
                    unknown.append(r.attempt)
                else:
                    live_ids.append(r.attempt)
            if live_ids:
                conn.execute(update(db.attempts).where(among(conn, db.attempts.c.id, live_ids))
                             .values(lease_expires_at=now + plane.settings.lease_ttl_s))
                cancel = _to_stop(plane, conn, [held[i]["task_id"] for i in live_ids],
                                  {r.attempt: r.run_s for r in beat.running}, live_ids, now)
        record_free(conn, site_id, reported)  # pools last: the lock order of every writer
    plane.metrics.heartbeats.inc()
    plane.metrics.lease_renewals.inc(len(beat.running or ()) - len(unknown))
    return HeartbeatReply(cancel=cancel, unknown=unknown, lease_ttl_s=plane.settings.lease_ttl_s,
                          heartbeat_s=plane.settings.heartbeat_s)


def _own_site(who: Identity) -> str:
    if who.role != "agent" or who.site is None:
        raise forbidden("this endpoint needs a site's agent key")
    return who.site


def free_units(conn: Any, site_id: str, free: dict[str, float]) -> dict[str, int]:
    """An agent's report of free devices per pool, checked, in scheduling units."""
    pools = {p["pool_id"]: p for p in conn.execute(
        select(db.pools.c.pool_id, db.pools.c.device, db.pools.c.count)
        .where(db.pools.c.site_id == site_id)).mappings()}
    cpu = _cpu_ids()
    units: dict[str, int] = {}
    for name, amount in free.items():
        pool = pools.get(name)
        if pool is None:
            raise invalid(f"free.{name}", f"a pool of this site ({', '.join(pools)})")
        if amount < 0 or amount > pool["count"]:
            raise invalid(f"free.{name}", f"between 0 and {pool['count']}, got {amount}")
        units[name] = int(amount) if pool["device"] in cpu else round(amount * MILLI)
    return units


def record_free(conn: Any, site_id: str, units: dict[str, int]) -> None:
    """Store the free units an agent reported (pools are locked last, by every writer)."""
    for name, value in sorted(units.items()):
        conn.execute(update(db.pools).where(db.pools.c.site_id == site_id,
                                            db.pools.c.pool_id == name).values(free_units=value))


def _to_stop(
    plane: ControlPlane, conn: Any, task_ids: list[int], run_s: dict[int, float],
    attempt_ids: list[int], now: float,
) -> list[int]:
    from computility.server.store.billing import price_attempts

    tasks = {t["id"]: t for t in conn.execute(
        select(db.tasks.c.id, db.tasks.c.cancel_requested, db.tasks.c.max_price_micro,
               db.tasks.c.version, db.tasks.c.dataset, db.tasks.c.data_local)
        .where(among(conn, db.tasks.c.id, task_ids))).mappings()}
    attempts = conn.execute(select(db.attempts).where(among(conn, db.attempts.c.id, attempt_ids))
                            ).mappings().all()
    stop = []
    priced = [a for a in attempts if tasks[a["task_id"]]["max_price_micro"] is not None
              and not tasks[a["task_id"]]["cancel_requested"]]
    if priced:
        figures = price_attempts(plane, priced, [run_s.get(a["id"], 0.0) for a in priced],
                                 [tasks[a["task_id"]] for a in priced], conn)
        for a, bill in zip(priced, figures, strict=True):
            task = tasks[a["task_id"]]
            if bill is not None and bill.total_micro >= task["max_price_micro"]:
                conn.execute(update(db.tasks).where(db.tasks.c.id == task["id"]).values(
                    cancel_requested=True, version=db.tasks.c.version + 1, updated_at=now,
                    reason=f"{MAX_PRICE_STOP} ({from_micro(bill.total_micro)} "
                           f"of {from_micro(task['max_price_micro'])})",
                ))
                stop.append(a["id"])
    stop.extend(a["id"] for a in attempts if tasks[a["task_id"]]["cancel_requested"])
    return sorted(set(stop))


MAX_PRICE_STOP = "stopped: metered cost reached max_price"
