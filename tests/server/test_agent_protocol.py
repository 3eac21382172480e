"""The agent protocol: leases bounded by reported capacity, fencing tokens, idempotent final
reports, lease expiry and free re-placement, the infrastructure-failure limit, offline sites.

Here the test itself is the agent, over real HTTP with the site's agent key, so that it controls
exactly what is reported and when (heartbeats, leases, reports).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from computility.server.db import schema as db
from computility.testing.controlplane import (
    FakeAgent,
    LocalControlPlane,
    local_control_plane,
    new_tenant,
    wait_until,
)

CPU = "EPYC-7763"
TTL_S = 1.0
OFFLINE_S = 2.0


@pytest.fixture
def fast(db_url: str | None, tmp_path: Path) -> Iterator[LocalControlPlane]:
    """A control plane whose leases expire after 1 s and whose sites go offline after 2 s."""
    with local_control_plane(tmp_path / "fast", db_url, cycle_s=0.1, lease_ttl_s=TTL_S,
                             offline_after_s=OFFLINE_S) as server:
        yield server


class Agent:
    """A site's agent driven step by step by the test."""

    def __init__(self, server: LocalControlPlane, site: str,
                 pools: dict[str, tuple[str, int]] | None = None, **kw: Any) -> None:
        provider = new_tenant(server.client(), "provider-co", "provider")
        fake = FakeAgent(server.url, provider, site, pools or {"cpu": (CPU, 64)}, **kw)
        self.site = site
        self.key = fake.register().key
        self.http = httpx.Client(base_url=server.url, timeout=60, verify=False,
                                 headers={"Authorization": f"Bearer {self.key}"})

    def lease(self, free: dict[str, float], wait_s: float = 0.0,
              max_tasks: int = 64) -> list[dict[str, Any]]:
        r = self.http.post("/api/v1/agent/lease", json={"free": free, "wait_s": wait_s,
                                                        "max_tasks": max_tasks})
        assert r.status_code == 200, r.text
        leases: list[dict[str, Any]] = r.json()["leases"]
        return leases

    def beat(self, free: dict[str, float] | None = None,
             running: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        r = self.http.post("/api/v1/agent/heartbeat", json={
            "free": free or {}, "running": [
                {"attempt": x["attempt"], "token": x["token"]} for x in running or []]})
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def report(self, lease: dict[str, Any], state: str, token: int | None = None,
               **body: Any) -> httpx.Response:
        return self.http.post(f"/api/v1/agent/attempts/{lease['attempt']}/report", json={
            "token": lease["token"] if token is None else token, "state": state, **body})

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def user(service: LocalControlPlane) -> Iterator[httpx.Client]:
    with service.client() as c:
        yield c


def submit(c: httpx.Client, cpus: int = 1, **extra: Any) -> int:
    r = c.post("/api/v1/tasks", json={"run": "python work.py", "resources": {"cpus": cpus},
                                      **extra})
    assert r.status_code == 201, r.text
    tid: int = r.json()["id"]
    return tid


def task(c: httpx.Client, tid: int) -> dict[str, Any]:
    out: dict[str, Any] = c.get(f"/api/v1/tasks/{tid}").json()
    return out


def ledger_entries(server: LocalControlPlane) -> int:
    with server.plane.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.ledger)).scalar_one())


def attempt_row(server: LocalControlPlane, attempt_id: int) -> dict[str, Any]:
    with server.plane.engine.connect() as conn:
        return dict(conn.execute(select(db.attempts).where(db.attempts.c.id == attempt_id))
                    .mappings().one())


def wait_state(c: httpx.Client, tid: int, *wanted: str, timeout: float = 5.0,
               also: Any = None) -> dict[str, Any]:
    """The task once in one of `wanted`; `also()` runs on every poll (e.g. a heartbeat)."""
    last: dict[str, Any] = {}

    def reached() -> bool:
        if also is not None:
            also()
        last.update(task(c, tid))
        return last["state"] in wanted

    try:
        wait_until(reached, timeout=timeout, every=0.05)
    except AssertionError:
        raise AssertionError(f"task {tid} not {wanted} within {timeout} s: {last}") from None
    return last


# -- capacity -------------------------------------------------------------------------------------


