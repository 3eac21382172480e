"""The tasks pages: the viewer's tasks (searchable, newest first) and one task's page.

The list reads one page of tasks with ``ORDER BY id DESC LIMIT 51`` under the API's own
visibility rule (`computility.server.store.tasks.visible`: a key sees its tenant's tasks, an
operator every tenant's), so it costs the same with 100 tasks or 100,000: the ``(tenant_id, id)``
index serves a tenant, the primary key the operator, and a name search is bounded by the limit.
The next page is the tasks older than the last one shown (``before=<id>``), never an offset.

A task's page answers the support questions in one place: where it is in its life (a timeline
from the task row and its attempts), why it runs where it runs or why it waits (the scheduler's
own explanation, as a table), what it printed (the tail of its logs), what the site measured
and what the ledger billed. The parts that change while a task runs are fragments htmx polls;
a finished task's page stops polling. The list's first page polls always (new tasks appear on
top), a later page only while a task it shows is unfinished. Another tenant's task is answered
exactly as a task that does not exist (404), so ids cannot be probed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from markupsafe import escape
from sqlalchemy import Connection, case, func, select
from starlette.concurrency import run_in_threadpool

from computility.domain.money import to_micro
from computility.server import states
from computility.server.auth import Identity
from computility.server.db import schema as db
from computility.server.db.among import among
from computility.server.db.retry import retrying
from computility.server.plane import ControlPlane
from computility.server.problems import ApiError
from computility.server.store import tasks as task_store
from computility.server.store.attempts import list_for_task
from computility.server.store.explain import explain
from computility.server.store.files import log_of
from computility.server.web.params import positive_id
from computility.server.web.render import SECURITY_HEADERS, page
from computility.server.web.session import PageForbidden, Viewer, checked_viewer, viewer

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
TEXT_MAX = 256
"""The longest name search or site filter accepted (a task's name is at most 256 characters)."""
LOG_TAIL_BYTES = 64 * 1024
"""A log pane shows this much of the end of a log: enough to see what went wrong, small enough
to poll every 2 s."""
CANDIDATES_SHOWN = 50
"""The explanation's best candidates shown; on a network of 1,000 sites there may be thousands."""
STREAMS = ("stdout", "stderr")
TASK_STATES = tuple(states.TASK_TRANSITIONS)
HTMX_STOP_POLLING = 286
"""htmx stops polling an element whose request is answered with this status (and still swaps)."""


class BadQuery(Exception):
    """A query value a page does not understand: answered 400, naming the field."""

    def __init__(self, field: str, expected: str, got: str) -> None:
        super().__init__(f"{field}: expected {expected}, got '{got}'")
        self.field, self.expected, self.got = field, expected, got


def bad_query_page(request: Request, who: Viewer, error: BadQuery) -> HTMLResponse:
    detail = who.t("error.bad_value", field=error.field, expected=error.expected,
                   got=error.got[:100])
    return page(request, "error.html", {"who": who, "kind": "bad_request", "detail": detail},
                status=400)


def not_found_page(request: Request, who: Viewer) -> HTMLResponse:
    return page(request, "error.html", {"who": who, "kind": "not_found"}, status=404)


# --------------------------------------------------------------------------- the list


@dataclass(frozen=True)
class TaskFilter:
    """What the list is narrowed to; every field is optional."""

    q: str = ""
    state: str = ""
    site: str = ""
    tenant: str = ""
    before: int | None = None

    def query(self, before: int | None = None) -> str:
        """The query string of this filter, on the page of tasks older than `before`."""
        pairs = [(k, v) for k, v in (("q", self.q), ("state", self.state), ("site", self.site),
                                     ("tenant", self.tenant)) if v]
        if before is not None:
            pairs.append(("before", str(before)))
        return urlencode(pairs)


def parse_filter(params: Any, who: Viewer) -> TaskFilter:
    """The filter of a list request; `BadQuery` for a value it cannot be, `PageForbidden` for
    another tenant asked by a key that may see only its own."""
    def text(name: str) -> str:
        value = str(params.get(name) or "").strip()
        if len(value) > TEXT_MAX:
            raise BadQuery(name, who.t("tasks.bad.text", n=TEXT_MAX), value)
        return value

    state = text("state")
    if state and state not in TASK_STATES:
        raise BadQuery("state", who.t("tasks.bad.state", states=", ".join(TASK_STATES)), state)
    tenant = text("tenant")
    if tenant and tenant != who.tenant and not who.operator:
        raise PageForbidden()
    raw = text("before")
    before: int | None = None
    if raw:
        before = positive_id(raw)
        if before is None:
            raise BadQuery("before", who.t("tasks.bad.before"), raw)
    return TaskFilter(q=text("q"), state=state, site=text("site"), tenant=tenant, before=before)


def _like(text: str) -> str:
    """`text` as a LIKE pattern matching it anywhere, its own wildcards taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _list_figures(conn: Connection, rows: list[dict[str, Any]], now: float) -> None:
    """Add each task's run time so far and what the ledger billed it, in one indexed query:
    attempts by their ``(task_id, number)`` key, ledger entries by their unique attempt."""
    if not rows:
        return
    a, led = db.attempts.c, db.ledger.c
    running_since = func.max(case((a.state == states.RUNNING, a.started_at)))
    figures = {r[0]: r[1:] for r in conn.execute(
        select(a.task_id, func.sum(a.run_s), running_since, func.count(led.id),
               func.sum(led.total_micro))
        .select_from(db.attempts.outerjoin(db.ledger, led.attempt_id == a.id))
        .where(among(conn, a.task_id, [r["id"] for r in rows])).group_by(a.task_id)).all()}
    for r in rows:
        ran, since, billed, micro = figures.get(r["id"], (None, None, 0, None))
        elapsed = None if since is None else max(0.0, now - float(since))
        r["run_shown"] = None if ran is None and elapsed is None else \
            float(ran or 0.0) + (elapsed or 0.0)
        r["billed"] = bool(billed)
        r["cost_micro"] = int(micro or 0)


def list_page(plane: ControlPlane, who: Identity,
              f: TaskFilter) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the tasks `who` may see under `f`, newest first, and the id the next page
    starts before (None: this is the last page)."""
    t = db.tasks.c
    query = select(t.id, t.name, t.tenant_id, t.state, t.site_id, t.pool_id, t.submitted_at,
                   t.finished_at, t.quote_max_micro).where(task_store.visible(who))
    if f.tenant:
        query = query.where(t.tenant_id == f.tenant)
    if f.state:
        query = query.where(t.state == f.state)
    if f.site:
        query = query.where(t.site_id == f.site)
    if f.q:
        query = query.where(t.name.ilike(_like(f.q), escape="\\"))
    if f.before is not None:
        query = query.where(t.id < f.before)
    query = query.order_by(t.id.desc()).limit(PAGE_SIZE + 1)
    with plane.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        _list_figures(conn, rows, time.time())
    return rows, (int(rows[-1]["id"]) if more else None)


async def _list_context(request: Request, who: Viewer) -> dict[str, Any]:
    f = parse_filter(request.query_params, who)
    rows, next_before = await run_in_threadpool(list_page, request.app.state.plane, who.who, f)
    return {"who": who, "f": f, "rows": rows, "task_states": TASK_STATES,
            # The first page also polls for tasks submitted meanwhile (they appear on top).
            "live": f.before is None or any(r["state"] not in states.TERMINAL for r in rows),
            "this_query": f.query(f.before),
            "next_query": None if next_before is None else f.query(next_before),
            "newest_query": f.query() if f.before is not None else None}


@router.get("/tasks", response_class=HTMLResponse)
async def tasks(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    try:
        context = await _list_context(request, who)
    except BadQuery as error:
        return bad_query_page(request, who, error)
    return page(request, "tasks.html", context)


@router.get("/tasks/rows", response_class=HTMLResponse)
async def task_rows(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    """The list's table body, polled while a task it shows is unfinished."""
    try:
        context = await _list_context(request, who)
    except BadQuery as error:
        return bad_query_page(request, who, error)
    return page(request, "_tasks_rows.html", context)


# --------------------------------------------------------------------------- one task


def _task_id(raw: str) -> int | None:
    return positive_id(raw)


def _stages(row: dict[str, Any], attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """submitted → placed/queued → leased → running → ended, each with when it was reached
    (None: not yet, or no time is recorded for it); the current round of a retried task."""
    state = row["state"]
    latest = attempts[-1] if attempts else None
    this_round = latest if latest is not None and state not in (
        states.PENDING, states.HELD, states.QUEUED) else None
    site = row["site_id"] or (latest["site_id"] if latest else None)
    pool = row["pool_id"] or (latest["pool_id"] if latest else None)
    placed = state == states.QUEUED or this_round is not None
    ended = state in states.TERMINAL
    return [
        {"key": "submitted", "reached": True, "at": row["submitted_at"], "site": None},
        {"key": "placed", "reached": placed, "at": None, "site": (site, pool) if placed else None},
        {"key": "leased", "reached": this_round is not None,
         "at": this_round["leased_at"] if this_round else None,
         "site": (this_round["site_id"], this_round["pool_id"]) if this_round else None},
        {"key": "running", "reached": bool(this_round and this_round["started_at"]),
         "at": this_round["started_at"] if this_round else None, "site": None},
        {"key": "ended", "reached": ended, "at": row["finished_at"], "site": None},
    ]


def task_view(plane: ControlPlane, who: Identity, task_id: int) -> dict[str, Any] | None:
    """Everything a task's page shows but the explanation and logs; None when `who` may not
    see the task (or there is none)."""
    t = db.tasks.c
    with plane.engine.connect() as conn:
        found = conn.execute(select(db.tasks).where(t.id == task_id, task_store.visible(who))
                             ).mappings().first()
        if found is None:
            return None
        row = dict(found)
        attempts = list_for_task(plane, task_id)
        bills = {b["attempt_id"]: dict(b) for b in conn.execute(select(db.ledger).where(
            among(conn, db.ledger.c.attempt_id, [a["id"] for a in attempts]))).mappings()} \
            if attempts else {}
        sites = {a["site_id"] for a in attempts} | ({row["site_id"]} if row["site_id"] else set())
        devices = {(p[0], p[1]): p[2] for p in conn.execute(
            select(db.pools.c.site_id, db.pools.c.pool_id, db.pools.c.device)
            .where(among(conn, db.pools.c.site_id, sorted(sites))))} if sites else {}
    for a in attempts:
        a["bill"] = bills.get(a["id"])
        a["device"] = (a["bill"] or {}).get("device") or devices.get((a["site_id"], a["pool_id"]))
        a["usage"] = a["usage"] if isinstance(a["usage"], dict) else {}
    billed = list(bills.values())
    totals = {k: sum(b[k] for b in billed) for k in (
        "cu_hours", "kwh", "carbon_kg", "gb_moved", "compute_micro", "energy_micro",
        "network_micro", "total_micro", "run_s")}
    spec = row["spec"] if isinstance(row["spec"], dict) else {}
    run = spec.get("run")
    unfinished = row["state"] not in states.TERMINAL
    return {
        "task": row, "attempts": attempts, "totals": totals, "billed": bool(billed),
        "stages": _stages(row, attempts), "unfinished": unfinished,
        "device": devices.get((row["site_id"], row["pool_id"])) or (
            attempts[-1]["device"] if attempts else None),
        "command": run if isinstance(run, str) else None,
        "started_at": next((a["started_at"] for a in attempts if a["started_at"]), None),
        "may_cancel": unfinished and who.may_submit() and not row["cancel_requested"],
    }


def _explanation(plane: ControlPlane, who: Identity, task_id: int) -> dict[str, Any]:
    """The scheduler's explanation, its best candidates with money as micro-units."""
    found = explain(plane, who, task_id)
    rows = [{**c.model_dump(), "price_micro": to_micro(c.price),
             "max_micro": to_micro(c.max_price)} for c in found.candidates[:CANDIDATES_SHOWN]]
    return {"reason": found.reason, "candidates": rows,
            "more": max(0, len(found.candidates) - CANDIDATES_SHOWN)}


def log_tail(plane: ControlPlane, task_id: int, stream: str) -> tuple[str, int]:
    """The end of the task's `stream` (at most `LOG_TAIL_BYTES`, from a line's start) and the
    whole log's size in bytes."""
    path, _ = log_of(plane, task_id, stream)
    if path is None:
        return "", 0
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - LOG_TAIL_BYTES))
        data = fh.read(LOG_TAIL_BYTES)
    if size > LOG_TAIL_BYTES and b"\n" in data:
        data = data[data.index(b"\n") + 1:]
    return data.decode("utf-8", errors="replace"), size


def _logs(plane: ControlPlane, task_id: int) -> dict[str, dict[str, Any]]:
    out = {}
    for stream in STREAMS:
        text, size = log_tail(plane, task_id, stream)
        out[stream] = {"text": text, "size": size, "cut": size > LOG_TAIL_BYTES}
    return out


def _page_data(plane: ControlPlane, who: Identity, task_id: int) -> dict[str, Any] | None:
    view = task_view(plane, who, task_id)
    if view is None:
        return None
    view["explanation"] = _explanation(plane, who, task_id)
    view["logs"] = _logs(plane, task_id)
    view["region_names"] = {r.id: r.name for r in plane.base.regions}
    return view


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(request: Request, task_id: str,
                    who: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    number = _task_id(task_id)
    view = None if number is None else await run_in_threadpool(
        _page_data, request.app.state.plane, who.who, number)
    if view is None:
        return not_found_page(request, who)
    return page(request, "task.html", {"who": who, "log_tail_kib": LOG_TAIL_BYTES // 1024,
                                       **view})


@router.get("/tasks/{task_id}/live", response_class=HTMLResponse)
async def task_live(request: Request, task_id: str,
                    who: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    """The summary, timeline, usage and cost: polled while the task is unfinished (a finished
    task's fragment carries no trigger, so polling stops)."""
    number = _task_id(task_id)
    view = None if number is None else await run_in_threadpool(
        task_view, request.app.state.plane, who.who, number)
    if view is None:
        return not_found_page(request, who)
    return page(request, "_task_live.html", {"who": who, **view})


@router.get("/tasks/{task_id}/log/{stream}", response_class=HTMLResponse)
async def task_log(request: Request, task_id: str, stream: str,
                   who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """A log pane's text (the tail), or with ``.txt`` the whole log as a download."""
    number = _task_id(task_id)
    whole = stream.endswith(".txt")
    stream = stream.removesuffix(".txt")
    plane: ControlPlane = request.app.state.plane
    view = None if number is None or stream not in STREAMS else await run_in_threadpool(
        task_view, plane, who.who, number)
    if view is None or number is None:
        return not_found_page(request, who)
    if whole:
        path, _ = await run_in_threadpool(log_of, plane, number, stream)
        if path is None:
            return not_found_page(request, who)
        return FileResponse(path, media_type="text/plain; charset=utf-8",
                            filename=f"task-{number}-{stream}.txt", headers=SECURITY_HEADERS)
    text, size = await run_in_threadpool(log_tail, plane, number, stream)
    body = str(escape(text)) if text else str(escape(who.t("task.log_empty")))
    if size > LOG_TAIL_BYTES:
        note = who.t("task.log_tail", kib=LOG_TAIL_BYTES // 1024, total=size // 1024)
        body = f"{escape(note)}\n{body}"
    done = not view["unfinished"] and request.headers.get("hx-request") is not None
    return HTMLResponse(body, status_code=HTMX_STOP_POLLING if done else 200,
                        headers=SECURITY_HEADERS)


@router.post("/tasks/{task_id}/cancel")
async def cancel(request: Request, task_id: str,
                 who: Annotated[Viewer, Depends(checked_viewer)]) -> Response:
    """Cancel as the API does (`computility.server.store.tasks.cancel`): at once if no attempt
    holds devices, else its agent is told to stop it."""
    number = _task_id(task_id)
    plane: ControlPlane = request.app.state.plane
    if number is None or await run_in_threadpool(task_view, plane, who.who, number) is None:
        return not_found_page(request, who)
    if not who.who.may_submit():
        raise PageForbidden()
    try:
        await run_in_threadpool(retrying, task_store.cancel, plane, who.who, number)
    except ApiError as error:
        if error.status == 404:
            return not_found_page(request, who)
        if error.status != 409:  # it kept changing: the page shows where it stands now
            raise
    plane.wake_scheduler.set()
    return RedirectResponse(f"/tasks/{number}", status_code=303, headers=SECURITY_HEADERS)

