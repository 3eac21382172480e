"""Leader safety on PostgreSQL: one scheduling leader at a time, and a former leader writes nothing.

Two replicas of `computility up` share one database; the leader holds an advisory lock and renews
a row of ``leadership`` each cycle. These tests show, with real processes and then
deterministically in one process:

- a leader stopped with SIGSTOP is replaced within a few seconds (the candidate terminates its
  lock's session and bumps the epoch), the survivor places and completes the work, and the
  resumed former leader neither lands a placement nor takes the leadership back, while both keep
  serving the API;
- a former leader paused between its decisions and its write is refused by the epoch fence,
  whether or not the new leader has placed those tasks meanwhile;
- a leader stopped inside its (fenced) write transaction must not block the failover either.

They need PostgreSQL (``COMPUTILITY_TEST_PG``, default 127.0.0.1:5432); without one they are
skipped with the reason (a failure under CI).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text

from computility.server import scheduling, states
from computility.server.app import open_database
from computility.server.db import schema as db
from computility.server.db.engine import make_engine
from computility.server.leadership import LOCK_KEY, NAME, Leadership
from computility.server.plane import ControlPlane
from computility.server.settings import Settings
from computility.testing.controlplane import (
    FakeAgent,
    free_port,
    local_control_plane,
    new_tenant,
    wait_until,
)
from computility.testing.service import ServiceProcess, operator_key, service_env

STALE_S = 3.0


# ------------------------------------------------------------------------------ process level


class Replica(ServiceProcess):
    """One `computility up` child process, a named replica on its own port."""

    def __init__(self, name: str, db_url: str, env: dict[str, str], log: Path) -> None:
        super().__init__(db_url, free_port(), {**env, "COMPUTILITY_REPLICA": name}, log)
        self.name = name

    def start(self, timeout: float = 30.0) -> Replica:  # type: ignore[override]
        super().start(timeout)
        return self

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def send(self, sig: signal.Signals) -> None:
        self.signal(sig)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def leadership_row(engine: Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(db.leadership).where(db.leadership.c.name == NAME)
                           ).mappings().first()
    return None if row is None else dict(row)


def advisory_holder(engine: Engine) -> int | None:
    """The backend pid holding the scheduling loop's advisory lock, if any."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND objid = :lo AND classid = :hi"),
            {"lo": LOCK_KEY & 0xFFFFFFFF, "hi": LOCK_KEY >> 32}).scalar()


def stalled_transactions(
    engine: Engine, older_than_s: float, besides: int | None = None
) -> list[Any]:
    """Sessions of this database (other than `besides`) in a transaction open for longer than
    `older_than_s`."""
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND pid <> :besides AND xact_start IS NOT NULL "
            "AND xact_start < now() - make_interval(secs => :s)"),
            {"s": older_than_s, "besides": besides or 0}).all())


def fake_spec(name: str, run_s: int = 50) -> dict[str, Any]:
    return {"name": name, "run": "true", "envs": {"FAKE_RUN_S": str(run_s)},
            "resources": {"cpus": 1, "estimate": f"{run_s}s"}}


def submit(url: str, key: str, specs: list[dict[str, Any]]) -> list[int]:
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.post("/api/v1/tasks/batch", json={"tasks": specs})
        assert r.status_code == 201, r.text
        return [t["id"] for t in r.json()["tasks"]]


