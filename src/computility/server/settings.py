"""What a control plane instance is configured with, and the timing rules of the agent protocol."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEARTBEAT_S = 5.0
"""Agents heartbeat every 5 s (plus or minus 20 %)."""
OFFLINE_AFTER_S = 30.0
"""A site silent this long is offline: nothing new is placed on it."""
LEASE_TTL_S = 60.0
"""A lease not renewed for this long expires; its task is re-placed free of charge."""
LEASE_RENEW_S = 15.0
LONG_POLL_MAX_S = 30.0
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest JSON/YAML request body; uploads have their own, larger limit."""
BLOB_LIMIT_BYTES = 1 << 30
"""Per task: the packed workdir, and each of logs and outputs (default 1 GiB)."""


def default_replica() -> str:
    """This process's name among replicas: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def data_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "computility"


KEEP_ALIVE_S = 75
"""How long the server keeps an idle client connection: longer than the usual clients keep
theirs (httpx 5 s, aiohttp 15 s), so an idle connection is closed by its client, never by the
server just as a client sends a request on it (which the client sees as a reset connection)."""


@dataclass(frozen=True)
class Settings:
    db_url: str | None = None
    """None: SQLite under `data_dir`."""
    data_dir: Path = field(default_factory=data_home)
    network: str = "default"
    """The topology sites register into: its regions, links and user locations."""
    lease_ttl_s: float = LEASE_TTL_S
    offline_after_s: float = OFFLINE_AFTER_S
    heartbeat_s: float = HEARTBEAT_S
    long_poll_max_s: float = LONG_POLL_MAX_S
    cycle_s: float = 1.0
    """The scheduling loop runs at least this often, and soon after a submission."""
    min_cycle_gap_s: float = 0.1
    """Between two cycles at least this long passes, however many submissions wake the loop."""
    max_body_bytes: int = MAX_BODY_BYTES
    blob_limit_bytes: int = BLOB_LIMIT_BYTES
    leader_stale_s: float = 10.0
    """A leader silent this long is replaced (PostgreSQL replicas)."""
    sample_s: float = 60.0
    """The leader samples every pool's capacity, load and prices this often (the dashboard's
    charts of supply and demand; see `computility.server.sampling`)."""
    auth_failure_limit: int = 10
    """Failed authentications an address may make within `auth_failure_window_s`; the next
    refuses it (429) for a window (`computility.server.ratelimit`)."""
    auth_failure_window_s: float = 60.0
    auth_tracked_clients: int = 10_000
    """Addresses the limiter tracks at once; the longest-quiet is forgotten first."""
    request_threads: int | None = None
    """Threads that run the API's blocking handlers; None: 4, on either database. Their work is
    Python under one interpreter lock, so more threads add lock hand-offs, not throughput: under
    `benchmarks/load.py` 40 threads answered in seconds what 4 answer in tens of milliseconds,
    and on PostgreSQL 8 threads (to keep more round trips in flight) did worse than 4. Long
    polls and uploads wait without a thread."""
    tune_heap: bool = False
    """Tune the heap for a long life (`computility.server.heap`): for a process that serves only
    this plane (`computility up`), not for one that builds and drops many (a test run)."""
    run_loop: bool = True
    replica: str = ""
    """This replica's name in the leadership table (host:pid when empty)."""
    clock: Callable[[], float] = time.time
    """The scheduling clock, UNIX seconds: where "now" falls on the hourly price and carbon
    curves, when a relative deadline starts counting, and when a hold for cheaper or greener hours
    ends (scheduling cycles, quotes, explanations, submissions). Tests inject a clock to place a
    task hours ahead without waiting for them. Protocol timers (leases, heartbeats, site
    liveness) measure real elapsed time and keep the wall clock whatever this is."""

    def threads_for(self, engine: Any) -> int:
        """How many threads run blocking handlers with `engine` (the same number on either
        database today; the engine is asked so a dialect can differ without a new call site)."""
        if self.request_threads is not None:
            return self.request_threads
        return 4


TUNABLE = {
    "COMPUTILITY_CYCLE_S": "cycle_s",
    "COMPUTILITY_LEASE_TTL_S": "lease_ttl_s",
    "COMPUTILITY_HEARTBEAT_S": "heartbeat_s",
    "COMPUTILITY_OFFLINE_AFTER_S": "offline_after_s",
    "COMPUTILITY_LEADER_STALE_S": "leader_stale_s",
    "COMPUTILITY_SAMPLE_S": "sample_s",
    "COMPUTILITY_REPLICA": "replica",
    "COMPUTILITY_AUTH_FAILURE_LIMIT": "auth_failure_limit",
    "COMPUTILITY_AUTH_FAILURE_WINDOW_S": "auth_failure_window_s",
    "COMPUTILITY_REQUEST_THREADS": "request_threads",
}
"""Environment variables that override timing settings of `computility up` (operators tune
these for tests and drills; the defaults are the protocol's)."""


def from_environment(**fields: object) -> Settings:
    """Settings from `fields`, with `TUNABLE` environment overrides applied."""
    values: dict[str, object] = dict(fields)
    for env, name in TUNABLE.items():
        raw = os.environ.get(env)
        if raw is None:
            continue
        if name == "replica":
            values[name] = raw
            continue
        if name in ("auth_failure_limit", "request_threads"):
            if not (raw.strip().isascii() and raw.strip().isdigit()) or int(raw) < 1:
                from computility.domain.errors import UsageError

                raise UsageError(f"{env}: expected a whole number of at least 1, got '{raw}'")
            values[name] = int(raw)
            continue
        try:
            values[name] = float(raw)
        except ValueError:
            from computility.domain.errors import UsageError

            raise UsageError(f"{env}: expected a number of seconds, got '{raw}'") from None
        if name == "auth_failure_window_s" and not 0 < float(raw) < float("inf"):
            from computility.domain.errors import UsageError

            raise UsageError(f"{env}: expected a number of seconds above 0, got '{raw}'")
    return Settings(**values)  # type: ignore[arg-type]
