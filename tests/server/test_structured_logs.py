"""Structured logs: one JSON object per line, each carrying the request that caused it and the
task, site and tenant it concerns; ``computility up --log-format`` chooses JSON or text.

The service tests run the real control plane on 127.0.0.1 (SQLite, then PostgreSQL) and read
what its loggers write through the JSON formatter `computility up` installs.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from computility.cli.up import resolve_log_format
from computility.domain.errors import UsageError
from computility.server.observability.logging import (
    JsonFormatter,
    TextFormatter,
    bind,
    configure,
    log_context,
)
from computility.testing.controlplane import (
    FakeAgent,
    LocalControlPlane,
    free_port,
    local_control_plane,
    new_tenant,
    wait_until,
)

CPU = "EPYC-7763"
Lines = Callable[[], list[dict[str, Any]]]


@contextmanager
def json_lines(logger: str = "computility") -> Iterator[Lines]:
    """What `logger` and its children write from DEBUG up, as parsed JSON lines (every line
    must parse)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    target = logging.getLogger(logger)
    level = target.level
    target.setLevel(logging.DEBUG)
    target.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


def one(lines: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [x for x in lines if match.items() <= x.items()]
    assert len(found) == 1, f"{match}: {len(found)} lines"
    return found[0]


@pytest.fixture
def user(service: LocalControlPlane) -> Iterator[httpx.Client]:
    with service.client(new_tenant(service.client(), "lab")) as client:
        yield client


def test_a_requests_lines_carry_its_request_id_task_and_tenant(
    service: LocalControlPlane, user: httpx.Client,
) -> None:
    task = user.post("/api/v1/tasks", json={"run": "x", "resources": {"cpus": 1}}).json()
    with json_lines() as lines:
        r = user.post(f"/api/v1/tasks/{task['id']}/cancel",
                      headers={"X-Request-ID": "req-cancel-1"})
        assert r.status_code == 200, r.text
        assert r.headers["X-Request-ID"] == "req-cancel-1"
        # The access line is written once the response is sent; an earlier request's may
        # arrive meanwhile, so wait for this request's own.
        wait_until(lambda: any(x["logger"] == "computility.access"
                               and x.get("request_id") == "req-cancel-1" for x in lines()))
        got = lines()
    # Logged by the handler, in the thread pool: the request's context travelled there.
    cancelled = one(got, logger="computility.tasks",
                    message=f"task {task['id']}: cancelled by the user")
    assert cancelled["request_id"] == "req-cancel-1"
    assert cancelled["task_id"] == str(task["id"])
    assert cancelled["tenant"] == "lab"
    assert cancelled["level"] == "INFO"
    assert cancelled["ts"].endswith("Z")
    access = one(got, logger="computility.access", request_id="req-cancel-1")
    assert access["route"] == "/api/v1/tasks/{task_id}/cancel"
    assert access["path"] == f"/api/v1/tasks/{task['id']}/cancel"
    assert (access["method"], access["status"]) == ("POST", 200)
    assert (access["tenant"], access["task_id"]) == ("lab", str(task["id"]))
    assert access["duration_s"] >= 0


def test_a_request_without_a_sane_id_gets_a_fresh_one(
    service: LocalControlPlane, user: httpx.Client,
) -> None:
    with json_lines() as lines:
        plain = user.get("/api/v1/tasks")
        forged = user.get("/api/v1/tasks", headers={"X-Request-ID": 'x"} {"level": "ERROR'})
        wait_until(lambda: len([x for x in lines() if x["logger"] == "computility.access"]) == 2)
        got = lines()
    ids = [plain.headers["X-Request-ID"], forged.headers["X-Request-ID"]]
    for request_id in ids:
        assert len(request_id) == 32 and int(request_id, 16) >= 0
        assert one(got, logger="computility.access", request_id=request_id)["status"] == 200
    assert ids[0] != ids[1]


def test_an_agents_report_is_logged_with_its_site_and_task(
    service: LocalControlPlane, user: httpx.Client,
) -> None:
    agent = FakeAgent(service.url, new_tenant(service.client(), "hubs", "provider"), "zjk-1",
                      {"cpu": (CPU, 64)}).register()
    task = user.post("/api/v1/tasks", json={"run": "x", "resources": {"cpus": 1}}).json()
    wait_until(lambda: user.get(f"/api/v1/tasks/{task['id']}").json()["state"] == "queued")
    with agent.client() as http, json_lines() as lines:
        [lease] = http.post("/api/v1/agent/lease", json={"free": {"cpu": 64}}).json()["leases"]
        r = http.post(f"/api/v1/agent/attempts/{lease['attempt']}/report",
                      json={"token": lease["token"], "state": "running"},
                      headers={"X-Request-ID": "report-1"})
        assert r.status_code == 200, r.text
        wait_until(lambda: any(x.get("request_id") == "report-1"
                               and x["logger"] == "computility.access" for x in lines()))
        access = one(lines(), logger="computility.access", request_id="report-1")
    assert access["route"] == "/api/v1/agent/attempts/{attempt_id}/report"
    assert access["level"] == "DEBUG"  # routine agent traffic
    assert (access["site_id"], access["task_id"]) == ("zjk-1", str(task["id"]))
    assert access["tenant"] == "hubs"


def test_the_loops_lines_name_the_task_and_site_and_no_request(
    db_url: str | None, tmp_path: Path,
) -> None:
    with local_control_plane(tmp_path / "data", db_url, cycle_s=0.1,
                             lease_ttl_s=1.0) as server:
        admin = server.client()
        agent = FakeAgent(server.url, new_tenant(admin, "hubs", "provider"), "zjk-1",
                          {"cpu": (CPU, 64)}).register()
        user = server.client(new_tenant(admin, "lab"))
        task = user.post("/api/v1/tasks", json={"run": "x", "resources": {"cpus": 1}}).json()
        wait_until(lambda: user.get(f"/api/v1/tasks/{task['id']}").json()["state"] == "queued")
        with agent.client() as http, json_lines() as lines:
            [lease] = http.post("/api/v1/agent/lease",
                                json={"free": {"cpu": 64}}).json()["leases"]
            wait_until(lambda: any(x["logger"] == "computility.attempts" for x in lines()),
                       timeout=30)
            expired = one(lines(), logger="computility.attempts")
    assert expired["level"] == "WARNING"
    assert str(lease["attempt"]) in expired["message"]
    assert (expired["task_id"], expired["site_id"]) == (str(task["id"]), "zjk-1")
    assert "request_id" not in expired


def test_context_fields_extras_and_tracebacks_are_written() -> None:
    record_lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record_lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("computility.test-structured")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    def emit() -> None:
        with log_context(site_id="s1"):
            with log_context(task_id=7):
                log.warning("inner %s", "line", extra={"attempt": 3})
            bind(tenant="lab")
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("failed")
        log.info("outside")

    try:
        # A fresh context: an app served in-process by an earlier test (an ASGI transport runs
        # it in the caller's task) leaves its last request's fields in this thread's context.
        contextvars.Context().run(emit)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    inner, failed, outside = (json.loads(x) for x in record_lines)
    assert inner["message"] == "inner line"
    assert (inner["site_id"], inner["task_id"], inner["attempt"]) == ("s1", "7", 3)
    assert "tenant" not in inner
    assert (failed["site_id"], failed["tenant"]) == ("s1", "lab")
    assert "task_id" not in failed
    assert "ValueError: boom" in failed["exception"]
    assert not {"site_id", "task_id", "tenant", "request_id"} & outside.keys()


def test_the_text_format_appends_the_known_fields() -> None:
    record = logging.LogRecord("computility.x", logging.INFO, __file__, 1, "hello", None, None)
    with log_context(task_id=5, tenant="lab"):
        line = TextFormatter().format(record)
    assert line.endswith("INFO computility.x hello [task_id=5 tenant=lab]")


def test_configure_installs_one_handler_and_refuses_an_unknown_format() -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure("text", stream=io.StringIO())
        configure("json", stream=stream)
        assert len(root.handlers) == len(before) + 1
        logging.getLogger("computility.test-configure").info("configured")
        assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "configured"
        with pytest.raises(ValueError, match="log format: expected one of json, text, got 'xml'"):
            configure("xml")
    finally:
        root.handlers[:] = before
        root.setLevel(level)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_log_format_is_text_at_a_terminal_and_json_elsewhere() -> None:
    assert resolve_log_format("auto", _Tty()) == "text"
    assert resolve_log_format("auto", io.StringIO()) == "json"
    assert resolve_log_format("text", io.StringIO()) == "text"
    with pytest.raises(UsageError, match="--log-format: expected auto, json or text, got 'x'"):
        resolve_log_format("x")


def test_computility_up_writes_json_lines(db_url: str | None, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "COMPUTILITY_API_KEY": "",
           "COMPUTILITY_SERVER": ""}
    args = [sys.executable, "-m", "computility", "up", "--port", str(port), "--no-local-site",
            "--log-format", "json"] + (["--db", db_url] if db_url else [])
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=60)
        httpx.get(f"{url}/api/v1/whoami", headers={"X-Request-ID": "up-1"})
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    lines = [json.loads(x) for x in err.decode().splitlines()]
    assert one(lines, logger="computility.up", message=f"serving http://127.0.0.1:{port}")
    refused = one(lines, logger="computility.access", request_id="up-1")
    assert (refused["status"], refused["route"]) == (401, "/api/v1/whoami")
