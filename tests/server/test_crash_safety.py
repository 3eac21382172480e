"""Crash safety of `computility up`: a SIGKILL in the middle of work loses and double-bills nothing.

The service runs as a real child process on SQLite and on PostgreSQL. Two fake agents (two CPU
sites) run tasks of 0.5 to 2.5 s while a client submits singles and batches with Idempotency-Key
headers, retrying through connection errors with the same key. Mid-way the service is killed with
SIGKILL and restarted on the same port and database. Afterwards:

- every task that was accepted (201) exists once and succeeded, and no task exists that was not;
- the ledger holds exactly one entry per attempt that exited (none for an attempt the
  infrastructure lost), its run time is the task's own, and its sums are the tasks' costs and the
  tenant's usage;
- the tasks running on the (live) agents across the crash finished with their original attempt:
  the lease TTL (2 s) is shorter than the outage, so this holds only because a restarted service
  gives every lease one more TTL (`grace_after_restart`) before anything expires;
- replaying an accepted submission with its key returns the same tasks and creates none.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from computility.domain.money import from_micro
from computility.server import states
from computility.server.db import schema as db
from computility.server.db.engine import make_engine
from computility.testing.controlplane import FakeAgent, FakeRun, free_port, new_tenant, wait_until
from computility.testing.service import ServiceProcess as Service
from computility.testing.service import operator_key, service_env

LEASE_TTL_S = 2.0
HEARTBEAT_S = 0.25
DOWN_S = 1.5
"""How long the service stays dead; with its start-up (about 1 s) the outage exceeds the TTL."""
TIME_SCALE = 0.01
"""Fake run seconds to wall seconds: tasks state 50-250 s and run 0.5-2.5 s."""


# ---------------------------------------------------------------------------------------- helpers


class PatientAgent(FakeAgent):
    """A fake agent that, like the real one, keeps re-sending a report until the service answers
    (the base class gives up after about 4 s, shorter than a restart may take) and re-sends on a
    5xx; every answer is recorded in `reports`."""

    def _report(self, c: httpx.Client, run: FakeRun, body: dict[str, Any]) -> int:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                r = c.post(f"/api/v1/agent/attempts/{run.attempt}/report",
                           json={"token": run.token, **body})
            except httpx.HTTPError:
                self._stop.wait(0.1)
                continue
            self.reports.append({"attempt": run.attempt, "status": r.status_code,
                                 "reply": r.text, **body})
            if r.status_code >= 500:
                self._stop.wait(0.1)
                continue
            if r.status_code == 409:
                self.refused += 1
            return r.status_code
        return 0

    def seen(self) -> dict[int, FakeRun]:
        """Every attempt this agent was handed a lease for, by attempt id."""
        return {r.attempt: r for r in [*self.finished, *self.running()]}


def spec(rng: random.Random, name: str) -> dict[str, Any]:
    run_s = rng.choice((50, 80, 120, 160, 200, 250))
    return {"name": name, "run": "true", "envs": {"FAKE_RUN_S": str(run_s)},
            "resources": {"cpus": rng.randint(1, 3), "estimate": f"{run_s}s"}}


class Submitter(threading.Thread):
    """Submits singles and batches with Idempotency-Key headers until stopped; a submission is
    re-sent with the same key and body through connection errors and 5xx until it gets its 201."""

    def __init__(self, url: str, key: str, seed: int) -> None:
        super().__init__(name="submitter", daemon=True)
        self.url, self.key = url, key
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.accepted: dict[str, list[int]] = {}  # idempotency key -> task ids of its 201
        self.bodies: dict[str, tuple[str, Any]] = {}
        self.rounds_at: list[float] = []  # time.time() of each 201
        self.resent = 0
        self.server_errors: list[str] = []
        self.errors: list[str] = []

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0,
                            headers={"Authorization": f"Bearer {self.key}"})

    def run(self) -> None:
        try:
            with self.client() as c:
                n = 0
                while not self.stop.is_set():
                    key = f"crash-{uuid.uuid4().hex}"
                    if self.rng.random() < 0.5:
                        body: Any = {"tasks": [spec(self.rng, f"b{n}-{i}")
                                               for i in range(self.rng.randint(2, 4))]}
                        path = "/api/v1/tasks/batch"
                    else:
                        body, path = spec(self.rng, f"s{n}"), "/api/v1/tasks"
                    self.bodies[key] = (path, body)
                    self.send(c, key, path, body)
                    n += 1
                    self.stop.wait(0.25)
        except Exception as error:
            self.errors.append(repr(error))

    def send(self, c: httpx.Client, key: str, path: str, body: Any) -> list[int]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = c.post(path, json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                self.resent += 1
                time.sleep(0.1)
                continue
            if r.status_code >= 500:
                self.server_errors.append(f"{r.status_code} {r.text}")
                time.sleep(0.1)
                continue
            if r.status_code != 201:
                self.errors.append(f"{path}: {r.status_code} {r.text}")
                return []
            reply = r.json()
            ids = [t["id"] for t in reply["tasks"]] if "tasks" in reply else [reply["id"]]
            self.accepted.setdefault(key, ids)
            self.rounds_at.append(time.time())
            return ids
        self.errors.append(f"{path}: no 201 within 60 s")
        return []

    def ids(self) -> list[int]:
        return [i for ids in list(self.accepted.values()) for i in ids]


def all_tasks(c: httpx.Client) -> dict[int, dict[str, Any]]:
    r = c.get("/api/v1/tasks", params={"limit": 1000})
    r.raise_for_status()
    body = r.json()
    assert body["next_cursor"] is None
    return {t["id"]: t for t in body["tasks"]}


def read_tables(engine: Engine) -> tuple[list[Any], list[Any], list[Any]]:
    with engine.connect() as conn:
        tasks = conn.execute(select(db.tasks)).mappings().all()
        attempts = conn.execute(select(db.attempts)).mappings().all()
        ledger = conn.execute(select(db.ledger)).mappings().all()
    return list(tasks), list(attempts), list(ledger)


@pytest.fixture
def url_of_db(db_url: str | None, tmp_path: Path) -> Iterator[str]:
    """The database URL handed to `computility up --db` (SQLite: a file under tmp_path)."""
    yield db_url if db_url is not None else f"sqlite:///{tmp_path / 'crash.db'}"


# ------------------------------------------------------------------------------------------- test


def test_sigkill_mid_work_loses_nothing_and_bills_every_attempt_once(
    url_of_db: str, tmp_path: Path
) -> None:
    env = service_env(tmp_path, COMPUTILITY_CYCLE_S="0.2", COMPUTILITY_LEASE_TTL_S=str(LEASE_TTL_S),
                      COMPUTILITY_OFFLINE_AFTER_S="30", COMPUTILITY_LEADER_STALE_S="3")
    service = Service(url_of_db, free_port(), env, tmp_path / "service.log")
    agents: list[PatientAgent] = []
    submitter: Submitter | None = None
    engine = make_engine(url_of_db)
    try:
        service.start()
        admin = httpx.Client(base_url=service.url, timeout=30,
                             headers={"Authorization": f"Bearer {operator_key(env)}"})
        user_key = new_tenant(admin, "acme", "user")
        provider_key = new_tenant(admin, "hosts", "provider")
        agents = [
            PatientAgent(service.url, provider_key, "site-a", {"cpu": ("EPYC-7763", 12)},
                         region="ZJK", time_scale=TIME_SCALE, heartbeat_s=HEARTBEAT_S,
                         lease_wait_s=2.0),
            PatientAgent(service.url, provider_key, "site-b", {"cpu": ("XEON-8380", 12)},
                         region="GA", time_scale=TIME_SCALE, heartbeat_s=HEARTBEAT_S,
                         lease_wait_s=2.0),
        ]
        for agent in agents:
            agent.start()
        submitter = Submitter(service.url, user_key, seed=7)
        submitter.start()

        # Mid-way: work queued and running on both sites.
        wait_until(lambda: len(submitter.ids()) >= 15
                   and all(len(a.running()) >= 1 for a in agents)
                   and sum(len(a.finished) for a in agents) >= 3, timeout=30)
        running_at_kill = {r.attempt: r for a in agents for r in a.running()}
        service.kill()
        killed_at = time.time()
        accepted_before = len(submitter.accepted)

        time.sleep(DOWN_S)
        # What a restarted service finds: leases that, without the grace, would expire at once.
        with engine.connect() as conn:
            expiry = dict(conn.execute(select(db.attempts.c.id, db.attempts.c.lease_expires_at)
                                       .where(db.attempts.c.state.in_(states.ACTIVE))).all())
        ready_at = service.start()
        stale = [a for a in running_at_kill if a in expiry and expiry[a] < ready_at]
        assert stale, (
            f"the outage ({ready_at - killed_at:.1f} s) should outlast the leases running at the "
            f"kill ({ {a: round(expiry.get(a, 0) - killed_at, 2) for a in running_at_kill} })"
        )

        # Keep submitting a bit after the restart.
        wait_until(lambda: len(submitter.accepted) >= accepted_before + 6, timeout=30)
        submitter.stop.set()
        submitter.join(timeout=70)
        assert not submitter.is_alive()
        assert not submitter.errors, submitter.errors
        accepted = submitter.ids()
        assert len(accepted) == len(set(accepted)), "one task id accepted twice"

        # Replays of accepted submissions return the same tasks and create none.
        user = httpx.Client(base_url=service.url, timeout=30,
                            headers={"Authorization": f"Bearer {user_key}"})
        replay = random.Random(3).sample(sorted(submitter.accepted), 6)
        with submitter.client() as c:
            for key in replay:
                path, body = submitter.bodies[key]
                r = c.post(path, json=body, headers={"Idempotency-Key": key})
                assert r.status_code == 201, r.text
                reply = r.json()
                ids = [t["id"] for t in reply["tasks"]] if "tasks" in reply else [reply["id"]]
                assert ids == submitter.accepted[key], key

        def all_terminal() -> bool:
            tasks = all_tasks(user)
            return all(tasks.get(i, {}).get("state") in states.TERMINAL for i in accepted)

        wait_until(all_terminal, timeout=45, every=0.25)
        wait_until(lambda: not any(a.running() for a in agents), timeout=10)
        for agent in agents:
            agent.stop()
        api_tasks = all_tasks(user)
        usage = user.get("/api/v1/usage").json()

        tasks, attempts, ledger = read_tables(engine)
        seen = {k: v for a in agents for k, v in a.seen().items()}

        # -- nothing lost, nothing duplicated
        assert sorted(t["id"] for t in tasks) == sorted(accepted), (
            "the tasks table is not exactly the accepted tasks")
        assert sorted(api_tasks) == sorted(accepted)
        not_ok = {t["id"]: (t["state"], t["reason"]) for t in tasks
                  if t["state"] != states.SUCCEEDED or t["exit_code"] != 0}
        assert not not_ok, f"accepted tasks that did not succeed: {not_ok}"

        # -- the ledger: one entry per exited attempt, none for a lost one, none twice
        by_attempt = Counter(e["attempt_id"] for e in ledger)
        assert max(by_attempt.values()) == 1, "an attempt billed twice"
        attempt_of = {a["id"]: a for a in attempts}
        for a in attempts:
            exited = a["state"] in (states.SUCCEEDED, states.FAILED, states.CANCELLED)
            assert by_attempt[a["id"]] == (1 if exited else 0), (
                f"attempt {a['id']} ({a['state']}) has {by_attempt[a['id']]} ledger entries")
        spec_run = {t["id"]: float(t["spec"]["envs"]["FAKE_RUN_S"]) for t in tasks}
        for e in ledger:
            assert e["task_id"] == attempt_of[e["attempt_id"]]["task_id"]
            assert e["run_s"] == pytest.approx(spec_run[e["task_id"]]), (
                "an attempt billed for another run time than its own")
            assert e["total_micro"] > 0
        cost_micro: dict[int, int] = defaultdict(int)
        for e in ledger:
            cost_micro[e["task_id"]] += e["total_micro"]
        for tid, t in api_tasks.items():
            assert t["cost"] == pytest.approx(from_micro(cost_micro[tid]), abs=1e-6), tid
        total = sum(e["total_micro"] for e in ledger)
        assert sum(cost_micro.values()) == total
        assert sum(round(t["cost"] * 1_000_000) for t in api_tasks.values()) == total
        assert usage["attempts"] == len(ledger)
        assert usage["total"] == pytest.approx(from_micro(total), abs=1e-6)

        # -- attempts: the agents stayed alive, so each task ran once, with no infra failure,
        # except where a lease was committed but its reply died with the service (the agent
        # never saw it): that attempt expires after the TTL, unbilled, and the task runs again.
        unseen_lost = {a["id"] for a in attempts if a["id"] not in seen}
        for aid in unseen_lost:
            a = attempt_of[aid]
            assert a["state"] == states.LOST and a["leased_at"] <= killed_at, (
                f"attempt {aid} ({a['state']}) was never handed to an agent")
        n_attempts = Counter(a["task_id"] for a in attempts)
        lost_tasks = {attempt_of[a]["task_id"] for a in unseen_lost}
        for t in tasks:
            extra = sum(1 for a in unseen_lost if attempt_of[a]["task_id"] == t["id"])
            assert n_attempts[t["id"]] == 1 + extra, (t["id"], n_attempts[t["id"]])
            assert t["infra_failures"] == extra, (t["id"], t["infra_failures"], t["reason"])
            assert api_tasks[t["id"]]["attempts"] == n_attempts[t["id"]]
        assert len(lost_tasks) <= 2, f"too many leases lost in the crash: {lost_tasks}"
        for aid in seen:
            assert attempt_of[aid]["state"] == states.SUCCEEDED, (aid, attempt_of[aid]["state"])

        # -- the tasks running across the crash finished with their original attempt
        for aid, run in running_at_kill.items():
            a = attempt_of[aid]
            assert a["task_id"] == run.task and a["state"] == states.SUCCEEDED
            assert n_attempts[run.task] == 1, f"task {run.task} ran again after the restart"
            assert by_attempt[aid] == 1

        # -- no agent report was refused as stale, nothing answered 5xx
        assert all(a.refused == 0 for a in agents), [a.reports for a in agents if a.refused]
        failed = [r for a in agents for r in a.reports if r["status"] >= 500]
        assert not failed, f"{failed}\n{service.tail(20_000)}"
        assert not submitter.server_errors, f"{submitter.server_errors}\n{service.tail(20_000)}"
        assert "Traceback" not in service.tail(200_000), service.tail()
    finally:
        if submitter is not None:
            submitter.stop.set()
        for agent in agents:
            agent.stop()
        service.stop()
        engine.dispose()


# ------------------------------------------------------- an exit report racing its site's heartbeat


def test_an_exit_report_racing_a_heartbeat_of_its_site_does_not_deadlock(
    pg_url: str, tmp_path: Path
) -> None:
    """The report of an exit locks the attempt, then its pool (to count its devices free). A
    heartbeat of the same site that locked the pools (`_set_free`) before the attempts it renews
    would wait on the report while the report waits on it: PostgreSQL aborts one with a deadlock
    and the agent gets a 500 (seen in the crash test above under load, before writers took pools
    last). Forced into that interleaving, both must go through."""
    from sqlalchemy import event

    from computility.server.auth import Identity
    from computility.server.leadership import Leadership
    from computility.server.scheduling import cycle
    from computility.server.store import attempts as attempt_store
    from computility.server.store import sites as site_store
    from computility.testing.controlplane import local_control_plane
    from computility.wire.api import AttemptReport, Heartbeat, RunningAttempt

    with local_control_plane(tmp_path / "data", pg_url, run_loop=False) as server:
        admin = server.client()
        user_key = new_tenant(admin, "acme", "user")
        agent = FakeAgent(server.url, new_tenant(admin, "hosts", "provider"), "site-a",
                          {"cpu": ("EPYC-7763", 8)}).register()
        with server.client(user_key) as c:
            r = c.post("/api/v1/tasks", json={"run": "true", "resources": {"cpus": 2}})
            assert r.status_code == 201, r.text
        plane = server.plane
        leader = Leadership(plane)
        assert leader.tick(time.time())
        assert cycle(plane, leader).placed == 1
        leader.close()
        with agent.client() as c:
            r = c.post("/api/v1/agent/lease", json={"free": {"cpu": 8}, "wait_s": 0})
            lease = r.json()["leases"][0]
            r = c.post(f"/api/v1/agent/attempts/{lease['attempt']}/report",
                       json={"token": lease["token"], "state": "running"})
            assert r.status_code == 200, r.text
        who = Identity(key_id="test", tenant="hosts", role="agent", site="site-a")

        report_holds_attempt = threading.Event()
        beat_holds_pool = threading.Event()

        def interleave(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            me = threading.current_thread().name
            if me == "report" and statement.startswith("UPDATE pools"):
                report_holds_attempt.set()  # it locked the attempt (SELECT ... FOR UPDATE)
                beat_holds_pool.wait(3)
            elif me == "heartbeat" and statement.startswith("UPDATE attempts"):
                beat_holds_pool.set()  # `_set_free` updated (locked) the site's pool rows
                report_holds_attempt.wait(3)

        outcome: dict[str, Any] = {}

        def run(name: str, call: Any) -> threading.Thread:
            def target() -> None:
                try:
                    outcome[name] = call()
                except Exception as error:
                    outcome[name] = error
            return threading.Thread(target=target, name=name, daemon=True)

        event.listen(plane.engine, "before_cursor_execute", interleave)
        try:
            threads = [
                run("report", lambda: attempt_store.report(
                    plane, who, lease["attempt"],
                    AttemptReport(token=lease["token"], state="exited", exit_code=0, run_s=60))),
                run("heartbeat", lambda: site_store.heartbeat(plane, who, Heartbeat(
                    free={"cpu": 6}, running=[RunningAttempt(attempt=lease["attempt"],
                                                             token=lease["token"], run_s=59)]))),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
        finally:
            event.remove(plane.engine, "before_cursor_execute", interleave)
        assert not any(t.is_alive() for t in threads)
        failed = {k: repr(v) for k, v in outcome.items() if isinstance(v, Exception)}
        assert not failed, f"an exit report and a heartbeat deadlocked: {failed}"
        assert outcome["report"].state == states.SUCCEEDED and outcome["report"].billed