def test_the_capacity_an_agent_reports_bounds_what_it_leases_and_what_is_placed_on_it(
    service: LocalControlPlane, user: httpx.Client,
) -> None:
    """Queued work is leased only into the free units the agent reports in the same request
    (none for ``{pool: 0}``, the 1-core task but not the 4-core one for 2 free cores); a
    heartbeat reporting the site full stops new placements there (the task waits for room)."""
    agent = Agent(service, "s1")
    big, small = submit(user, cpus=4), submit(user, cpus=1)
    for tid in (big, small):
        wait_state(user, tid, "queued")
    assert agent.lease({"cpu": 0}) == []
    assert agent.lease({}) == []
    assert agent.lease({"cpu": 0.9}) == []
    [lease] = agent.lease({"cpu": 2})
    assert lease["task"] == small and lease["units"] == 1 and lease["number"] == 1
    assert task(user, big)["state"] == "queued"
    assert task(user, small)["state"] == "leased"

    agent.beat(free={"cpu": 0})
    waiting = submit(user)
    time.sleep(0.4)  # several scheduling cycles
    assert task(user, waiting)["state"] == "pending"
    why = user.get(f"/api/v1/tasks/{waiting}/explain").json()
    assert "room" in (why["reason"] or ""), why
    agent.beat(free={"cpu": 64})
    wait_state(user, waiting, "queued")
    agent.close()


# -- fencing tokens and repeated reports ----------------------------------------------------------


def test_a_report_with_a_stale_token_is_refused_409_and_counted(
    service: LocalControlPlane, user: httpx.Client,
) -> None:
    """The token fences the attempt: a report carrying another one may describe work running
    elsewhere now, so it is refused, counted as a duplicate, and changes nothing."""
    agent = Agent(service, "s1")
    tid = submit(user)
    wait_state(user, tid, "queued")
    [lease] = agent.lease({"cpu": 64})
    before = service.plane.duplicates
    for body in ({"state": "running"}, {"state": "exited", "exit_code": 0, "run_s": 5}):
        r = agent.report(lease, token=lease["token"] + 1, **body)
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert service.plane.duplicates == before + 2
    assert task(user, tid)["state"] == "leased"
    assert attempt_row(service, lease["attempt"])["state"] == "leased"
    assert ledger_entries(service) == 0
    assert agent.report(lease, "running").status_code == 200
    assert task(user, tid)["state"] == "running"
    agent.close()


def test_a_refused_report_is_counted_durably_on_its_attempt(
    service: LocalControlPlane, user: httpx.Client,
) -> None:
    """``attempts.duplicates`` counts refused reports too (the in-process counter dies with
    the process and is per replica); the refusal must not roll its own count back."""
    agent = Agent(service, "s1")
    tid = submit(user)
    wait_state(user, tid, "queued")
    [lease] = agent.lease({"cpu": 64})
    assert agent.report(lease, "running", token=lease["token"] + 1).status_code == 409
    assert attempt_row(service, lease["attempt"])["duplicates"] == 1
    agent.close()


def test_a_repeated_final_report_answers_the_outcome_and_bills_nothing_more(
    service: LocalControlPlane, user: httpx.Client,
) -> None:
    """An agent that did not hear the answer reports again: same outcome, ``billed: false``,
    still one ledger entry."""
    agent = Agent(service, "s1")
    tid = submit(user)
    wait_state(user, tid, "queued")
    [lease] = agent.lease({"cpu": 64})
    assert agent.report(lease, "running").status_code == 200
    first = agent.report(lease, "exited", exit_code=0, run_s=30)
    assert first.status_code == 200, first.text
    assert first.json()["billed"] is True and first.json()["state"] == "succeeded"
    for body in ({"exit_code": 0, "run_s": 30}, {"exit_code": 0, "run_s": 3000},
                 {"exit_code": 1, "run_s": 30}):
        again = agent.report(lease, "exited", **body)
        assert again.status_code == 200, again.text
        assert again.json()["billed"] is False and again.json()["state"] == "succeeded"
    late_running = agent.report(lease, "running")
    assert late_running.status_code in (200, 409)
    assert ledger_entries(service) == 1
    usage = user.get("/api/v1/usage").json()
    done = task(user, tid)
    assert usage["attempts"] == 1 and done["state"] == "succeeded"
    assert done["cost"] == pytest.approx(usage["total"])
    agent.close()


