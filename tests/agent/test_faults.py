"""Faults on the way: the agent killed mid-task, the control plane away for 30 s.

The agent runs as its own process (`computility agent`), exactly as a provider runs it, so it can
be killed with SIGKILL. Whatever happens, each task ends with exactly one accepted result and one
ledger entry; a late report for an attempt the service gave up is refused and counted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from computility.server.db import schema as db
from computility.testing.controlplane import LocalControlPlane, new_tenant, wait_until
from computility.testing.tasks import finished, logs, submit


class AgentProcess:
    """`computility agent` for one local site, started and killed at will."""

    def __init__(self, url: str, token: str, home: Path, tasks_root: Path) -> None:
        self.url, self.home, self.tasks_root = url, home, tasks_root
        home.mkdir(parents=True, exist_ok=True)
        self.token_file = home / "provider.key"
        self.token_file.write_text(token)
        self.token_file.chmod(0o600)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTILITY_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "computility", "agent", "--server", self.url,
             "--token-file", str(self.token_file), "--site", "lab-1", "--region", "ZJK",
             "--state-dir", str(self.home / "state"), "--tasks-root", str(self.tasks_root)],
            env=env, stdout=subprocess.DEVNULL, stderr=(self.home / "agent.log").open("ab"))
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def fast_service(tmp_path: Path) -> Iterator[LocalControlPlane]:
    """Short leases and a short offline delay, so expiry happens within the test."""
    from computility.server.settings import Settings

    server = LocalControlPlane(Settings(data_dir=tmp_path / "data", cycle_s=0.1, lease_ttl_s=4,
                                        offline_after_s=3, heartbeat_s=1)).start()
    yield server
    server.stop()


def ledger_entries(service: LocalControlPlane) -> dict[int, int]:
    with service.plane.engine.connect() as conn:
        rows = conn.execute(select(db.attempts.c.task_id, func.count())
                            .join(db.ledger, db.ledger.c.attempt_id == db.attempts.c.id)
                            .group_by(db.attempts.c.task_id)).all()
    return {int(t): int(n) for t, n in rows}


def accepted_results(user: httpx.Client, task: int) -> list[dict[str, object]]:
    return [a for a in user.get(f"/api/v1/tasks/{task}/attempts").json()
            if a["state"] in ("succeeded", "failed", "cancelled")]


def test_an_agent_killed_mid_task_and_restarted_at_once_adopts_its_tasks(
    service: LocalControlPlane, provider_key: str, user: httpx.Client, tmp_path: Path,
    tasks_root: Path,
) -> None:
    agent = AgentProcess(service.url, provider_key, tmp_path / "agent", tasks_root).start()
    try:
        ids = [submit(user, run=f"sleep 3; echo done-{i}") for i in range(2)]
        wait_until(lambda: all(user.get(f"/api/v1/tasks/{i}").json()["state"] == "running"
                               for i in ids), timeout=60)
        agent.kill()
        agent.start()
        tasks = finished(user, ids, timeout=60)
        assert [t["state"] for t in tasks] == ["succeeded"] * 2
        for i, task in enumerate(ids):
            assert len(accepted_results(user, task)) == 1
            assert logs(user, task) == f"done-{i}\n"
        assert ledger_entries(service) == {task: 1 for task in ids}
    finally:
        agent.stop()


def test_a_late_report_from_an_orphaned_attempt_is_refused_and_counted(
    fast_service: LocalControlPlane, tmp_path: Path, tasks_root: Path
) -> None:
    service = fast_service
    with service.client() as admin:
        provider = new_tenant(admin, "lab", role="provider")
        user_key = new_tenant(admin, "users", role="user")
    agent = AgentProcess(service.url, provider, tmp_path / "agent", tasks_root).start()
    try:
        with service.client(user_key) as user:
            ids = [submit(user, run="sleep 6; echo finished") for _ in range(2)]
            wait_until(lambda: all(user.get(f"/api/v1/tasks/{i}").json()["state"] ==
                                   "running" for i in ids), timeout=60)
            agent.kill()  # its tasks run on under their supervisors
            # The service gives the leases up and re-places the tasks.
            wait_until(lambda: all(user.get(f"/api/v1/tasks/{i}").json()["infra_failures"] >= 1
                                   for i in ids), timeout=60)
            agent.start()  # adopts the orphans, whose reports are now stale
            tasks = finished(user, ids, timeout=90)
            assert [t["state"] for t in tasks] == ["succeeded"] * 2
            for task in ids:
                attempts = user.get(f"/api/v1/tasks/{task}/attempts").json()
                assert [a["state"] for a in attempts] == ["lost", "succeeded"]
            assert ledger_entries(service) == {task: 1 for task in ids}
        with service.plane.engine.connect() as conn:
            refused = conn.execute(select(func.sum(db.attempts.c.duplicates))).scalar()
        assert refused is not None and refused >= 2
    finally:
        agent.stop()


def test_the_control_plane_away_for_30_s_loses_no_task(
    tmp_path: Path, tasks_root: Path
) -> None:
    from computility.server.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", cycle_s=0.1)
    service = LocalControlPlane(settings).start()
    port = service.port
    with service.client() as admin:
        provider = new_tenant(admin, "lab", role="provider")
        user_key = new_tenant(admin, "users", role="user")
    agent = AgentProcess(service.url, provider, tmp_path / "agent", tasks_root).start()
    try:
        with service.client(user_key) as user:
            ids = [submit(user, run=f"sleep 4; echo survived-{i}") for i in range(2)]
            wait_until(lambda: all(user.get(f"/api/v1/tasks/{i}").json()["state"] ==
                                   "running" for i in ids), timeout=60)
        service.stop()
        time.sleep(30)  # the tasks end while nobody listens
        service = LocalControlPlane(settings, port=port).start()
        with service.client(user_key) as user:
            tasks = finished(user, ids, timeout=90)
            assert [t["state"] for t in tasks] == ["succeeded"] * 2
            for i, task in enumerate(ids):
                assert len(accepted_results(user, task)) == 1
                assert logs(user, task) == f"survived-{i}\n"
        assert ledger_entries(service) == {task: 1 for task in ids}
    finally:
        agent.stop()
        service.stop()


def test_an_agent_that_died_while_starting_a_task_hands_it_back_when_it_restarts(
    start_site: Any, user: httpx.Client, service: LocalControlPlane
) -> None:
    """The agent records a lease (`attempts.json`) before it stages and submits the task; killed
    in between, the record has no backend handle. The restarted agent cannot tell whether the run
    began, so it reports the attempt failed to start (re-placed at no charge) rather than holding
    it, and renewing its lease, for ever with nothing watching it (found by tests/chaos)."""
    first = start_site("lab-1")
    first._launch = lambda held, spec: None  # dies after the record, before the backend
    task = submit(user, run="echo ran")
    wait_until(lambda: len(first.held()) == 1, timeout=30)
    first.stop(cancel_tasks=False)  # leaves the record behind, as a SIGKILL would

    second = start_site("lab-1")  # same site, same state directory: it adopts the record
    (done,) = finished(user, [task], timeout=60)
    assert done["state"] == "succeeded"
    attempts = user.get(f"/api/v1/tasks/{task}/attempts").json()
    assert [a["state"] for a in attempts] == ["lost", "succeeded"]
    assert "restarted" in (attempts[0]["reason"] or "")
    assert ledger_entries(service) == {task: 1}
    wait_until(lambda: not second.held(), timeout=10)
