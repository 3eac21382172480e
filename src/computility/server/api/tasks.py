"""Tasks: submit (one or many), list, get, cancel, attempts, explain, quote, logs, outputs."""

from __future__ import annotations

import json
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from computility.server.api.deps import Caller, Plane
from computility.server.db.retry import retrying
from computility.server.problems import ApiError, forbidden, invalid, not_found
from computility.server.store import tasks as store
from computility.server.store.attempts import list_for_task
from computility.server.store.explain import explain, quote
from computility.server.store.files import file_of, visible_log
from computility.wire.api import (
    AttemptOut,
    Explanation,
    Quote,
    SubmitMany,
    Submitted,
    TaskList,
    TaskOut,
)
from computility.wire.spec import json_safe

router = APIRouter(prefix="/api/v1", tags=["tasks"])
MAX_ID = 2**63 - 1
TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]

SPEC_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object"}},
    "application/yaml": {"schema": {"type": "string"}},
}}}
"""A task spec body, as JSON or as the contract's YAML (read by `_spec_body`, not by FastAPI)."""

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


async def _spec_body(request: Request) -> Any:
    """A task spec as JSON, or as the contract's YAML (Content-Type: application/yaml)."""
    raw = await request.body()
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    try:
        if kind in YAML_TYPES:
            return json_safe(yaml.safe_load(raw.decode("utf-8")))
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        what = "YAML" if kind in YAML_TYPES else "JSON"
        raise ApiError(400, "Bad Request", f"body: not valid {what}: {error}",
                       [{"field": "body", "message": f"valid {what}"}]) from None
    except RecursionError:
        # The parsers recurse per level of nesting; no task spec is nested this deeply.
        raise ApiError(400, "Bad Request", "body: lists or mappings nested too deeply",
                       [{"field": "body", "message": "nested too deeply"}]) from None


@router.post("/tasks", status_code=201, response_model=TaskOut,
             openapi_extra=SPEC_BODY)
async def submit_task(
    request: Request, who: Caller, plane: Plane,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    if not who.may_submit():
        raise forbidden("submitting tasks needs a user or operator key")
    body = await _spec_body(request)
    specs = store.parse_specs([body], None)
    rows = await run_in_threadpool(retrying, store.submit, plane, who, [body], specs,
                                   idempotency_key, False)
    # Already a checked `TaskOut`: sent as is, not validated a second time by the framework
    # (the hottest route; `response_model` still documents it).
    out = store.task_out(rows[0], plane.currency)
    return Response(out.model_dump_json(), status_code=201, media_type="application/json")


@router.post("/tasks/batch", status_code=201, response_model=Submitted)
async def submit_tasks(
    body: SubmitMany, who: Caller, plane: Plane,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Submitted:
    if not who.may_submit():
        raise forbidden("submitting tasks needs a user or operator key")
    specs = store.parse_specs(body.tasks, "tasks")
    rows = await run_in_threadpool(retrying, store.submit, plane, who, body.tasks, specs,
                                   idempotency_key, True)
    return Submitted(tasks=[store.task_out(r, plane.currency) for r in rows])


@router.get("/tasks", response_model=TaskList)
def list_tasks(
    who: Caller, plane: Plane, state: str | None = None, name: str | None = None,
    limit: Annotated[int, Query(ge=1, le=store.LIST_LIMIT_MAX)] = 100,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> TaskList:
    rows, nxt = store.list_tasks(plane, who, state, name, limit, cursor)
    return TaskList(tasks=[store.task_out(r, plane.currency) for r in rows], next_cursor=nxt)


@router.get("/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: TaskId, who: Caller, plane: Plane) -> TaskOut:
    row = await store.status(plane, who, task_id)
    return store.task_out(row, plane.currency, with_spec=True)


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut)
def cancel_task(task_id: TaskId, who: Caller, plane: Plane) -> TaskOut:
    if not who.may_submit():
        raise forbidden("cancelling tasks needs a user or operator key")
    row = retrying(store.cancel, plane, who, task_id)
    plane.wake_scheduler.set()
    return store.task_out(row, plane.currency)


@router.get("/tasks/{task_id}/attempts", response_model=list[AttemptOut])
def task_attempts(task_id: TaskId, who: Caller, plane: Plane) -> list[AttemptOut]:
    store.check_visible(plane, who, task_id)
    return [
        AttemptOut(id=a["id"], task=a["task_id"], number=a["number"], site=a["site_id"],
                   pool=a["pool_id"], state=a["state"], leased_at=a["leased_at"],
                   started_at=a["started_at"], ended_at=a["ended_at"],
                   exit_code=a["exit_code"], run_s=a["run_s"], reason=a["reason"],
                   usage=a["usage"])
        for a in list_for_task(plane, task_id)
    ]


@router.get("/tasks/{task_id}/explain", response_model=Explanation)
def explain_task(task_id: TaskId, who: Caller, plane: Plane) -> Explanation:
    return explain(plane, who, task_id)


@router.post("/quote", response_model=Quote,
             openapi_extra=SPEC_BODY)
async def quote_task(request: Request, who: Caller, plane: Plane) -> Quote:
    body = await _spec_body(request)
    spec = store.parse_specs([body], None)[0]
    store.known_places(plane, [spec], False)
    return await run_in_threadpool(quote, plane, who, spec)


@router.get("/tasks/{task_id}/logs", response_class=PlainTextResponse)
async def task_logs(
    task_id: TaskId, who: Caller, plane: Plane, stream: str = "stdout",
    x_log_attempt: Annotated[int | None, Header(ge=1, le=MAX_ID)] = None,
) -> Response:
    """The latest attempt's log; `X-Log-Attempt` in the answer names that attempt. A reader
    that sends the attempt it has been reading (`X-Log-Attempt`) with a `Range` gets, when a
    newer attempt's log has replaced it, that whole log (200) instead of a range of it."""
    if stream not in ("stdout", "stderr"):
        raise invalid("stream", "stdout or stderr", 400)
    path, attempt = await visible_log(plane, who, task_id, stream)
    if path is None:
        return PlainTextResponse("")
    media = "text/plain; charset=utf-8"
    headers = {"X-Log-Attempt": str(attempt)}
    if x_log_attempt is not None and x_log_attempt != attempt:
        return Response(await run_in_threadpool(path.read_bytes), media_type=media,
                        headers=headers)
    return FileResponse(path, media_type=media, headers=headers)


@router.get("/tasks/{task_id}/outputs")
def task_outputs(task_id: TaskId, who: Caller, plane: Plane) -> Response:
    store.check_visible(plane, who, task_id)
    path = file_of(plane, task_id, "outputs")
    if path is None:
        raise not_found("outputs of task", task_id)
    return FileResponse(path, media_type="application/gzip",
                        filename=f"task-{task_id}-outputs.tar.gz")