# -- lease expiry ---------------------------------------------------------------------------------


def test_a_lease_renewed_by_heartbeats_outlives_its_ttl_and_an_unrenewed_one_expires_free(
    fast: LocalControlPlane,
) -> None:
    """Heartbeats naming the attempt keep it alive past its TTL. Once they stop naming it
    (the site itself stays online), the lease expires: the task goes back to pending "at no
    charge", is leased again as attempt 2 with a new token, and the old token is refused."""
    agent = Agent(fast, "s1")
    c = fast.client()
    tid = submit(c, envs={"X": "1"})
    wait_state(c, tid, "queued", also=agent.beat)
    [first] = agent.lease({"cpu": 64})
    assert agent.report(first, "running").status_code == 200
    deadline = time.monotonic() + 1.5 * TTL_S
    while time.monotonic() < deadline:
        reply = agent.beat(running=[first])
        assert first["attempt"] not in reply["unknown"]
        time.sleep(0.2)
    assert task(c, tid)["state"] == "running"

    # Stop renewing, and report the pool full so that the expired task stays visible as pending.
    back = wait_state(c, tid, "pending", timeout=3 * TTL_S,
                      also=lambda: agent.beat(free={"cpu": 0}))
    assert "no charge" in (back["reason"] or ""), back
    assert back["infra_failures"] == 1
    assert attempt_row(fast, first["attempt"])["state"] == "lost"
    assert agent.beat(free={"cpu": 0}, running=[first])["unknown"] == [first["attempt"]]
    stale = agent.report(first, "exited", exit_code=0, run_s=10)
    assert stale.status_code == 409, stale.text

    wait_state(c, tid, "queued", also=lambda: agent.beat(free={"cpu": 64}))
    [second] = agent.lease({"cpu": 64})
    assert second["task"] == tid and second["number"] == 2
    assert second["attempt"] != first["attempt"] and second["token"] != first["token"]
    assert agent.report(first, "running").status_code == 409
    assert agent.report(second, "running").status_code == 200
    done = agent.report(second, "exited", exit_code=0, run_s=10)
    assert done.status_code == 200 and done.json()["billed"] is True
    final = task(c, tid)
    assert (final["state"], final["attempts"], final["infra_failures"]) == ("succeeded", 2, 1)
    assert ledger_entries(fast) == 1  # the expired attempt is never billed
    c.close()
    agent.close()


def test_the_sixth_infrastructure_failure_loses_the_task_and_nothing_is_billed(
    service: LocalControlPlane, user: httpx.Client,
) -> None:
    """Infrastructure failures re-place the task for free, five times; the sixth ends it
    ``lost``, with no ledger entry for any of its attempts."""
    agent = Agent(service, "s1")
    tid = submit(user)
    for n in range(1, 7):
        leases = agent.lease({"cpu": 64}, wait_s=5)
        assert [x["number"] for x in leases] == [n], (n, task(user, tid))
        r = agent.report(leases[0], "failed_to_start", reason="image pull failed")
        assert r.status_code == 200, r.text
        state = task(user, tid)
        assert state["infra_failures"] == n
        assert state["state"] in (("lost",) if n == 6 else ("pending", "queued")), state
    final = task(user, tid)
    assert final["state"] == "lost" and "lost" in (final["reason"] or "")
    attempts = user.get(f"/api/v1/tasks/{tid}/attempts").json()
    assert [a["state"] for a in attempts] == ["lost"] * 6
    assert agent.lease({"cpu": 64}) == []
    assert ledger_entries(service) == 0
    assert final["cost"] == 0 and user.get("/api/v1/usage").json()["attempts"] == 0
    agent.close()


# -- offline sites --------------------------------------------------------------------------------


