"""Tasks from the user's side: submit (one or many, idempotently), list, get, cancel.

A submission is checked whole before anything is written: every spec parsed, every size checked
against the registered pools, every quote's maximum against ``max_price`` and the tenant's budget;
then all its tasks are inserted in one transaction. So a batch with one bad task writes nothing,
and the error names that task (``tasks[3].resources (cpus)``).

A task whose input keeps it from every registered site (a dataset no site holds, or
``residency: local`` data whose holders cannot take it) is accepted and waits as pending with
that reason, as a task does that no online site can hold now: a site that holds the data may yet
register. Its size, ``max_price`` and budget are still checked, against the pools it could use
if the data were there.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from computility.domain.errors import BadInput, FieldError
from computility.domain.money import from_micro
from computility.server import states
from computility.server.auth import Identity
from computility.server.db import schema as db
from computility.server.db.among import among
from computility.server.live import Demand, LiveNetwork, demand_of
from computility.server.plane import ControlPlane
from computility.server.problems import ApiError, invalid, not_found
from computility.server.store import audit
from computility.server.store.files import owns_upload
from computility.server.store.pricing import admission_quotes, spent_this_period
from computility.wire.api import SLUG, TaskOut
from computility.wire.spec import TaskSpec, task_spec_from_mapping

log = logging.getLogger("computility.tasks")

LIST_LIMIT_MAX = 1000
LIVE_MAX_AGE_S = 1.0
"""Submissions and quotes may price on a view of the sites up to this old (sites change rarely;
the scheduling loop and bills always read it fresh)."""


def parse_specs(raws: Sequence[object], prefix: str | None) -> list[TaskSpec]:
    """Every spec of a submission, or a 422 naming the first bad field (and which task)."""
    out = []
    for i, raw in enumerate(raws):
        where = f"{prefix}[{i}]" if prefix else "task"
        try:
            out.append(task_spec_from_mapping(raw, where))
        except FieldError as error:
            parent = "" if error.field_no == "task" else f"{error.field_no}."
            field = f"{parent}{error.field_name}"
            if prefix:
                field = f"{where}.{field}"
            message = f"expected {error.expected}" + (f", got '{error.got}'" if error.got else "")
            raise invalid(field, message) from None
        except BadInput as error:
            raise invalid(where, str(error)) from None
    return out


def submit(
    plane: ControlPlane,
    who: Identity,
    raws: Sequence[Mapping[str, Any]],
    specs: Sequence[TaskSpec],
    idempotency_key: str | None,
    batch: bool,
) -> list[dict[str, Any]]:
    """Insert the tasks (state ``pending``) and return their rows.

    With an `idempotency_key`, a retry of the same submission returns the tasks the first one
    created (the key is unique per tenant; a batch's tasks carry ``KEY#i``).
    """
    keys = _keys(idempotency_key, len(specs), batch)
    if keys is not None:
        existing = _by_keys(plane, who.tenant, keys)
        if existing is not None:
            return existing
    known_places(plane, specs, batch)
    _dataset_names(specs, batch)
    workdirs = _workdirs(plane, who, specs, batch)
    # A relative deadline counts from now on the scheduling clock, as the loop reads it.
    submitted = plane.now()
    demands = [demand_of(s, submitted) for s in specs]
    live = plane.live(max_age_s=LIVE_MAX_AGE_S)
    quote_max, reasons = _admit(plane, who, live, specs, demands, batch)
    now = time.time()
    rows = [
        {
            "tenant_id": who.tenant, "user_id": who.user_id, "name": s.name,
            "spec": dict(raw), "state": states.PENDING, "version": 1,
            "submitted_at": now, "updated_at": now, "policy": d.policy, "cpus": d.cpus,
            "gpu_milli": d.gpu_milli, "devices": list(d.devices) if d.devices else None,
            "run_s": d.run_s, "timeout_s": d.timeout_s, "ref_device": d.ref_device,
            "precision": d.precision, "location": d.location, "rules": d.rules,
            "dataset": d.dataset, "data_local": d.data_local, "reason": reasons[i],
            "deadline_at": d.deadline_at, "not_before": None,
            "retries": s.retries, "user_failures": 0, "infra_failures": 0,
            "max_price_micro": s.placement.max_price_micro, "quote_max_micro": q,
            "cancel_requested": False, "idempotency_key": None if keys is None else keys[i],
            "workdir": workdirs[i],
        }
        for i, (raw, s, d, q) in enumerate(zip(raws, specs, demands, quote_max, strict=True))
    ]
    try:
        with plane.write() as conn:
            ids = [r[0] for r in conn.execute(
                insert(db.tasks).returning(db.tasks.c.id, sort_by_parameter_order=True), rows)]
    except IntegrityError:
        # A concurrent retry with the same key won the race: answer with its tasks.
        if keys is not None:
            existing = _by_keys(plane, who.tenant, keys)
            if existing is not None:
                return existing
        raise
    plane.wake_scheduler.set()
    plane.metrics.tasks_submitted.labels("batch" if batch else "single").inc(len(ids))
    for row, task_id in zip(rows, ids, strict=True):  # what was inserted, without reading back
        row.update(id=task_id, finished_at=None, site_id=None, pool_id=None,
                   exit_code=None, signal=None, n_attempts=0, cost_micro=0)
    return rows


def known_places(plane: ControlPlane, specs: Sequence[TaskSpec], batch: bool) -> None:
    """Regions and user locations a spec names must be the network's."""
    regions = [r.id for r in plane.base.regions]
    cities = [d.id for d in plane.base.demand]
    for i, spec in enumerate(specs):
        where = f"tasks[{i}].placement" if batch else "placement"
        p = spec.placement
        for region in p.regions or ():
            if region not in regions:
                raise invalid(f"{where}.regions",
                              f"regions of the network ({', '.join(regions)}), got '{region}'")
        if p.user_location is not None and p.user_location not in cities:
            raise invalid(f"{where}.user_location",
                          f"a user location of the network ({', '.join(cities)}), got "
                          f"'{p.user_location}'")


DATASET_ID = re.compile(SLUG)


def _dataset_names(specs: Sequence[TaskSpec], batch: bool) -> None:
    """An input names a dataset as sites declare them; any other name could never be held."""
    for i, spec in enumerate(specs):
        for j, item in enumerate(spec.inputs):
            if not DATASET_ID.match(item.dataset):
                where = f"tasks[{i}].inputs[{j}]" if batch else f"inputs[{j}]"
                raise invalid(f"{where}.dataset",
                              "a dataset id as sites declare them (a letter or digit, then "
                              f"letters, digits, '_', '.' or '-'; at most 64), got "
                              f"'{item.dataset}'")


DIGEST_PREFIX = "sha256:"


def _workdirs(
    plane: ControlPlane, who: Identity, specs: Sequence[TaskSpec], batch: bool
) -> list[str | None]:
    """Each task's workdir as the digest of an archive its tenant uploaded (or None)."""
    out: list[str | None] = []
    for i, spec in enumerate(specs):
        field = f"tasks[{i}].workdir" if batch else "workdir"
        if spec.workdir is None:
            out.append(None)
            continue
        digest = spec.workdir.removeprefix(DIGEST_PREFIX)
        if not spec.workdir.startswith(DIGEST_PREFIX) or len(digest) != 64:
            raise invalid(field, "the digest 'sha256:<hex>' of an archive uploaded with POST "
                          f"/api/v1/uploads (the CLI packs and uploads a directory), got "
                          f"'{spec.workdir}'")
        if not owns_upload(plane, who.tenant, digest):
            raise invalid(field, f"an archive this tenant uploaded; no upload {spec.workdir}")
        out.append(digest)
    return out


def _keys(key: str | None, n: int, batch: bool) -> list[str] | None:
    if key is None:
        return None
    if not key or len(key) > 200:
        raise invalid("Idempotency-Key", "1 to 200 characters", 400)
    return [f"{key}#{i}" for i in range(n)] if batch else [key]


def _by_keys(plane: ControlPlane, tenant: str, keys: list[str]) -> list[dict[str, Any]] | None:
    with plane.engine.connect() as conn:
        ids = conn.execute(
            select(db.tasks.c.id).where(
                db.tasks.c.tenant_id == tenant, among(conn, db.tasks.c.idempotency_key, keys)
            )
        ).scalars().all()
        return _rows(conn, sorted(ids)) if ids else None


def _admit(
    plane: ControlPlane,
    who: Identity,
    live: LiveNetwork,
    specs: Sequence[TaskSpec],
    demands: Sequence[Demand],
    batch: bool,
) -> tuple[list[int | None], list[str | None]]:
    """Refuse what no registered pool could ever hold, or what its price or budget rules out.

    Returns each task's quote maximum (the largest maximum over its candidates), or None when
    no site is registered yet (the task then waits as pending); and each task's reason to wait
    when its input keeps it from every site (see the module docstring).
    """
    now = time.time()
    if live.empty:
        return [None] * len(specs), [live.dataset_reason(d) for d in demands]
    quotes = admission_quotes(live, demands, who.tenant, now)
    reasons: list[str | None] = [None] * len(specs)
    for i, d in enumerate(demands):
        if not quotes[i] and (why := live.dataset_reason(d)) is not None:
            reasons[i] = why
            quotes[i] = admission_quotes(live, [d._replace(dataset=None, data_local=False)],
                                         who.tenant, now)[0]
    budget_left = _budget_left(plane, who.tenant)
    out: list[int | None] = []
    for i, (spec, q) in enumerate(zip(specs, quotes, strict=True)):
        where = f"tasks[{i}]." if batch else ""
        if not q:
            raise invalid(
                f"{where}resources",
                "a size some registered pool could hold; none of "
                f"{len(live.pool_keys)} pools has a node with these devices and cores",
            )
        cheapest_max = min(c.max_micro for c in q)
        limit = spec.placement.max_price_micro
        if limit is not None and cheapest_max > limit:
            raise invalid(
                f"{where}placement.max_price",
                f"at least the quote's maximum {from_micro(cheapest_max)} {plane.currency} "
                f"(longest run on the cheapest candidate), got {from_micro(limit)}",
            )
        if budget_left is not None and cheapest_max > budget_left:
            raise ApiError(
                402, "Payment Required",
                f"{where}quote maximum {from_micro(cheapest_max)} {plane.currency} exceeds the "
                f"tenant's remaining budget {from_micro(budget_left)} for this period",
                [{"field": f"{where}placement", "message": "over the remaining budget"}],
            )
        affordable = [c.max_micro for c in q if limit is None or c.max_micro <= limit]
        out.append(max(affordable))
    return out, reasons


_NO_BUDGET: dict[str, float] = {}
"""Tenants seen without a budget, and when: most have none, and a submission need not ask the
database again within `LIVE_MAX_AGE_S` (a budget set meanwhile applies a second later)."""


def budget_changed(tenant: str) -> None:
    _NO_BUDGET.pop(tenant, None)


def _budget_left(plane: ControlPlane, tenant: str) -> int | None:
    now = time.monotonic()
    if now - _NO_BUDGET.get(tenant, -LIVE_MAX_AGE_S) < LIVE_MAX_AGE_S:
        return None
    with plane.engine.connect() as conn:
        budget = conn.execute(
            select(db.tenants.c.budget_micro).where(db.tenants.c.id == tenant)
        ).scalar()
        if budget is None:
            _NO_BUDGET[tenant] = now
            return None
        return int(budget) - spent_this_period(conn, tenant, time.time())


def _rows(conn: Connection, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = conn.execute(select(db.tasks).where(among(conn, db.tasks.c.id, ids))).mappings()
    out = [dict(r) for r in rows]
    out.sort(key=lambda r: int(r["id"]))
    return _with_figures(conn, out)


def _with_figures(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each task's attempt count and what the ledger billed it: money, energy, carbon."""
    if not rows:
        return rows
    ids = [r["id"] for r in rows]
    n_attempts: dict[int, int] = dict(conn.execute(
        select(db.attempts.c.task_id, func.count()).where(among(conn, db.attempts.c.task_id, ids))
        .group_by(db.attempts.c.task_id)
    ).all())
    led = db.ledger.c
    billed = {row[0]: row[1:] for row in conn.execute(
        select(led.task_id, func.sum(led.total_micro), func.sum(led.kwh),
               func.sum(led.carbon_kg))
        .where(among(conn, led.task_id, ids)).group_by(led.task_id)
    ).all()}
    for r in rows:
        r["n_attempts"] = int(n_attempts.get(r["id"], 0))
        micro, kwh, carbon = billed.get(r["id"], (0, 0.0, 0.0))
        r["cost_micro"] = int(micro or 0)
        r["kwh"], r["carbon_kg"] = float(kwh or 0.0), float(carbon or 0.0)
    return rows


def task_out(row: Mapping[str, Any], currency: str, with_spec: bool = False) -> TaskOut:
    q = row["quote_max_micro"]
    return TaskOut(
        id=row["id"], name=row["name"], tenant=row["tenant_id"], state=row["state"],
        reason=row["reason"], policy=row["policy"], site=row["site_id"], pool=row["pool_id"],
        submitted_at=row["submitted_at"], updated_at=row["updated_at"],
        finished_at=row["finished_at"], exit_code=row["exit_code"], signal=row["signal"],
        attempts=row.get("n_attempts", 0), retries=row["retries"],
        user_failures=row["user_failures"], infra_failures=row["infra_failures"],
        quote_max=None if q is None else from_micro(q),
        cost=from_micro(row.get("cost_micro", 0)), currency=currency,
        energy_kwh=round(row.get("kwh", 0.0), 9), carbon_kg=round(row.get("carbon_kg", 0.0), 9),
        spec=row["spec"] if with_spec else None,
    )


def visible(who: Identity) -> Any:
    """The tasks `who` may see: its tenant's (an operator sees every tenant's)."""
    return True if who.operator else db.tasks.c.tenant_id == who.tenant


def _one_task(figures: bool, tenant: bool) -> Any:
    """One task (with its attempt count and billed figures), by id and, for a caller who is not
    an operator, tenant: one statement built once, so the hottest read of the API (a user
    polling a task) costs one round trip and no statement building."""
    t = db.tasks.c
    if figures:
        a, led = db.attempts.c, db.ledger.c

        def billed(column: Any, label: str) -> Any:
            return (select(func.coalesce(func.sum(column), 0)).where(led.task_id == t.id)
                    .scalar_subquery().label(label))

        query = select(
            db.tasks,
            select(func.count()).where(a.task_id == t.id).scalar_subquery().label("n_attempts"),
            billed(led.total_micro, "cost_micro"), billed(led.kwh, "kwh"),
            billed(led.carbon_kg, "carbon_kg"))
    else:
        query = select(t.id)
    query = query.where(t.id == bindparam("task_id"))
    return query.where(t.tenant_id == bindparam("tenant")) if tenant else query


_GET = {(figures, tenant): _one_task(figures, tenant)
        for figures in (True, False) for tenant in (True, False)}


def _get_params(who: Identity, task_id: int) -> dict[str, Any]:
    params: dict[str, Any] = {"task_id": task_id}
    if not who.operator:
        params["tenant"] = who.tenant
    return params


def _read_one(plane: ControlPlane, who: Identity, task_id: int, figures: bool) -> Any:
    row = plane.one_now(_GET[figures, not who.operator], _get_params(who, task_id))
    if row is None:
        raise not_found("task", task_id)
    return row


def _with_totals(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["cost_micro"] = int(out["cost_micro"] or 0)
    out["kwh"], out["carbon_kg"] = float(out["kwh"] or 0.0), float(out["carbon_kg"] or 0.0)
    return out


def get(plane: ControlPlane, who: Identity, task_id: int) -> dict[str, Any]:
    """The task as its owner (or an operator) sees it; 404 for anyone else."""
    return _with_totals(_read_one(plane, who, task_id, figures=True))


async def status(plane: ControlPlane, who: Identity, task_id: int) -> dict[str, Any]:
    """`get` for a request: the hottest read of the API, one statement (`ControlPlane.one`)."""
    row = await plane.one(_GET[True, not who.operator], _get_params(who, task_id))
    if row is None:
        raise not_found("task", task_id)
    return _with_totals(row)


def check_visible(plane: ControlPlane, who: Identity, task_id: int) -> None:
    """404 unless `who` may see the task (the check before reading its logs, files or
    attempts, without reading its figures)."""
    _read_one(plane, who, task_id, figures=False)


async def visible_or_404(plane: ControlPlane, who: Identity, task_id: int) -> None:
    """`check_visible` for a request, one statement (`ControlPlane.one`)."""
    if await plane.one(_GET[False, not who.operator], _get_params(who, task_id)) is None:
        raise not_found("task", task_id)


def list_tasks(
    plane: ControlPlane, who: Identity, state: str | None, name: str | None, limit: int,
    after: int | None,
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of tasks, newest first; `after` is the cursor the previous page returned."""
    if state is not None and state not in states.TASK_TRANSITIONS:
        raise invalid("state", f"one of {', '.join(states.TASK_TRANSITIONS)}", 400)
    query = select(db.tasks).where(visible(who))
    if state is not None:
        query = query.where(db.tasks.c.state == state)
    if name is not None:
        query = query.where(db.tasks.c.name == name)
    if after is not None:
        query = query.where(db.tasks.c.id < after)
    query = query.order_by(db.tasks.c.id.desc()).limit(limit + 1)
    with plane.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        more = len(rows) > limit
        rows = _with_figures(conn, rows[:limit])
    return rows, (int(rows[-1]["id"]) if more else None)


def cancel(plane: ControlPlane, who: Identity, task_id: int) -> dict[str, Any]:
    """Cancel at once if no attempt holds devices; else ask its agent to stop it.

    A running attempt is stopped by its agent (told at once through its open lease poll, else on
    its next heartbeat) and billed for what it ran; the task ends ``cancelled`` when the agent
    reports the exit.
    """
    now = time.time()
    for _ in range(10):
        row = get(plane, who, task_id)
        state = row["state"]
        if state in states.TERMINAL:
            return row
        with plane.write() as conn:
            if state in states.ACTIVE:
                values: dict[str, Any] = {"cancel_requested": True,
                                          "reason": "cancel requested by the user"}
            else:
                states.check_task(state, states.CANCELLED)
                values = {"state": states.CANCELLED, "finished_at": now,
                          "reason": "cancelled by the user", "site_id": None}
            done = conn.execute(
                update(db.tasks)
                .where(db.tasks.c.id == task_id, db.tasks.c.version == row["version"])
                .values(version=db.tasks.c.version + 1, updated_at=now, **values)
            ).rowcount
            if done and row["tenant_id"] != who.tenant:  # only an operator reaches here
                audit.record(conn, who, "task.cancel", f"task:{task_id}",
                             {"state": state}, tenant=row["tenant_id"])
        if done:
            log.info("task %s: %s", task_id, values["reason"])
            if state in states.ACTIVE:
                for wake in list(plane.on_placed):  # agents' open polls carry the cancel
                    wake()
            return get(plane, who, task_id)
    raise ApiError(409, "Conflict", f"task {task_id} kept changing; try again")




def describe_need(row: dict[str, Any]) -> str:
    """What a task asks for, in words (for reasons)."""
    if row["gpu_milli"]:
        devices = ", ".join(row["devices"] or []) or "any accelerator"
        return f"{row['gpu_milli'] / 1000:g} x ({devices}) with {row['cpus']} cores"
    return f"{row['cpus']} cores"
