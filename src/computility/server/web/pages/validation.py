"""The validation pages (operators only): start a run, follow it, compare the policies.

``/validation`` has the form and the past runs (newest first, by id); ``/validation/{id}``
follows a run (its status fragment polled every second while it is queued or running) and then
shows the comparison. Runs themselves are `computility.server.validation`'s business.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from computility.scheduler import QUEUE_DISCIPLINES
from computility.scheduler.policies import PLACEMENT_POLICIES
from computility.server.validation import runner as runner_module
from computility.server.validation import runs
from computility.server.validation.choices import (
    DEFAULT_POLICIES,
    MAX_GENERATED_SITES,
    MAX_SYNTHETIC,
    MAX_UPLOAD_BYTES,
    FieldProblem,
    RunChoices,
    UploadTooLarge,
    bundled_traces,
    check_trace,
    discard,
    parse_choices,
    store_upload,
)
from computility.server.validation.compare import comparison_view
from computility.server.validation.runner import MAX_RUNNING, ValidationRunner
from computility.server.web.i18n import Translator
from computility.server.web.params import positive_id
from computility.server.web.render import SECURITY_HEADERS, duration, page
from computility.server.web.session import Viewer, checked_viewer, require_operator, viewer

router = APIRouter(include_in_schema=False)

FORM_OVERHEAD_BYTES = 1024 * 1024
"""Room for the form's other fields and multipart framing beside the uploaded file."""
PROGRESS = re.compile(r"^policy (\d+)/(\d+): (\w+)$")
KNOWN_FAILURES = {
    runs.RESTARTED: "validation.failed.restarted",
    runner_module.WORKER_DIED: "validation.failed.worker_died",
    runner_module.NO_ANSWER: "validation.failed.worker_died",
    runner_module.WORKER_FAILED: "validation.failed.unexpected",
}
"""Failure messages the service itself writes, shown in the viewer's language; any other is
the simulator's own diagnostic (as ``computility sim`` prints it), shown as it is."""


