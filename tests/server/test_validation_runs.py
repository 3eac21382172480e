"""Validation runs: each simulation runs in its own worker process, reports the simulator's own
figures, can be cancelled (its process killed), never starts from a file that cannot be read,
and a run left behind by a dead service is failed at the next start."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import func, select, update

from computility.server.db import schema as db
from computility.server.validation import runs
from computility.server.validation.choices import uploads_dir
from computility.server.validation.runner import ValidationRunner
from computility.sim.run import SimRequest, simulate
from computility.testing.controlplane import LocalControlPlane, local_control_plane, wait_until

TIMING_KEYS = ("wall_s", "events_per_s", "tenants")
"""Figures that measure the replay itself (or are left out of a comparison), not its outcome."""


def _queue(server: LocalControlPlane, trace: str, policies: tuple[str, ...],
           network: str = "default", synthetic: int | None = None) -> int:
    options = {"source": "synthetic" if synthetic else "bundled", "trace": trace,
               "synthetic": synthetic, "fmt": "auto", "queue": "easy", "limit": None,
               "seed": 0, "upload": None, "upload_name": None}
    run_id = runs.create_run(server.plane, runs.NewRun(
        tenant="default", key_id="test", trace=trace or f"synthetic:{synthetic}",
        network=network, policies=policies, options=options))
    _runner(server).wake()
    return run_id


def _runner(server: LocalControlPlane) -> ValidationRunner:
    runner: ValidationRunner = server.app.state.validation
    return runner


def _row(server: LocalControlPlane, run_id: int) -> dict[str, Any]:
    row = runs.get_run(server.plane, run_id)
    assert row is not None
    return row


def _gone(pid: int) -> bool:
    return not runs.pid_alive(pid)


def test_a_run_completes_in_a_worker_process_with_the_simulators_own_figures(
        service: LocalControlPlane) -> None:
    run_id = _queue(service, "", ("cheapest", "fastest"), synthetic=200)
    wait_until(lambda: _row(service, run_id)["state"] not in ("queued", "running"), timeout=90)
    row = _row(service, run_id)
    assert row["state"] == "done", row["message"]
    assert row["progress"] == 1.0 and row["finished_at"] >= row["started_at"]
    result = runs.result_of(row)
    assert result is not None
    # The service runs in this test's process; the simulation did not.
    assert result["worker_pid"] == row["pid"] != os.getpid()
    assert _gone(row["pid"])

    direct = simulate(SimRequest(synthetic=200, network="default",
                                 policies=("cheapest", "fastest"), queues=("easy",))).report()
    assert [r["policy"] for r in result["results"]] == ["cheapest", "fastest"]
    assert result["jobs"] == direct["jobs"] == 200
    theirs_all = cast(list[dict[str, Any]], direct["results"])
    for ours, theirs in zip(result["results"], theirs_all, strict=True):
        expected = {k: v for k, v in theirs.items() if k not in TIMING_KEYS}
        assert {k: v for k, v in ours.items() if k not in TIMING_KEYS} == expected
    series = result["series"]
    assert len(series["x"]) == len(series["utilization"][0]) == len(series["waiting"][1]) > 0
    assert all(0 <= u <= 1.0001 for u in series["utilization"][0] if u is not None)


def test_cancelling_kills_the_worker_and_the_run_stays_cancelled(
        service: LocalControlPlane) -> None:
    run_id = _queue(service, "", ("balanced", "cheapest"), synthetic=100_000)
    wait_until(lambda: _row(service, run_id)["pid"] is not None, timeout=30)
    pid = _row(service, run_id)["pid"]
    assert not _gone(pid)
    assert _runner(service).cancel(run_id)
    assert _gone(pid), "the worker process still exists after the cancel returned"
    time.sleep(1.5)  # a worker that lived on would have reported by now
    row = _row(service, run_id)
    assert row["state"] == "cancelled" and row["result"] is None
    assert _runner(service).running_here() == []
    assert not _runner(service).cancel(run_id)  # an ended run cannot be cancelled again


def test_at_most_two_runs_at_once_the_rest_wait_their_turn(service: LocalControlPlane) -> None:
    ids = [_queue(service, "", ("balanced",), synthetic=100_000) for _ in range(3)]
    wait_until(lambda: len(_runner(service).running_here()) == 2, timeout=30)
    time.sleep(1.2)  # another poll of the runner: still two
    states = [_row(service, i)["state"] for i in ids]
    assert states == ["running", "running", "queued"]
    _runner(service).cancel(ids[0])
    wait_until(lambda: _row(service, ids[2])["state"] == "running", timeout=30)
    for i in ids:
        _runner(service).cancel(i)
    assert _runner(service).running_here() == []


def _operator_browser(server: LocalControlPlane) -> tuple[httpx.Client, str]:
    """A signed-in dashboard session of the operator, and its CSRF token."""
    token = re.compile(r'name="csrf" value="([^"]+)"')
    client = httpx.Client(base_url=server.url, timeout=60)
    form = client.get("/login")
    client.post("/login", data={"api_key": server.admin_key,
                                "csrf": token.findall(form.text)[0], "next": "/validation"})
    page = client.get("/validation")
    assert page.status_code == 200
    return client, token.findall(page.text)[0]


def _count_runs(server: LocalControlPlane) -> int:
    with server.plane.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.validation_runs)).scalar()
                   or 0)


def test_a_bad_upload_is_refused_naming_its_line_and_creates_no_run(
        service: LocalControlPlane) -> None:
    client, csrf = _operator_browser(service)
    bad = b"id,submit_s,run_s,cpus\n1,0,600,4\n2,30,ten minutes,2\n"
    try:
        r = client.post("/validation/runs", data={
            "csrf": csrf, "source": "upload", "format": "auto", "network": "single",
            "policy": ["balanced", "cheapest"], "queue": "easy"},
            files={"upload": ("jobs.csv", bad, "text/csv")})
    finally:
        client.close()
    assert r.status_code == 422
    assert "Line 3, field run_s: expected a number, got &#39;ten minutes&#39;" in r.text
    assert str(service.settings.data_dir) not in r.text
    assert _count_runs(service) == 0
    folder = uploads_dir(service.settings.data_dir)
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_restart_fails_the_runs_a_dead_service_left_running(
        db_url: str | None, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with local_control_plane(data, db_url, cycle_s=0.1) as first:
        orphan = runs.create_run(first.plane, runs.NewRun(
            tenant="default", key_id="test", trace="synthetic:10", network="default",
            policies=("balanced",), options={"synthetic": 10, "queue": "easy"}))
        elsewhere = runs.create_run(first.plane, runs.NewRun(
            tenant="default", key_id="test", trace="synthetic:10", network="default",
            policies=("balanced",), options={"synthetic": 10, "queue": "easy"}))
        # As a crash leaves them: running, owned by this replica (a process now gone), and by
        # a replica on another host.
        with first.plane.write() as conn:
            conn.execute(update(db.validation_runs).where(db.validation_runs.c.id == orphan)
                         .values(state="running", replica=first.plane.replica, pid=1))
            conn.execute(update(db.validation_runs).where(db.validation_runs.c.id == elsewhere)
                         .values(state="running", replica="another-host:1", pid=1))
    with local_control_plane(data, db_url, cycle_s=0.1) as second:
        row = _row(second, orphan)
        assert row["state"] == "failed" and row["message"] == runs.RESTARTED
        assert row["finished_at"] is not None
        # On SQLite one process owns the database: every running run was its own. On
        # PostgreSQL a live replica elsewhere finishes its own runs.
        assert _row(second, elsewhere)["state"] == ("failed" if db_url is None else "running")


def test_a_graceful_stop_queues_its_runs_again(db_url: str | None, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with local_control_plane(data, db_url, cycle_s=0.1) as first:
        run_id = _queue(first, "", ("balanced",), synthetic=100_000)
        wait_until(lambda: _row(first, run_id)["pid"] is not None, timeout=30)
        pid = _row(first, run_id)["pid"]
    assert _gone(pid)
    with local_control_plane(data, db_url, cycle_s=0.1) as second:
        wait_until(lambda: _row(second, run_id)["state"] == "running", timeout=30)
        assert _row(second, run_id)["pid"] != pid
        _runner(second).cancel(run_id)


def test_a_run_that_cannot_read_its_input_fails_with_the_simulators_message(
        service: LocalControlPlane) -> None:
    """The message names the file as the operator knows it, never where the service keeps it."""
    run_id = runs.create_run(service.plane, runs.NewRun(
        tenant="default", key_id="test", trace="upload:jobs.csv", network="single",
        policies=("balanced",), options={"source": "upload", "fmt": "auto", "queue": "easy",
                                         "upload": "gone.csv", "upload_name": "jobs.csv"}))
    _runner(service).wake()
    wait_until(lambda: _row(service, run_id)["state"] == "failed", timeout=60)
    row = _row(service, run_id)
    assert row["message"] == "jobs.csv: no such file"
    assert row["result"] is None and _gone(row["pid"])


def test_the_service_knows_the_workers_own_failure_text() -> None:
    from computility.server.validation.runner import WORKER_FAILED
    from computility.sim.worker import UNEXPECTED

    assert WORKER_FAILED == UNEXPECTED
