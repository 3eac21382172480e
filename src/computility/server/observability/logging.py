"""Structured logs: one JSON object per line, carrying what the line is about.

Every line says when (``ts``, UTC), how bad (``level``), who wrote it (``logger``) and what
(``message``), and, when known, which request caused it (``request_id``), which task, site and
tenant it concerns (``task_id``, ``site_id``, ``tenant``). Those four come from a context the
code sets once rather than from every call site:

- the request middleware starts a request's context with its id (`begin_request`);
- authentication and the handlers add the tenant, the task and the site the path names (`bind`);
- the scheduling loop wraps the work on one task or site in `log_context`.

Fields a caller passes with ``extra={...}`` are written too (the access log's method, route,
status and duration), so a log store can filter on them without parsing the message.

`configure` installs the format on the root logger for any deployment (``computility up`` calls
it with its ``--log-format``); the embedded service of the tests and the demo leaves logging as
its host program set it up.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

FIELDS = ("request_id", "task_id", "site_id", "tenant")
"""The context fields every line carries when they are known, in this order."""

FORMATS = ("json", "text")

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName",
}
"""Attributes every `LogRecord` has; anything else on a record came from ``extra=``."""


class _RequestFields(dict[str, str]):
    """A request's fields: one mutable mapping shared by every context the request runs in.

    A handler that runs in the thread pool runs in a *copy* of the request's context, so a
    context variable it sets would be lost when it returns; updating this shared mapping instead
    lets the middleware's access line (and every later line of the request) see the tenant and
    task that the handler learnt.
    """


_fields: ContextVar[dict[str, str] | None] = ContextVar("computility_log_fields", default=None)


def _clean(values: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None and v != ""}


def begin_request(request_id: str) -> None:
    """Start the context of one HTTP request (the middleware calls this first thing).

    Not reset at the end: each request runs in its own task, whose context dies with it, and
    the framework's last-resort error handler (outside every middleware) still logs with it.
    """
    _fields.set(_RequestFields(request_id=request_id))


def bind(**values: Any) -> None:
    """Add fields (``tenant=…``, ``task_id=…``, ``site_id=…``) to the current context, for the
    rest of it: inside a request, for every later line of that request; elsewhere, until the
    enclosing `log_context` ends. None values are ignored."""
    clean = _clean(values)
    if not clean:
        return
    current = _fields.get()
    if isinstance(current, _RequestFields):
        current.update(clean)
    else:
        _fields.set({**(current or {}), **clean})


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Fields for the lines logged inside the block only (one task's expiry, one site's work)."""
    token = _fields.set({**(_fields.get() or {}), **_clean(values)})
    try:
        yield
    finally:
        _fields.reset(token)


def context_fields() -> dict[str, str]:
    """The fields known here and now (a copy)."""
    return dict(_fields.get() or {})


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items()
            if k not in _RESERVED and not k.startswith("_") and k not in FIELDS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the context fields, the extras,
    and the traceback (``exception``) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = context_fields()
        for name in FIELDS:
            value = getattr(record, name, None) or context.get(name)
            if value is not None:
                out[name] = str(value)
        for key, value in _extras(record).items():
            out.setdefault(key, value)  # an extra never hides the line's own fields
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line for a person at a terminal, with the known context fields appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = context_fields()
        known = [(n, getattr(record, n, None) or context.get(n)) for n in FIELDS]
        tags = " ".join(f"{n}={v}" for n, v in known if v is not None)
        if not tags:
            return line
        head, sep, tail = line.partition("\n")  # after the message, before any traceback
        return f"{head} [{tags}]{sep}{tail}"


class _Installed(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` adds (so that calling it again replaces it, not adds one)."""


QUIET = {"httpx": logging.WARNING, "httpcore": logging.WARNING}

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of `fmt` (``json`` or ``text``)."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"log format: expected one of {', '.join(FORMATS)}, got '{fmt}'")


def configure(fmt: str = "json", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every log line of the process to `stream` (stderr) in `fmt`, from `level` up.

    Uvicorn's own loggers are made to pass their lines here too, so that one process writes one
    format: run uvicorn with ``log_config=None`` (else it installs its handlers again).
    """
    handler = _Installed(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Installed)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(quiet)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