def test_a_silent_site_goes_offline_and_its_queued_work_is_placed_elsewhere(
    fast: LocalControlPlane,
) -> None:
    """A site silent past ``offline_after_s`` is marked offline; work queued there and never
    leased is placed on a live site and runs; a heartbeat brings the silent site back."""
    silent = Agent(fast, "silent")
    c = fast.client()
    tid = submit(c, envs={"FAKE_RUN_S": "5"})
    assert wait_state(c, tid, "queued")["site"] == "silent"
    live = FakeAgent(fast.url, new_tenant(c, "provider-co", "provider"), "live",
                     {"cpu": (CPU, 64)}, region="TF", heartbeat_s=0.3, lease_wait_s=0.2)
    live.start()
    try:
        done = wait_state(c, tid, "succeeded", "failed", timeout=OFFLINE_S + 4)
        assert done["state"] == "succeeded" and done["site"] == "live"
        site = c.get("/api/v1/sites/silent").json()
        assert site["online"] is False
        assert c.get("/api/v1/sites/live").json()["online"] is True
        [attempt] = c.get(f"/api/v1/tasks/{tid}/attempts").json()
        assert attempt["site"] == "live"
        silent.beat()
        assert c.get("/api/v1/sites/silent").json()["online"] is True
    finally:
        live.stop()
        silent.close()
        c.close()


# -- uploads ---------------------------------------------------------------------------------------


def test_an_upload_cut_off_mid_body_is_a_client_error_not_a_server_error(
    service: LocalControlPlane, user: httpx.Client, caplog: pytest.LogCaptureFixture,
) -> None:
    """An agent killed, or cut off the network, while it uploads a log leaves a body shorter than
    its Content-Length. That is the client's doing: answered 400 and logged as an access line,
    not as an unexpected error with a traceback and a 500 (seen under tests/chaos)."""
    agent = Agent(service, "s1")
    tid = submit(user)
    wait_state(user, tid, "queued")
    [lease] = agent.lease({"cpu": 64})
    path = f"/api/v1/agent/attempts/{lease['attempt']}/files/stdout"
    url = httpx.URL(service.url)
    caplog.set_level(logging.INFO)
    with socket.create_connection((url.host, url.port or 80), timeout=10) as raw:
        raw.sendall(f"PUT {path} HTTP/1.1\r\nHost: {url.host}\r\n"
                    f"Authorization: Bearer {agent.key}\r\nX-Attempt-Token: {lease['token']}\r\n"
                    "Content-Length: 1000000\r\n\r\n".encode() + b"x" * 4096)
    wait_until(lambda: any(path in r.getMessage() for r in caplog.records
                           if r.name == "computility.access"), timeout=10)
    [line] = [r.getMessage() for r in caplog.records
              if r.name == "computility.access" and path in r.getMessage()]
    assert f"PUT {path} 400 " in line
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # The site goes on uploading as before.
    r = agent.http.put(path, content=b"hello\n", headers={"X-Attempt-Token": str(lease["token"])})
    assert r.status_code == 204, r.text
    agent.close()


