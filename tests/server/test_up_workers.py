"""`computility up --workers N`: several processes answer on one port, each a replica of the
plane on one PostgreSQL database; the first starts, restarts and stops the others."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from computility.cli.workers import RESTART_AFTER_S, RESTART_AT_MOST_S, STEADY_S, restart_pause
from computility.testing.controlplane import free_port, wait_until
from computility.testing.service import COMPUTILITY, ServiceProcess, operator_key, service_env


def holding(first: psutil.Process, port: int, status: str) -> dict[int, psutil.Process]:
    """The processes of this service with a socket in `status` on `port`, by pid."""
    found = {}
    for proc in [first, *first.children()]:
        try:
            if any(c.laddr.port == port and c.status == status
                   for c in proc.net_connections("tcp")):
                found[proc.pid] = proc
        except psutil.NoSuchProcess:
            continue
    return found


def listeners(first: psutil.Process, port: int) -> dict[int, psutil.Process]:
    return holding(first, port, psutil.CONN_LISTEN)


def settled(predicate: Callable[[], bool], log: ServiceProcess, what: str) -> None:
    try:
        wait_until(predicate, timeout=60)
    except AssertionError:
        raise AssertionError(f"{what} within 60 s; the service's log:\n{log.tail()}") from None


def scraped(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """One scrape of ``/metrics`` through `client`'s connection: value by (sample, labels)."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


STATUS_READS = ("computility_http_request_duration_seconds_count",
                frozenset({("method", "GET"), ("route", "/api/v1/tasks/{task_id}"),
                           ("status_class", "2xx")}))
SUBMITTED = ("computility_submissions_total",
             frozenset({("kind", "single"), ("outcome", "accepted")}))
LEADER = ("computility_scheduler_leader", frozenset[tuple[str, str]]())


@contextlib.contextmanager
def serving(pg_url: str, tmp_path: Path, workers: int) -> Iterator[tuple[ServiceProcess, int]]:
    """`computility up --workers N` with every worker listening: (the first, the port)."""
    port = free_port()
    service = ServiceProcess(pg_url, port, service_env(tmp_path), tmp_path / "service.log",
                             args=("--workers", str(workers)))
    try:
        service.start()
        first = psutil.Process(service.pid)
        settled(lambda: len(listeners(first, port)) == workers, service,
                f"{workers} workers listening")
        yield service, port
    finally:
        service.stop()


def test_workers_share_the_port_and_the_database_and_stop_with_the_first(
    pg_url: str, tmp_path: Path
) -> None:
    with serving(pg_url, tmp_path, 3) as (service, port):
        first = psutil.Process(service.pid)
        workers = listeners(first, port)

        # Whichever worker a connection reaches, it serves the same plane: a task submitted
        # through one connection is read through every other.
        headers = {"Authorization": f"Bearer {operator_key(service.env)}"}
        clients = [httpx.Client(base_url=service.url, headers=headers) for _ in range(30)]
        try:
            ids = []
            for c in clients:  # a connection each, kept open: the kernel spreads them
                r = c.post("/api/v1/tasks", json={"run": "true", "resources": {"cpus": 1}})
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            for c in clients:
                for task in ids:
                    r = c.get(f"/api/v1/tasks/{task}")
                    assert r.status_code == 200 and r.json()["id"] == task
            connected = holding(first, port, psutil.CONN_ESTABLISHED)
            assert set(connected) == set(workers), "every worker holds some of the connections"

            # Whichever worker a scrape reaches, it counts the whole service's requests.
            for c in clients:
                m = scraped(c)
                assert m[STATUS_READS] == len(clients) * len(ids)
                assert m[SUBMITTED] == len(clients)
                assert m[LEADER] == 1  # one worker leads the scheduling loop
        finally:
            for c in clients:
                c.close()

        # A worker that dies is started again; the port keeps answering meanwhile.
        victim = next(pid for pid in workers if pid != service.pid)
        os.kill(victim, signal.SIGKILL)
        def replaced() -> bool:  # one snapshot: a victim still dying counts in it, not after
            now = listeners(first, port)
            return len(now) == 3 and victim not in now

        settled(replaced, service, "the killed worker replaced")
        assert httpx.get(f"{service.url}/readyz").status_code == 200
        assert "starting it again" in service.tail(10**8)
        # The dead worker's counts stay in the sum (counters never go backwards), and its
        # leadership, if it led, no longer counts: another worker's does.
        scrapers = [httpx.Client(base_url=service.url) for _ in range(10)]
        try:
            for c in scrapers:
                m = scraped(c)
                assert m[STATUS_READS] == len(clients) * len(ids)
                assert m[SUBMITTED] == len(clients)
            settled(lambda: all(scraped(c)[LEADER] == 1 for c in scrapers), service,
                    "a live worker leading")
        finally:
            for c in scrapers:
                c.close()

        # The first stopped (SIGTERM): every worker stops with it and the port is free.
        others = [p for pid, p in listeners(first, port).items() if pid != service.pid]
        service.stop()
        _, alive = psutil.wait_procs(others, timeout=30)
        assert not alive
        assert service.tail(10**8).count("starting it again") == 1  # none while stopping