def _mib(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB"


def _runner(request: Request) -> ValidationRunner | None:
    return getattr(request.app.state, "validation", None)


def workload_text(label: str, t: Translator) -> str:
    kind, _, rest = label.partition(":")
    if kind == "builtin":
        return t("validation.workload.bundled", name=rest)
    if kind == "synthetic":
        count = f"{int(rest):,}" if rest.isascii() and rest.isdigit() else rest
        return t("validation.workload.synthetic", n=count)
    if kind == "upload":
        return t("validation.workload.upload", name=rest)
    return label


def network_text(spec: str, t: Translator) -> str:
    if spec.startswith("generated:"):
        return t("validation.network.generated", n=spec.partition(":")[2])
    if spec in ("default", "single"):
        return t(f"validation.network.{spec}")
    return spec


def _policies_text(policies: list[str], t: Translator) -> str:
    return ", ".join(t(f"validation.policy.{p}") for p in policies)


def _form_context(who: Viewer, values: dict[str, str] | None = None,
                  policies: list[str] | None = None,
                  problems: dict[str, FieldProblem] | None = None) -> dict[str, Any]:
    t = who.t
    return {
        "bundled": bundled_traces(),
        "all_policies": PLACEMENT_POLICIES,
        "queues": tuple(QUEUE_DISCIPLINES),
        "values": values or {"source": "synthetic", "synthetic": "1000", "bundled": "",
                             "network": "default", "sites": "100", "queue": "easy",
                             "format": "auto", "limit": "", "seed": "0"},
        "chosen": policies if policies is not None else list(DEFAULT_POLICIES),
        "problems": {name: t(p.key, **p.values) for name, p in (problems or {}).items()},
        "max_synthetic": f"{MAX_SYNTHETIC:,}", "max_sites": MAX_GENERATED_SITES,
        "max_upload": _mib(MAX_UPLOAD_BYTES), "slots": MAX_RUNNING,
    }


def _list_context(request: Request, before: int | None) -> dict[str, Any]:
    rows, next_before = runs.list_runs(request.app.state.plane, before)
    return {"runs": rows, "next_before": next_before, "paged": before is not None}


async def _index(request: Request, who: Viewer, status: int = 200,
                 **form: Any) -> HTMLResponse:
    listing = await run_in_threadpool(_list_context, request, None)
    return page(request, "validation.html", {
        "who": who, **_form_context(who, **form), **listing,
        "workload_text": workload_text, "network_text": network_text,
        "policies_text": _policies_text}, status=status)


@router.get("/validation", response_class=HTMLResponse)
async def validation_index(request: Request, who: Annotated[Viewer, Depends(viewer)],
                           before: str | None = None) -> HTMLResponse:
    require_operator(who)
    before_id = None
    if before:
        before_id = positive_id(before)
        if before_id is None:
            return page(request, "error.html", {"who": who, "kind": "bad_request",
                                                "detail": who.t("validation.error.bad_before")},
                        status=400)
    listing = await run_in_threadpool(_list_context, request, before_id)
    return page(request, "validation.html", {
        "who": who, **_form_context(who), **listing, "workload_text": workload_text,
        "network_text": network_text, "policies_text": _policies_text})


@router.post("/validation/runs", response_class=HTMLResponse)
async def create_run(request: Request) -> Response:
    """Check the form (and read an uploaded trace) before a run exists; then queue it.

    The body's size is checked before anything reads it (this route is outside the service's
    general body limit, so that a trace may be larger), and only then the session's CSRF
    token, which is read from the form: hence `checked_viewer` is called here, not declared.
    """
    require_operator(await viewer(request))  # reads no body
    length = request.headers.get("content-length", "")
    limit = MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES
    if not (length.isascii() and length.isdigit()) or int(length) > limit:
        who = await viewer(request)
        return page(request, "error.html", {"who": who, "kind": "bad_request", "detail": who.t(
            "validation.error.body_too_large", max=_mib(MAX_UPLOAD_BYTES))}, status=413)
    who = await checked_viewer(request)
    form = await request.form()
    values = {k: v.strip() for k, v in form.items() if isinstance(v, str)}
    chosen = [v for v in form.getlist("policy") if isinstance(v, str)]
    upload = form.get("upload")
    has_upload = isinstance(upload, UploadFile) and bool(upload.filename) and bool(upload.size)
    choices, problems = parse_choices(values, chosen, has_upload)
    if choices is None:
        return await _index(request, who, 422, values=values, policies=chosen,
                            problems=problems)
    stored, upload_name = None, None
    if choices.source == "upload" and isinstance(upload, UploadFile):
        upload_name = (upload.filename or "trace").replace("/", "_")[-120:]
        problem = None
        try:
            stored = await run_in_threadpool(store_upload, upload.file, upload_name,
                                             request.app.state.plane.settings.data_dir)
        except UploadTooLarge:
            problem = FieldProblem("validation.error.too_large", {"max": _mib(MAX_UPLOAD_BYTES)})
        if stored is not None:
            problem = await _read_upload(choices, stored, upload_name)
        if problem is not None:
            discard(stored)
            return await _index(request, who, 422, values=values, policies=chosen,
                                problems={"upload": problem})
    new = runs.NewRun(tenant=who.tenant, key_id=who.who.key_id,
                      trace=choices.label(upload_name), network=choices.network,
                      policies=choices.policies,
                      options=choices.options(stored.name if stored else None, upload_name))
    run_id = await run_in_threadpool(runs.create_run, request.app.state.plane, new, who.who)
    runner = _runner(request)
    if runner is not None:
        runner.wake()
    return RedirectResponse(f"/validation/{run_id}", status_code=303, headers=SECURITY_HEADERS)


async def _read_upload(choices: RunChoices, stored: Any, name: str) -> FieldProblem | None:
    """Read the stored trace as the run will; the problem to show, if any."""
    found = await run_in_threadpool(check_trace, stored, choices.fmt, choices.limit, name)
    if found.key is not None:
        return FieldProblem(found.key)
    if found.line is not None:
        return FieldProblem("validation.error.bad_line", {
            "line": found.line, "field": found.field, "expected": found.expected,
            "got": found.got})
    if found.message is not None:
        return FieldProblem("validation.error.bad_file", {"message": found.message})
    if not found.jobs:
        return FieldProblem("validation.error.no_jobs")
    return None


def _run_or_none(request: Request, run_id: str) -> dict[str, Any] | None:
    number = positive_id(run_id)
    return None if number is None else runs.get_run(request.app.state.plane, number)


def _status_context(request: Request, run: dict[str, Any], who: Viewer) -> dict[str, Any]:
    """What the status fragment shows for the run's state (see `_validation_status.html`)."""
    t = who.t
    ctx: dict[str, Any] = {"run": run, "ahead": 0, "progress_text": "", "failure": None,
                           "view": None, "result": None}
    state = run["state"]
    if state == runs.QUEUED:
        ctx["ahead"] = runs.queued_ahead(request.app.state.plane, run["id"])
    elif state == runs.RUNNING:
        found = PROGRESS.match(run["message"] or "")
        ctx["progress_text"] = t("validation.progress.preparing") if found is None else t(
            "validation.progress.policy", k=found[1], n=found[2],
            policy=t(f"validation.policy.{found[3]}") if found[3] in PLACEMENT_POLICIES
            else found[3])
    elif state == runs.FAILED:
        message = run["message"] or runner_module.WORKER_DIED
        key = KNOWN_FAILURES.get(message)
        ctx["failure"] = t(key) if key else message
    elif state == runs.DONE:
        result = runs.result_of(run)
        if result is not None:
            options = run["options"] or {}
            ctx["result"] = result
            ctx["summary"] = t("validation.summary", jobs=f"{int(result.get('jobs', 0)):,}",
                               skipped=f"{int(result.get('skipped', 0)):,}",
                               network=network_text(run["network"], t),
                               queue=t(f"validation.queue.{options.get('queue', 'easy')}"))
            ctx["view"] = comparison_view(result, t, request.app.state.plane.currency)
    return ctx


def _run_context(request: Request, run_id: str, who: Viewer) -> dict[str, Any] | None:
    run = _run_or_none(request, run_id)
    if run is None:
        return None
    return {"who": who, **_status_context(request, run, who)}


@router.get("/validation/{run_id}", response_class=HTMLResponse)
async def validation_run(request: Request, run_id: str,
                         who: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    require_operator(who)
    ctx = await run_in_threadpool(_run_context, request, run_id, who)
    if ctx is None:
        return page(request, "error.html", {"who": who, "kind": "not_found"}, status=404)
    run = ctx["run"]
    took = None
    if run["started_at"] is not None and run["finished_at"] is not None:
        took = duration(run["finished_at"] - run["started_at"])
    return page(request, "validation_run.html", {
        **ctx, "took": took, "workload_text": workload_text, "network_text": network_text,
        "policies_text": _policies_text})


@router.get("/validation/{run_id}/status", response_class=HTMLResponse)
async def validation_status(request: Request, run_id: str,
                            who: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    require_operator(who)
    ctx = await run_in_threadpool(_run_context, request, run_id, who)
    if ctx is None:
        return page(request, "error.html", {"who": who, "kind": "not_found"}, status=404)
    return page(request, "_validation_status.html", ctx)


@router.post("/validation/{run_id}/cancel")
async def cancel_run(request: Request, run_id: str) -> Response:
    """Cancel a queued or running run; its worker is gone before the answer is sent. The role
    is checked before the form is read (and its CSRF token with it), so no one else's form body
    is ever parsed here."""
    require_operator(await viewer(request))
    who = await checked_viewer(request)
    run = await run_in_threadpool(_run_or_none, request, run_id)
    if run is None:
        return page(request, "error.html", {"who": who, "kind": "not_found"}, status=404)
    runner = _runner(request)
    if runner is not None:
        await run_in_threadpool(runner.cancel, int(run["id"]), who.who)
    else:
        await run_in_threadpool(runs.cancel, request.app.state.plane, int(run["id"]), who.who)
    return RedirectResponse(f"/validation/{run['id']}", status_code=303,
                            headers=SECURITY_HEADERS)