def test_a_stopped_leader_is_replaced_and_its_resumption_lands_no_stale_write(
    pg_url: str, tmp_path: Path
) -> None:
    env = service_env(tmp_path, COMPUTILITY_LEADER_STALE_S=str(STALE_S),
                      COMPUTILITY_CYCLE_S="0.2")
    r1 = Replica("r1", pg_url, env, tmp_path / "r1.log")
    r2 = Replica("r2", pg_url, env, tmp_path / "r2.log")
    engine = make_engine(pg_url)
    agent: FakeAgent | None = None
    try:
        r1.start()  # first, alone: it migrates the database and writes the operator key
        r2.start()
        operator = operator_key(env)
        wait_until(lambda: leadership_row(engine) is not None, timeout=15)
        first = leadership_row(engine)
        assert first is not None and first["holder"] in ("r1", "r2")
        old, new = (r1, r2) if first["holder"] == "r1" else (r2, r1)
        assert advisory_holder(engine) == first["backend_pid"]

        with httpx.Client(base_url=new.url, timeout=30,
                          headers={"Authorization": f"Bearer {operator}"}) as admin:
            user_key = new_tenant(admin, "acme", "user")
            provider_key = new_tenant(admin, "hosts", "provider")
        agent = FakeAgent(new.url, provider_key, "site-a", {"cpu": ("EPYC-7763", 8)},
                          time_scale=0.01, heartbeat_s=0.5, lease_wait_s=1.0).start()

        # Stop the leader outside any transaction of its own (stopped inside one, it would
        # block the takeover: see the in-process test of that case below). Its lock's session
        # is left aside: it is always idle in a transaction (see the test of that below).
        for _ in range(10):
            old.send(signal.SIGSTOP)
            stopped_at = time.time()
            time.sleep(0.3)
            if not stalled_transactions(engine, 0.25, besides=first["backend_pid"]):
                break
            old.send(signal.SIGCONT)
            time.sleep(0.05)
        else:
            raise AssertionError("could not stop the leader outside a transaction")

        # The survivor takes over within a few seconds: a new holder and the next epoch.
        def taken_over() -> bool:
            row = leadership_row(engine)
            return row is not None and row["holder"] == new.name
        wait_until(taken_over, timeout=STALE_S + 10, every=0.1)
        took_s = time.time() - stopped_at
        second = leadership_row(engine)
        assert second is not None and second["epoch"] == first["epoch"] + 1
        assert took_s < STALE_S + 5, f"takeover took {took_s:.1f} s"
        assert advisory_holder(engine) == second["backend_pid"] != first["backend_pid"]

        # Work submitted through the survivor is placed and completes while the old one sleeps.
        during = submit(new.url, user_key, [fake_spec(f"during-{i}") for i in range(6)])
        with httpx.Client(base_url=new.url, timeout=30,
                          headers={"Authorization": f"Bearer {user_key}"}) as user:
            def finished(ids: list[int]) -> bool:
                return all(user.get(f"/api/v1/tasks/{i}").json()["state"] == states.SUCCEEDED
                           for i in ids)
            wait_until(lambda: finished(during), timeout=30, every=0.2)

            # Resume the former leader with work pending, and watch for a few seconds.
            pending = submit(new.url, user_key, [fake_spec(f"resume-{i}") for i in range(6)])
            old.send(signal.SIGCONT)
            after = submit(old.url, user_key, [fake_spec(f"via-old-{i}") for i in range(4)])
            ids = during + pending + after
            watched: list[tuple[str, int]] = []
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                row = leadership_row(engine)
                assert row is not None
                watched.append((row["holder"], row["epoch"]))
                with engine.connect() as conn:
                    active = Counter(conn.execute(select(db.attempts.c.task_id).where(
                        db.attempts.c.state.in_(states.ACTIVE))).scalars())
                assert not active or max(active.values()) == 1, active
                time.sleep(0.1)
            assert set(watched) == {(new.name, second["epoch"])}, (
                f"the leadership changed after the former leader resumed: {set(watched)}")
            wait_until(lambda: finished(ids), timeout=30, every=0.2)

            # Both replicas serve; the old one is alive and did not take the leadership back.
            assert old.alive() and new.alive()
            assert old.healthy() and new.healthy()
            with httpx.Client(base_url=old.url, timeout=30,
                              headers={"Authorization": f"Bearer {user_key}"}) as via_old:
                assert via_old.get(f"/api/v1/tasks/{ids[0]}").status_code == 200
            final = leadership_row(engine)
            assert final is not None
            assert (final["holder"], final["epoch"]) == (new.name, second["epoch"])
            assert advisory_holder(engine) == final["backend_pid"]

        # Each task was placed once: one attempt, no infrastructure failure, billed once.
        with engine.connect() as conn:
            tasks = conn.execute(select(db.tasks)).mappings().all()
            attempts = conn.execute(select(db.attempts)).mappings().all()
            ledger = conn.execute(select(db.ledger.c.attempt_id)).scalars().all()
        assert sorted(t["id"] for t in tasks) == sorted(ids)
        per_task = Counter(a["task_id"] for a in attempts)
        assert all(per_task[i] == 1 for i in ids), per_task
        assert all(t["infra_failures"] == 0 and t["state"] == states.SUCCEEDED for t in tasks)
        assert sorted(ledger) == sorted(a["id"] for a in attempts)
        assert agent.refused == 0
    finally:
        if agent is not None:
            agent.stop()
        r1.stop()
        r2.stop()
        engine.dispose()


# ------------------------------------------------------------------ in process, deterministic