def test_the_same_log_uploaded_twice_at_once_is_stored_once_without_an_error(
    service: LocalControlPlane, user: httpx.Client,
) -> None:
    """An agent's retry can race its first try (after a cut, the first PUT is still being
    handled when the retry arrives): both must answer 204 and the task keeps one stdout, the
    last written (under tests/chaos a delete-then-insert failed the second on the key, a 500)."""
    from computility.server.store.files import attach

    agent = Agent(service, "s1")
    tid = submit(user)
    wait_state(user, tid, "queued")
    [lease] = agent.lease({"cpu": 64})
    errors: list[BaseException] = []
    for round_ in range(10):
        start = threading.Barrier(6)

        def upload(i: int, round_: int = round_, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                attach(service.plane, tid, lease["attempt"], "stdout", f"{round_:02d}{i:062d}",
                       i)
            except BaseException as error:  # collected and asserted below
                errors.append(error)

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    with service.plane.engine.connect() as conn:
        rows = conn.execute(select(db.task_files).where(db.task_files.c.task_id == tid)).all()
    assert len(rows) == 1 and rows[0].digest.startswith("09"), rows
    # An earlier attempt's late upload does not replace a later attempt's file.
    attach(service.plane, tid, lease["attempt"] - 1, "stdout", "f" * 64, 1)
    with service.plane.engine.connect() as conn:
        digest = conn.execute(select(db.task_files.c.digest).where(
            db.task_files.c.task_id == tid)).scalar_one()
    assert digest.startswith("09")
    agent.close()


def test_a_report_racing_a_lease_expiry_spoils_only_its_own_expiry(
    fast: LocalControlPlane, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two leases expire in one housekeeping round while a report changes the first one's task
    in between (PostgreSQL lets it commit between the read and the write): the second still
    expires, the round raises nothing (it used to fail the whole scheduling cycle with a
    traceback, seen under tests/chaos), and the next round expires the first."""
    from sqlalchemy import update

    from computility.server.store import attempts

    with fast.client() as c:
        agent = Agent(fast, "s1")
        tids = [submit(c), submit(c)]
        for tid in tids:
            wait_state(c, tid, "queued")
        leases = agent.lease({"cpu": 64})
        assert sorted(x["task"] for x in leases) == sorted(tids)
        loop = fast.app.state.loop
        assert loop is not None
        loop.stop()  # this test runs the housekeeping itself
        original = attempts._set_task
        raced: list[int] = []

        def racing_set_task(conn: Any, task: Any, new: str, now: float, **values: Any) -> None:
            if not raced:  # a report commits a change to this task first
                raced.append(int(task["id"]))
                conn.execute(update(db.tasks).where(db.tasks.c.id == task["id"])
                             .values(version=db.tasks.c.version + 1))
            original(conn, task, new, now, **values)

        monkeypatch.setattr(attempts, "_set_task", racing_set_task)
        later = time.time() + 10 * TTL_S
        assert attempts.expire(fast.plane, later) == 1
        [first] = raced
        other = next(t for t in tids if t != first)
        assert task(c, other)["state"] in ("pending", "queued")
        assert task(c, first)["state"] == "leased"  # untouched: the savepoint rolled back
        assert attempts.expire(fast.plane, later) == 1
        assert task(c, first)["state"] in ("pending", "queued")
        agent.close()


# -- one connection per write ----------------------------------------------------------------------


def test_a_heartbeat_and_an_exit_report_price_inside_their_own_transaction(
    db_url: str | None, tmp_path: Path,
) -> None:
    """Pricing (the exit's bill, a heartbeat's check against `max_price`) reads the sites through
    the writer's own connection. A second connection taken from the pool while the transaction
    holds one (and, on SQLite, the write lock) waits on requests that wait on this transaction:
    under a burst of agent requests (agents coming back after a restart) the pool emptied and
    the whole service stalled 30 s, answering 500 and letting every lease expire (seen under
    tests/chaos)."""
    from sqlalchemy import event

    from computility.server.auth import Identity
    from computility.server.leadership import Leadership
    from computility.server.scheduling import cycle
    from computility.server.store import attempts as attempt_store
    from computility.server.store import sites as site_store
    from computility.wire.api import AttemptReport, Heartbeat, RunningAttempt

    with local_control_plane(tmp_path / "one", db_url, run_loop=False) as server:
        agent = Agent(server, "s1")
        with server.client() as admin:
            r = admin.post("/api/v1/tasks", json={"run": "true", "resources": {"cpus": 2},
                                                  "placement": {"max_price": 100}})
            assert r.status_code == 201, r.text
        plane = server.plane
        leader = Leadership(plane)
        assert leader.tick(time.time())
        assert cycle(plane, leader).placed == 1
        leader.close()
        [lease] = agent.lease({"cpu": 64})
        assert agent.report(lease, "running").status_code == 200
        who = Identity(key_id="test", tenant="provider-co", role="agent", site="s1")
        checkouts: list[str] = []

        def count(*_: Any) -> None:
            checkouts.append(threading.current_thread().name)

        me = threading.current_thread().name
        event.listen(plane.engine.pool, "checkout", count)
        try:
            for call in (
                lambda: site_store.heartbeat(plane, who, Heartbeat(free={"cpu": 62}, running=[
                    RunningAttempt(attempt=lease["attempt"], token=lease["token"], run_s=30)])),
                lambda: attempt_store.report(plane, who, lease["attempt"], AttemptReport(
                    token=lease["token"], state="exited", exit_code=0, run_s=31)),
            ):
                plane.sites_changed()  # no cached view of the sites to fall back on
                checkouts.clear()
                call()
                assert checkouts.count(me) == 1, f"{checkouts.count(me)} connections in one write"
        finally:
            event.remove(plane.engine.pool, "checkout", count)
        agent.close()
        assert ledger_entries(server) == 1
