"""The workers of one service count their events into one directory, and any of them serves the
sum: counters and histograms add up over every worker that ever ran, the last cycle is the
latest of any, and leadership counts only while its worker lives.

Each worker is a real process (`share_metrics` changes how prometheus-client keeps values for
the whole process, so never in the test's own); the test reads the files as a scrape does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from computility.server.observability.metrics import SHARED_DIR_ENV, worker_gone
from computility.testing.controlplane import free_port
from computility.testing.service import ServiceProcess, operator_key, service_env

WORKER = """
import os, sys
from computility.server.observability.metrics import ServerMetrics, share_metrics
share_metrics(sys.argv[1])
m = ServerMetrics()
m.submissions.labels("single", "accepted").inc(int(sys.argv[2]))
m.http_duration.labels("GET", "/api/v1/tasks/{task_id}", "2xx").observe(0.003)
m.leader.set(float(sys.argv[3]))
m.last_cycle.set(float(sys.argv[4]))
print(os.getpid())
"""


def worker(shared: Path, submitted: int, leads: int, last_cycle: float) -> int:
    """A worker process that counted these events and exited; its pid."""
    done = subprocess.run([sys.executable, "-c", WORKER, str(shared), str(submitted),
                           str(leads), str(last_cycle)],
                          capture_output=True, text=True, timeout=60, check=True)
    return int(done.stdout)


def scrape(shared: Path, name: str, **labels: str) -> float | None:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(shared))  # type: ignore[no-untyped-call]
    return registry.get_sample_value(name, labels)


def test_any_worker_serves_the_sum_of_every_workers_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path))
    leader = worker(tmp_path, submitted=3, leads=1, last_cycle=200.0)
    other = worker(tmp_path, submitted=4, leads=0, last_cycle=100.0)

    accepted = {"kind": "single", "outcome": "accepted"}
    assert scrape(tmp_path, "computility_submissions_total", **accepted) == 7
    assert scrape(tmp_path, "computility_http_request_duration_seconds_count", method="GET",
                  route="/api/v1/tasks/{task_id}", status_class="2xx") == 2
    assert scrape(tmp_path, "computility_scheduling_last_cycle_timestamp_seconds") == 200.0
    assert scrape(tmp_path, "computility_scheduler_leader") == 1

    # The leader's worker exits: its counts stay (counters never go backwards), its
    # leadership does not.
    worker_gone(leader)
    assert scrape(tmp_path, "computility_submissions_total", **accepted) == 7
    assert scrape(tmp_path, "computility_scheduler_leader") == 0
    worker_gone(other)
    assert scrape(tmp_path, "computility_scheduler_leader") is None
    assert scrape(tmp_path, "computility_scheduling_last_cycle_timestamp_seconds") == 200.0



def test_a_service_of_one_process_counts_its_own_events_whatever_directory_it_inherits(
    tmp_path: Path,
) -> None:
    stale = tmp_path / "stale"
    stale.mkdir()
    worker(stale, submitted=5, leads=1, last_cycle=100.0)  # another service's leftovers
    files = sorted(p.name for p in stale.iterdir())
    env = service_env(tmp_path, **{SHARED_DIR_ENV: str(stale)})
    service = ServiceProcess(f"sqlite:///{tmp_path / 'one.db'}", free_port(), env,
                             tmp_path / "service.log")
    try:
        service.start()
        r = httpx.post(f"{service.url}/api/v1/tasks", json={"run": "true"},
                       headers={"Authorization": f"Bearer {operator_key(env)}"})
        assert r.status_code == 201, r.text
        m = {(s.name, frozenset(s.labels.items())): s.value for family in
             text_string_to_metric_families(httpx.get(f"{service.url}/metrics").text)
             for s in family.samples}
    finally:
        service.stop()
    assert m["computility_submissions_total", frozenset(
        {("kind", "single"), ("outcome", "accepted")})] == 1
    assert sorted(p.name for p in stale.iterdir()) == files  # nothing written there
