"""Prometheus metrics of the control plane, served at ``/metrics`` in the text format.

Two kinds, one registry per control plane (tests run several planes in one process, and two
planes must never count into each other's metrics):

- **events**, counted where they happen in the server's code (`ServerMetrics`, held by the
  `ControlPlane` as ``plane.metrics``): submissions, placements, holds, scheduling cycles and
  their steps, lease expiries, leases granted, heartbeats, the wait of a task before its first
  attempt starts, the latency of every API route. The core (`computility.scheduler`,
  `computility.domain`) knows nothing of them: the server observes what the core returned.
- **state**, read from the database when Prometheus scrapes (`DatabaseCollector`): tasks by state,
  every site's capacity, busy CU, free units and liveness per device type, and the ledger's
  running totals. A few aggregate queries (``GROUP BY`` in the database, never a row per task in
  Python), so a scrape stays fast with 10^5 tasks; with every replica reading the same database,
  these agree across replicas.

Several processes of one service (`computility up --workers N`) count their events into one
directory of memory-mapped files (`share_metrics`, prometheus-client's multiprocess mode), and
whichever worker a scrape reaches serves the sum over all of them: a scrape target is the
service on its port, whose counters never go backwards when the kernel hands the next scrape to
another worker or a worker is replaced (a dead worker's counts stay in the sum).

Names follow the Prometheus conventions: the ``computility_`` prefix, base units (``_seconds``,
``_joules``, ``_grams``; ``_cu`` is the network's compute unit), ``_total`` on counters, ``_info``
on the build's info metric, and labels of bounded cardinality only (never a task id; sites and
devices are bounded by the network's size).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import Connection, and_, func, select

from computility.domain.devices import default_catalogue
from computility.domain.site import MILLI
from computility.server import states
from computility.server.db import schema as db

if TYPE_CHECKING:
    from prometheus_client import Metric

    from computility.server.plane import ControlPlane
    from computility.server.scheduling import CycleReport

log = logging.getLogger("computility.metrics")

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)
"""Seconds: a request or a scheduling step takes from a millisecond to a long poll's 30 s."""
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                1800.0, 3600.0, 3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 24 * 3600.0)
"""Seconds in a queue: a lone task starts in well under a second, a held one hours later."""

SUBMISSION_KINDS = ("single", "batch")
SUBMISSION_OUTCOMES = ("accepted", "rejected", "failed")
"""accepted: 2xx (an idempotent replay too); rejected: 4xx (bad spec, no key, over budget);
failed: 5xx."""
SCHEDULING_STEPS = ("housekeeping", "read", "place", "write")
HOLD_REASONS = ("quota", "shift")
AUTH_KINDS = ("api", "dashboard")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
TASK_STATES = (states.PENDING, states.HELD, states.QUEUED, states.LEASED, states.RUNNING,
               states.SUCCEEDED, states.FAILED, states.CANCELLED, states.LOST)
LEDGER_COMPONENTS = ("compute", "energy", "network")
JOULES_PER_KWH = 3.6e6
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which every Prometheus reads (the names here need no escaping)."""
SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Where the processes of one service count their events together (prometheus-client's own
setting, so that every part of the process agrees on it)."""


def shared_metrics_dir() -> str | None:
    """The directory this process's events are counted into with its fellow workers', if any."""
    return os.environ.get(SHARED_DIR_ENV) or None


def share_metrics(path: str) -> None:
    """Count this process's events into `path`, with every other process of the service that
    does the same; call it before any `ServerMetrics` is made. The workers `up` starts inherit
    the setting."""
    os.environ[SHARED_DIR_ENV] = path
    # prometheus-client chooses how values are kept when it is first imported; this process
    # may have imported it before it knew it would share.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def keep_metrics_in_process() -> None:
    """Count this process's events in its own memory, whatever directory the environment
    names: a service of one process shares with no one, and files left there by other
    processes would add their counts to its own."""
    for name in (SHARED_DIR_ENV, SHARED_DIR_ENV.lower()):  # prometheus-client reads both
        os.environ.pop(name, None)
    values.ValueClass = values.MutexValue