def test_workers_outlive_no_first_killed_outright(pg_url: str, tmp_path: Path) -> None:
    env = service_env(tmp_path)
    port = free_port()
    service = ServiceProcess(pg_url, port, env, tmp_path / "service.log", args=("--workers", "2"))
    try:
        service.start()
        first = psutil.Process(service.pid)
        settled(lambda: len(listeners(first, port)) == 2, service, "two workers listening")
        (other,) = [p for pid, p in listeners(first, port).items() if pid != service.pid]
        service.kill()  # SIGKILL: no shutdown code of the first runs
        _, alive = psutil.wait_procs([other], timeout=30)
        assert not alive, "a worker outlived its first, keeping the port"
    finally:
        service.stop()


def test_a_second_service_is_refused_the_port_its_workers_share(
    pg_url: str, tmp_path: Path
) -> None:
    (tmp_path / "first").mkdir()
    with serving(pg_url, tmp_path / "first", 2) as (service, port):
        done = subprocess.run([COMPUTILITY, "up", "--db", pg_url, "--port", str(port),
                               "--workers", "2", "--no-local-site"],
                              env=service_env(tmp_path / "second"), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"--port: cannot listen on 127.0.0.1:{port}" in done.stderr
        assert "Traceback" not in done.stderr
        assert httpx.get(f"{service.url}/readyz").status_code == 200


def test_several_workers_on_sqlite_are_refused_before_anything_starts(tmp_path: Path) -> None:
    env = service_env(tmp_path)
    db = tmp_path / "one.db"
    done = subprocess.run([COMPUTILITY, "up", "--db", f"sqlite:///{db}", "--port",
                           str(free_port()), "--workers", "2"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--workers: more than one worker needs PostgreSQL" in done.stderr
    assert "Traceback" not in done.stderr
    assert not db.exists()


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_a_worker_count_below_one_is_refused(tmp_path: Path, bad: str) -> None:
    done = subprocess.run([COMPUTILITY, "up", "--port", str(free_port()), "--workers", bad],
                          env=service_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"--workers: expected at least 1, got {bad}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_that_keeps_failing_is_started_again_less_and_less_often() -> None:
    pauses = [restart_pause(None, lived_s=0.5)]
    for _ in range(8):
        pauses.append(restart_pause(pauses[-1], lived_s=0.5))
    assert pauses == [1, 2, 4, 8, 16, 32, RESTART_AT_MOST_S, RESTART_AT_MOST_S, RESTART_AT_MOST_S]
    # One that had run steadily before it exited starts over at the shortest pause.
    assert restart_pause(RESTART_AT_MOST_S, lived_s=STEADY_S) == RESTART_AFTER_S