class Planes:
    """The service (for its HTTP API, with no loop of its own) and two would-be leaders, A and B,
    each a `ControlPlane` with its own engine on the same database."""

    def __init__(self, pg_url: str, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.pg_url = pg_url
        self.planes: list[ControlPlane] = []
        self.leaders: list[Leadership] = []

    def plane(self, replica: str) -> tuple[ControlPlane, Leadership]:
        settings = Settings(db_url=self.pg_url, data_dir=self.tmp_path / replica, replica=replica,
                            run_loop=False, leader_stale_s=0.5)
        plane = ControlPlane(open_database(settings), settings)
        leader = Leadership(plane, stale_s=0.5)
        self.planes.append(plane)
        self.leaders.append(leader)
        return plane, leader

    def close(self) -> None:
        for leader in self.leaders:
            leader.close()
        for plane in self.planes:
            plane.engine.dispose()


@pytest.fixture
def setup(pg_url: str, tmp_path: Path) -> Iterator[tuple[Planes, list[int]]]:
    """Two registered sites and five pending tasks; A and B not yet created."""
    with local_control_plane(tmp_path / "data", pg_url, run_loop=False) as server:
        admin = server.client()
        user_key = new_tenant(admin, "acme", "user")
        provider_key = new_tenant(admin, "hosts", "provider")
        for site, device in (("site-a", "EPYC-7763"), ("site-b", "XEON-8380")):
            FakeAgent(server.url, provider_key, site, {"cpu": (device, 16)}).register()
        ids = submit(server.url, user_key, [fake_spec(f"t{i}") for i in range(5)])
        planes = Planes(pg_url, tmp_path)
        try:
            yield planes, ids
        finally:
            planes.close()


def task_rows(plane: ControlPlane, ids: list[int]) -> dict[int, tuple[Any, ...]]:
    t = db.tasks.c
    with plane.engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(
            select(t.id, t.state, t.site_id, t.pool_id, t.units, t.version)
            .where(t.id.in_(ids)))}


