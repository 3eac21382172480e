"""Metering and the ledger: exactly one entry per attempt that ran and exited.

The entry is priced by the same `CostModel` the scheduler and the simulator use (through
`LiveNetwork.price`), rounded once per component to micro-units, and inserted in the transaction
that ends the attempt. The ledger's unique ``attempt_id`` makes a second entry for one attempt
impossible whatever a retried report or a restarted server does. Attempts ended by the
infrastructure (lost leases, sites gone) are never billed.

Network money is the move of the task's ``residency: any`` dataset to a site whose region holds
no copy: the dataset's size over the link from the nearest copy, at that link's egress price,
exactly as placement and quotes price it (`LiveNetwork.data_move`). The agent does not move those
bytes (its ``gb_moved`` counts what it staged from the control plane, which is free), so the
model's move is added to it; a run that matches its quote is billed the quoted amount.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, insert, select

from computility.domain.money import from_micro
from computility.domain.site import MILLI
from computility.server.auth import Identity
from computility.server.db import schema as db
from computility.server.live import Bill, LiveNetwork, bills
from computility.server.plane import ControlPlane
from computility.server.problems import forbidden
from computility.server.store.pricing import period_start
from computility.wire.api import Earnings, SiteEarnings, Usage


def price_attempts(
    plane: ControlPlane, attempts: Sequence[Mapping[str, Any]], run_s: Sequence[float],
    tasks: Sequence[Mapping[str, Any]], conn: Connection | None = None,
) -> list[Bill | None]:
    """What each attempt (of the task at the same position) costs for `run_s` seconds from its
    start (None: its pool is gone); `conn`: the caller's transaction, if it is in one."""
    live = plane.live(conn=conn)
    return [_priced(live, a, run, t)[0] for a, run, t in zip(attempts, run_s, tasks, strict=True)]


def _priced(
    live: LiveNetwork, a: Mapping[str, Any], run_s: float, task: Mapping[str, Any]
) -> tuple[Bill | None, float]:
    """The attempt's bill (None: its pool is gone) and the GB of input moved to its site."""
    row = live.pool_row(a["site_id"], a["pool_id"])
    if row is None:
        return None, 0.0
    move = live.data_move(task["dataset"], bool(task["data_local"]), [row])
    start = a["started_at"] or a["leased_at"]
    price = live.price([row], [a["units"]], [run_s], start, move)
    device_hours = a["units"] * run_s / 3600.0 / (1 if live.network.arrays.pool_is_cpu[row]
                                                  else MILLI)
    return bills(price, np.array([device_hours]))[0], float(move.moved_gb[0])


def bill(
    plane: ControlPlane, conn: Connection, attempt: Mapping[str, Any], task: Mapping[str, Any],
    run_s: float, now: float,
) -> int:
    """Insert the attempt's ledger entry; returns the amount in micro-units."""
    live = plane.live(conn=conn)  # never a second connection inside the report's transaction
    figures, data_gb = _priced(live, attempt, run_s, task)
    row = live.pool_row(attempt["site_id"], attempt["pool_id"])
    owner = live.network.site(attempt["site_id"]).owner if row is not None else ""
    device = live.devices[row].id if row is not None else ""
    if figures is None:  # its site was removed: the run is recorded, at no charge
        figures = Bill(0.0, 0.0, 0.0, 0.0, 0, 0, 0)
    conn.execute(insert(db.ledger).values(
        attempt_id=attempt["id"], task_id=task["id"], tenant_id=task["tenant_id"],
        site_id=attempt["site_id"], owner_tenant_id=owner, device=device,
        precision=task["precision"], run_s=run_s, cu_hours=figures.cu_hours,
        device_hours=figures.device_hours, kwh=figures.kwh, carbon_kg=figures.carbon_kg,
        gb_moved=float(attempt["gb_moved"] or 0.0) + data_gb,
        compute_micro=figures.compute_micro,
        energy_micro=figures.energy_micro, network_micro=figures.network_micro,
        total_micro=figures.total_micro, created_at=now,
    ))
    return figures.total_micro


def _window(since: float | None, until: float | None) -> tuple[float, float]:
    now = time.time()
    return (period_start(now) if since is None else since), (now if until is None else until)


def usage(
    plane: ControlPlane, who: Identity, tenant: str | None, since: float | None,
    until: float | None,
) -> Usage:
    """A tenant's metered use and bill over a window (default: this month so far)."""
    target = tenant or who.tenant
    if target != who.tenant and not who.operator:
        raise forbidden("a key sees only its own tenant's usage")
    lo, hi = _window(since, until)
    led = db.ledger.c
    with plane.engine.connect() as conn:
        row = conn.execute(select(
            func.count(), func.sum(led.cu_hours), func.sum(led.device_hours), func.sum(led.kwh),
            func.sum(led.carbon_kg), func.sum(led.gb_moved), func.sum(led.compute_micro),
            func.sum(led.energy_micro), func.sum(led.network_micro), func.sum(led.total_micro),
        ).where(led.tenant_id == target, led.created_at >= lo, led.created_at < hi)).one()
        budget = conn.execute(
            select(db.tenants.c.budget_micro).where(db.tenants.c.id == target)
        ).scalar()
        spent = conn.execute(select(func.sum(led.total_micro)).where(
            led.tenant_id == target, led.created_at >= period_start(time.time()))).scalar()
    n, cu, dh, kwh, co2, gb, comp, energy, net, total = row
    return Usage(
        tenant=target, since=lo, until=hi, attempts=int(n or 0), cu_hours=float(cu or 0),
        device_hours=float(dh or 0), kwh=float(kwh or 0), carbon_kg=float(co2 or 0),
        gb_moved=float(gb or 0), compute=from_micro(int(comp or 0)),
        energy=from_micro(int(energy or 0)), network=from_micro(int(net or 0)),
        total=from_micro(int(total or 0)), currency=plane.currency,
        budget=None if budget is None else from_micro(int(budget)),
        budget_left=None if budget is None else from_micro(int(budget) - int(spent or 0)),
    )


def earnings(
    plane: ControlPlane, who: Identity, since: float | None, until: float | None
) -> Earnings:
    """A provider's earnings per site over a window (default: this month so far)."""
    if not who.may_provide():
        raise forbidden("earnings need a provider or operator key")
    lo, hi = _window(since, until)
    led = db.ledger.c
    query = select(led.site_id, func.count(), func.sum(led.cu_hours), func.sum(led.total_micro)
                   ).where(led.created_at >= lo, led.created_at < hi)
    if not who.operator:
        query = query.where(led.owner_tenant_id == who.tenant)
    with plane.engine.connect() as conn:
        rows = conn.execute(query.group_by(led.site_id).order_by(led.site_id)).all()
    return Earnings(owner=who.tenant, sites=[
        SiteEarnings(site=s, since=lo, until=hi, attempts=int(n), cu_hours=float(cu or 0),
                     total=from_micro(int(t or 0)), currency=plane.currency)
        for s, n, cu, t in rows
    ])