def worker_gone(pid: int) -> None:
    """A worker exited: its live gauges (leadership) no longer count; its counters still do."""
    path = shared_metrics_dir()
    if path is not None:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class ServerMetrics:
    """The events the server counts where they happen, in a registry of this plane's own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.submissions = Counter(
            "computility_submissions", "Submission requests, by kind (single|batch) and outcome "
            "(accepted|rejected|failed)", ["kind", "outcome"], registry=r)
        self.tasks_submitted = Counter(
            "computility_tasks_submitted", "Tasks accepted into the network, by kind of "
            "submission (an idempotent replay adds none)", ["kind"], registry=r)
        self.cycles = Counter("computility_scheduling_cycles",
                              "Scheduling cycles run by this replica", registry=r)
        self.cycle_duration = Histogram(
            "computility_scheduling_cycle_duration_seconds", "Wall time of a scheduling cycle",
            buckets=DURATION_BUCKETS, registry=r)
        self.step_duration = Histogram(
            "computility_scheduling_step_duration_seconds", "Wall time of each step of a "
            "scheduling cycle (housekeeping|read|place|write)", ["step"],
            buckets=DURATION_BUCKETS, registry=r)
        self.last_cycle = Gauge("computility_scheduling_last_cycle_timestamp_seconds",
                                "When this replica last finished a scheduling cycle (UNIX time)",
                                registry=r, multiprocess_mode="max")
        self.leader = Gauge("computility_scheduler_leader", "Whether this replica leads the "
                            "scheduling loop", registry=r, multiprocess_mode="livemax")
        self.duplicate_reports = Counter("computility_duplicate_reports", "Refused stale or "
                                         "repeated attempt reports", registry=r)
        self.placements = Counter("computility_placements",
                                  "Tasks placed on a pool (queued for its site's agent)",
                                  registry=r)
        self.holds = Counter("computility_holds", "Tasks held by a scheduling cycle, by reason "
                             "(quota: over the tenant's concurrent quota; shift: for a cheaper "
                             "or greener hour)", ["reason"], registry=r)
        self.fenced_out = Counter("computility_scheduling_fenced_out_cycles",
                                  "Cycles whose decisions were dropped: this replica had lost "
                                  "the leadership", registry=r)
        self.sites_offline = Counter("computility_sites_gone_offline",
                                     "Sites marked offline after falling silent", registry=r)
        self.lease_expiries = Counter("computility_lease_expiries",
                                      "Leases that expired unrenewed (their tasks are re-placed "
                                      "free of charge)", registry=r)
        self.leases_granted = Counter("computility_leases_granted",
                                      "Attempts leased to agents", registry=r)
        self.heartbeats = Counter("computility_heartbeats", "Agent heartbeats recorded",
                                  registry=r)
        self.lease_renewals = Counter("computility_lease_renewals",
                                      "Attempt leases renewed by heartbeats", registry=r)
        self.queue_wait = Histogram(
            "computility_queue_wait_seconds", "From submission to the start of a task's first "
            "attempt (observed when it starts running)", buckets=WAIT_BUCKETS, registry=r)
        self.http_duration = Histogram(
            "computility_http_request_duration_seconds", "API latency, by method, route template "
            "and status class", ["method", "route", "status_class"], buckets=DURATION_BUCKETS,
            registry=r)
        self.auth_refused = Counter(
            "computility_auth_refused", "Authentication attempts refused (429) because their "
            "address failed too often, by kind (api|dashboard)", ["kind"], registry=r)
        # Every series of a known label set exists from the start (a rate over a series that
        # appears only at its first event misses that event).
        for kind in SUBMISSION_KINDS:
            self.tasks_submitted.labels(kind)
            for outcome in SUBMISSION_OUTCOMES:
                self.submissions.labels(kind, outcome)
        for step in SCHEDULING_STEPS:
            self.step_duration.labels(step)
        for reason in HOLD_REASONS:
            self.holds.labels(reason)
        for kind in AUTH_KINDS:
            self.auth_refused.labels(kind)

    def observe_cycle(self, report: CycleReport, at: float) -> None:
        """Count what one scheduling cycle did (the loop calls this with its `CycleReport`)."""
        self.cycles.inc()
        self.cycle_duration.observe(report.wall_s)
        for name, seconds in report.timings.items():
            self.step_duration.labels(name.removesuffix("_s")).observe(seconds)
        self.sites_offline.inc(report.offline)
        self.last_cycle.set(at)
        if report.fenced_out:
            self.fenced_out.inc()
            return
        self.placements.inc(report.placed)
        self.holds.labels("shift").inc(report.shifted)
        self.holds.labels("quota").inc(report.held - report.shifted)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "OTHER"
        self.http_duration.labels(method, route, f"{status // 100}xx").observe(seconds)

    def observe_submission(self, kind: str, status: int) -> None:
        outcome = "accepted" if status < 400 else "rejected" if status < 500 else "failed"
        self.submissions.labels(kind, outcome).inc()


def _family(kind: str, name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
    make = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return make(name, doc, labels=list(labels))


FAMILIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("gauge", "computility_tasks", "Tasks by state", ("state",)),
    ("gauge", "computility_sites_online", "Sites online", ()),
    ("gauge", "computility_site_online", "Whether the site is online (1) or not (0)",
     ("site",)),
    ("gauge", "computility_site_capacity_cu", "The site's compute capacity in CU, per device "
     "type", ("site", "device")),
    ("gauge", "computility_site_busy_cu", "CU held by attempts leased or running on the site, "
     "per device type", ("site", "device")),
    ("gauge", "computility_site_free_units", "Free scheduling units the site's agent last "
     "reported (CPU cores, or thousandths of an accelerator), per device type",
     ("site", "device")),
    ("counter", "computility_ledger_entries", "Attempts billed (ledger entries)", ()),
    ("counter", "computility_ledger_billed", "Money billed, in whole units of the network's "
     "currency, by component (compute|energy|network)", ("currency", "component")),
    ("counter", "computility_ledger_cu_seconds", "Compute billed, in CU-seconds (CU-hours x "
     "3600)", ()),
    ("counter", "computility_ledger_energy_joules", "Energy billed, in joules (kWh x 3.6e6)",
     ()),
    ("counter", "computility_ledger_carbon_grams", "Emissions billed, in grams of CO2e", ()),
    ("gauge", "computility_database_up", "Whether the database answered this scrape's queries",
     ()),
    ("gauge", "computility_metrics_query_duration_seconds", "Time this scrape's database "
     "queries took", ()),
)


class DatabaseCollector(Collector):
    """The network's state, read from the database at scrape time (see the module docstring).

    A database that does not answer does not fail the scrape: the events of this process are
    still served, with ``computility_database_up`` 0.
    """

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def describe(self) -> Iterator[Metric]:
        for kind, name, doc, labels in FAMILIES:
            yield _family(kind, name, doc, labels)

    def collect(self) -> Iterator[Metric]:
        out = {name: _family(kind, name, doc, labels) for kind, name, doc, labels in FAMILIES}
        started = time.perf_counter()
        try:
            with self.plane.engine.connect() as conn:
                self._read(conn, out)
            up = 1.0
        except Exception:
            log.warning("metrics: the database did not answer", exc_info=True)
            out = {name: _family(kind, name, doc, labels)
                   for kind, name, doc, labels in FAMILIES}  # no half-read state
            up = 0.0
        out["computility_database_up"].add_metric([], up)
        out["computility_metrics_query_duration_seconds"].add_metric(
            [], time.perf_counter() - started)
        yield from out.values()

    def _read(self, conn: Connection, out: dict[str, Any]) -> None:
        t = db.tasks.c
        counts = dict.fromkeys(TASK_STATES, 0)
        for state, n in conn.execute(select(t.state, func.count()).group_by(t.state)):
            counts[state] = int(n)
        for state, n in counts.items():
            out["computility_tasks"].add_metric([state], n)
        self._sites(conn, out)
        self._ledger(conn, out)

    def _sites(self, conn: Connection, out: dict[str, Any]) -> None:
        s, p, a = db.sites.c, db.pools.c, db.attempts.c
        catalogue = {d.id: d for d in default_catalogue()}
        rows = conn.execute(
            select(s.id, s.online, p.device, func.sum(p.count), func.sum(p.free_units))
            .select_from(db.sites.outerjoin(db.pools, p.site_id == s.id))
            .group_by(s.id, s.online, p.device)).all()
        # Busy from the attempts that hold devices: a range of the (state, expiry) index, not a
        # scan of every task.
        busy = {(site, device): int(units or 0) for site, device, units in conn.execute(
            select(a.site_id, p.device, func.sum(a.units))
            .select_from(db.attempts.join(db.pools, and_(p.site_id == a.site_id,
                                                         p.pool_id == a.pool_id)))
            .where(a.state.in_(tuple(states.ACTIVE)))
            .group_by(a.site_id, p.device))}
        online: dict[str, bool] = {}
        for site, is_online, device, count, free in rows:
            online[site] = bool(is_online)
            if device is None:  # a site without pools
                continue
            kind = catalogue.get(device)
            cu = kind.cu if kind is not None else 0.0
            per_unit = cu if kind is None or not kind.is_accelerator else cu / MILLI
            out["computility_site_capacity_cu"].add_metric([site, device], int(count or 0) * cu)
            out["computility_site_busy_cu"].add_metric(
                [site, device], busy.get((site, device), 0) * per_unit)
            out["computility_site_free_units"].add_metric([site, device], int(free or 0))
        for site, is_online in online.items():
            out["computility_site_online"].add_metric([site], 1.0 if is_online else 0.0)
        out["computility_sites_online"].add_metric([], sum(online.values()))

    def _ledger(self, conn: Connection, out: dict[str, Any]) -> None:
        c = db.ledger.c
        n, cu_hours, kwh, carbon_kg, compute, energy, network = conn.execute(select(
            func.count(), func.sum(c.cu_hours), func.sum(c.kwh), func.sum(c.carbon_kg),
            func.sum(c.compute_micro), func.sum(c.energy_micro), func.sum(c.network_micro),
        )).one()
        currency = self.plane.currency
        out["computility_ledger_entries"].add_metric([], int(n or 0))
        for component, micro in zip(LEDGER_COMPONENTS, (compute, energy, network), strict=True):
            out["computility_ledger_billed"].add_metric([currency, component],
                                                        int(micro or 0) / 1e6)
        out["computility_ledger_cu_seconds"].add_metric([], float(cu_hours or 0) * 3600.0)
        out["computility_ledger_energy_joules"].add_metric(
            [], float(kwh or 0) * JOULES_PER_KWH)
        out["computility_ledger_carbon_grams"].add_metric([], float(carbon_kg or 0) * 1000.0)


def build_labels(plane: ControlPlane) -> dict[str, str]:
    """What ``computility_build_info`` says: the package's version, Python's, the database's
    kind and this replica's name."""
    try:
        version = importlib.metadata.version("computility")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"version": version, "python": platform.python_version(),
            "database": plane.engine.dialect.name, "replica": plane.replica}


def install_metrics(app: FastAPI, plane: ControlPlane) -> None:
    """Serve ``/metrics``: this plane's events (summed over the service's workers when they
    share them), the database's state, the build and the process (CPU, memory, open files: of
    the worker that answered)."""
    shared = shared_metrics_dir()
    if shared is None:
        registry = plane.metrics.registry
    else:  # the events from the shared files, not from this worker's registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry, shared)  # type: ignore[no-untyped-call]
    registry.register(DatabaseCollector(plane))
    Info("computility_build", "The running build", registry=registry).info(build_labels(plane))
    ProcessCollector(registry=registry)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)