class PausedWrite:
    """Wraps `scheduling._write` so that `leader`'s first call waits until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, leader: Leadership) -> None:
        self.leader = leader
        self.real = scheduling._write
        self.reached = threading.Event()
        self.release = threading.Event()
        self.decisions = -1
        self.result: bool | None = None
        monkeypatch.setattr(scheduling, "_write", self)

    def __call__(self, plane: ControlPlane, leadership: Leadership, rows: Any, writes: Any,
                 holds: Any, now: float) -> bool:
        if leadership is not self.leader:
            return self.real(plane, leadership, rows, writes, holds, now)
        if self.reached.is_set():
            # A retry of the paused write (its connection was ended by the new leader).
            self.result = self.real(plane, leadership, rows, writes, holds, now)
            return self.result
        self.decisions = len(writes)
        self.reached.set()
        assert self.release.wait(30)
        self.result = self.real(plane, leadership, rows, writes, holds, now)
        return self.result


def background_cycle(
    plane: ControlPlane, leader: Leadership
) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["report"] = scheduling.cycle(plane, leader)
        except Exception as error:
            out["error"] = error
    thread = threading.Thread(target=run, name="cycle-A", daemon=True)
    thread.start()
    return thread, out


def take_over(plane: ControlPlane, leader: Leadership, timeout: float = 5.0) -> None:
    """Tick `leader` until it leads (the first ticks terminate the stale holder's session)."""
    wait_until(lambda: leader.tick(time.time()), timeout=timeout, every=0.1)


def test_a_former_leader_paused_before_its_write_is_fenced_out_by_the_new_leaders_epoch(
    setup: tuple[Planes, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    planes, ids = setup
    a, lead_a = planes.plane("A")
    b, lead_b = planes.plane("B")
    assert lead_a.tick(time.time()) and lead_a.epoch == 1
    assert not lead_b.tick(time.time())  # A's row is fresh and its lock held

    paused = PausedWrite(monkeypatch, lead_a)
    thread, out = background_cycle(a, lead_a)
    assert paused.reached.wait(15), out
    assert paused.decisions == len(ids)  # A decided to place every task, then stalled

    time.sleep(0.6)  # A's row is stale now
    take_over(b, lead_b)
    assert lead_b.epoch == 2
    row = leadership_row(b.engine)
    assert row is not None and (row["holder"], row["epoch"]) == ("B", 2)
    report_b = scheduling.cycle(b, lead_b)
    assert report_b.placed == len(ids) and not report_b.fenced_out
    placed_by_b = task_rows(b, ids)
    assert all(r[0] == states.QUEUED and r[-1] == 2 for r in placed_by_b.values()), placed_by_b

    paused.release.set()
    thread.join(timeout=15)
    assert not thread.is_alive() and "error" not in out, out
    assert paused.result is False
    assert out["report"].fenced_out is True
    assert task_rows(b, ids) == placed_by_b  # each row exactly as B wrote it
    assert not lead_a.tick(time.time())  # and A does not get the leadership back
    assert lead_b.tick(time.time()) and lead_b.epoch == 2


def test_the_fence_alone_refuses_a_former_leaders_write_on_unchanged_tasks(
    setup: tuple[Planes, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """B takes over but places nothing: A's rows still match the tasks' versions, so only the
    epoch stops A's stale decisions from landing."""
    planes, ids = setup
    a, lead_a = planes.plane("A")
    b, lead_b = planes.plane("B")
    assert lead_a.tick(time.time())
    before = task_rows(a, ids)

    paused = PausedWrite(monkeypatch, lead_a)
    thread, out = background_cycle(a, lead_a)
    assert paused.reached.wait(15), out
    assert paused.decisions == len(ids)
    time.sleep(0.6)
    take_over(b, lead_b)

    paused.release.set()
    thread.join(timeout=15)
    assert not thread.is_alive() and "error" not in out, out
    assert paused.result is False and out["report"].fenced_out is True
    assert task_rows(a, ids) == before
    assert all(r[0] == states.PENDING and r[1] is None for r in before.values())


def test_a_leader_stopped_inside_its_write_transaction_does_not_block_the_failover(
    setup: tuple[Planes, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A passes its fence (holding the epoch row FOR SHARE) and stalls inside the transaction,
    as a SIGSTOP or a network partition would leave it. B must still take over within a few
    stale periods: a stalled former leader may delay the failover, not stop it."""
    planes, _ = setup
    a, lead_a = planes.plane("A")
    b, lead_b = planes.plane("B")
    assert lead_a.tick(time.time())

    inside = threading.Event()
    release = threading.Event()
    real_fenced = Leadership.fenced

    def stalling_fenced(self: Leadership, conn: Any) -> bool:
        ok = real_fenced(self, conn)
        if self is lead_a and not inside.is_set():
            inside.set()
            release.wait(30)
        return ok

    monkeypatch.setattr(Leadership, "fenced", stalling_fenced)
    thread, out = background_cycle(a, lead_a)
    took: dict[str, Any] = {}

    def candidate() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if lead_b.tick(time.time()):
                    took["at"] = time.monotonic()
                    return
            except Exception as error:
                took["error"] = repr(error)
            time.sleep(0.1)

    try:
        assert inside.wait(15), out
        stalled_at = time.monotonic()
        time.sleep(0.6)
        ticker = threading.Thread(target=candidate, name="candidate-B", daemon=True)
        ticker.start()
        ticker.join(timeout=5.0)
        led = "at" in took
        waited = time.monotonic() - stalled_at
        stuck = [r.query for r in stalled_transactions(b.engine, 1.0)]
    finally:
        release.set()
        thread.join(timeout=15)
    ticker.join(timeout=30)
    assert led, (
        f"B did not take over within {waited:.1f} s of A stalling inside its write "
        f"transaction; sessions in old transactions: {stuck}")
    assert took["at"] - stalled_at < 5.0
    row = leadership_row(b.engine)
    assert row is not None and (row["holder"], row["epoch"]) == ("B", 2)


def test_the_leaders_lock_session_keeps_no_transaction_open(
    setup: tuple[Planes, list[int]]
) -> None:
    """The advisory lock lives on a session of its own, checked with ``SELECT 1`` at each renewal.
    That statement autobegins a transaction nobody ends, so the session sits "idle in
    transaction" for the leader's whole life: one ever-older transaction (what monitoring of long
    transactions alarms on) that pins a snapshot between renewals, and a session that
    `idle_in_transaction_session_timeout` (the usual guard against stalled clients) would kill,
    losing the leadership with it."""
    planes, _ = setup
    a, lead_a = planes.plane("A")
    now = time.time()
    assert lead_a.tick(now)
    for i in range(1, 4):
        assert lead_a.tick(now + i * 0.1)  # renewals
    row = leadership_row(a.engine)
    assert row is not None
    with a.engine.connect() as conn:
        session = conn.execute(text(
            "SELECT state, xact_start, query FROM pg_stat_activity WHERE pid = :pid"),
            {"pid": row["backend_pid"]}).mappings().one()
    assert session["state"] == "idle", dict(session)
    assert session["xact_start"] is None, dict(session)


def test_a_leader_that_resigns_releases_the_lock_at_once(setup: tuple[Planes, list[int]]) -> None:
    """`Leadership.close` (the loop stopping on a graceful shutdown) must let another replica
    lead at once, not after the stale period: the advisory lock is a session lock, so closing the
    lock's connection back into the pool keeps the lock held by a pooled session of the
    resigning process."""
    planes, _ = setup
    a, lead_a = planes.plane("A")
    _, lead_b = planes.plane("B")
    now = time.time()
    assert lead_a.tick(now)
    lead_a.close()
    released = False
    deadline = time.monotonic() + 2.0
    while not released and time.monotonic() < deadline:
        released = advisory_holder(a.engine) is None
        time.sleep(0.05)
    assert released, "2 s after resigning, a pooled session of A still holds the advisory lock"
    assert lead_b.tick(now + 0.1)  # well within A's stale period
    assert lead_b.epoch == 2
