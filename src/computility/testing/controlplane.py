"""A real control plane in the test's process, and a fake agent that speaks its real HTTP API.

`LocalControlPlane` serves the real application with uvicorn on 127.0.0.1 (a free port) in a
background thread, on SQLite under a temporary directory or on the PostgreSQL URL given. Tests talk
to it over real HTTP with httpx, exactly as users and agents do.

`FakeAgent` registers a site, heartbeats, long-polls for leases and reports attempts like a real
agent, but fakes execution: a leased task "runs" for the seconds its spec's ``envs`` give in
``FAKE_RUN_S`` (default: its estimate, else 1 s), scaled to wall time by ``time_scale``, and exits
with ``FAKE_EXIT`` (default 0). It reports the unscaled run time, so bills are those of the
stated run.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from computility.server.embedded import EmbeddedServer, free_port
from computility.server.settings import Settings
from computility.wire.spec import task_spec_from_mapping

__all__ = ["FakeAgent", "FakeRun", "LocalControlPlane", "answers", "free_port",
           "local_control_plane", "new_tenant", "wait_until"]


class LocalControlPlane(EmbeddedServer):
    """The service on 127.0.0.1 in this process, with an httpx client for the tests."""

    def start(self) -> LocalControlPlane:
        super().start()
        return self

    def client(self, key: str | None = None, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


@contextmanager
def local_control_plane(
    data_dir: Path, db_url: str | None = None, **overrides: Any
) -> Iterator[LocalControlPlane]:
    settings = Settings(db_url=db_url, data_dir=data_dir, **overrides)
    server = LocalControlPlane(settings).start()
    try:
        yield server
    finally:
        server.stop()


def new_tenant(admin: httpx.Client, tenant: str, role: str = "user", **limits: Any) -> str:
    """Create `tenant` (if needed) and a key of `role` in it; returns the key."""
    r = admin.post("/api/v1/tenants", json={"id": tenant, **limits})
    if r.status_code not in (201, 409):
        raise RuntimeError(r.text)
    r = admin.post(f"/api/v1/tenants/{tenant}/keys", json={"user": f"{role}-1", "role": role})
    r.raise_for_status()
    key: str = r.json()["key"]
    return key


REPORT_RETRY_S = 60.0


@dataclass
class FakeRun:
    attempt: int
    token: int
    task: int
    pool: str
    units: int
    run_s: float
    exit_code: int
    started: float
    ends: float
    cancelled: bool = False


@dataclass
class FakeAgent:
    """A site whose agent fakes execution (see the module docstring)."""

    url: str
    provider_key: str
    site: str
    pools: dict[str, tuple[str, int]]  # pool id -> (device, count)
    region: str = "ZJK"
    price_per_cu_hour: float = 0.5
    time_scale: float = 0.001
    heartbeat_s: float = 5.0
    lease_wait_s: float = 1.0
    electricity_price_per_kwh: float | None = 0.5
    carbon_kg_per_kwh: float | None = 0.5
    key: str = ""
    reports: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[int, FakeRun] = {}
        self._threads: list[threading.Thread] = []
        self.finished: list[FakeRun] = []

    # ---------------------------------------------------------------- protocol

    def register(self) -> FakeAgent:
        body = {
            "id": self.site, "region": self.region, "backend": "fake",
            "electricity_price_per_kwh": self.electricity_price_per_kwh,
            "carbon_kg_per_kwh": self.carbon_kg_per_kwh,
            "pools": [{"id": p, "device": d, "count": n, "price_per_cu_hour":
                       self.price_per_cu_hour} for p, (d, n) in self.pools.items()],
        }
        with httpx.Client(base_url=self.url, timeout=30,
                          headers={"Authorization": f"Bearer {self.provider_key}"}) as c:
            r = c.post("/api/v1/sites", json=body)
            r.raise_for_status()
            self.key = r.json()["agent_key"]
        return self

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout,
                            headers={"Authorization": f"Bearer {self.key}"})

    def free(self) -> dict[str, float]:
        with self._lock:
            used: dict[str, int] = {}
            for run in self._running.values():
                used[run.pool] = used.get(run.pool, 0) + run.units
        out = {}
        for pool, (device, count) in self.pools.items():
            scale = 1 if device.lower().startswith(("cpu", "epyc", "xeon")) else 1000
            out[pool] = max(0.0, (count * scale - used.get(pool, 0)) / scale)
        return out

    def start(self) -> FakeAgent:
        if not self.key:
            self.register()
        for target, name in ((self._heartbeats, "beat"), (self._leases, "lease"),
                             (self._runs, "run")):
            t = threading.Thread(target=target, name=f"{self.site}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)
        self._threads = []

    def running(self) -> list[FakeRun]:
        with self._lock:
            return list(self._running.values())

    # ---------------------------------------------------------------- loops

    def _heartbeats(self) -> None:
        with self.client() as c:
            while not self._stop.is_set():
                self.beat(c)
                self._stop.wait(self.heartbeat_s * random.uniform(0.8, 1.2))

    def beat(self, c: httpx.Client) -> None:
        runs = self.running()
        now = time.monotonic()
        body = {"free": self.free(), "running": [
            {"attempt": r.attempt, "token": r.token,
             "run_s": min(r.run_s, (now - r.started) / self.time_scale)} for r in runs]}
        try:
            r = c.post("/api/v1/agent/heartbeat", json=body)
        except httpx.HTTPError:
            return
        if r.status_code == 200:
            reply = r.json()
            stop = set(reply["cancel"]) | set(reply["unknown"])
            with self._lock:
                for run in self._running.values():
                    if run.attempt in stop:
                        run.cancelled = True
                        run.ends = time.monotonic()

    def _leases(self) -> None:
        with self.client(timeout=60) as c:
            while not self._stop.is_set():
                try:
                    r = c.post("/api/v1/agent/lease", json={
                        "free": self.free(), "wait_s": self.lease_wait_s, "max_tasks": 256})
                except httpx.HTTPError:
                    self._stop.wait(0.2)
                    continue
                if r.status_code != 200:
                    self._stop.wait(0.2)
                    continue
                for lease in r.json()["leases"]:
                    self._begin(c, lease)

    def _begin(self, c: httpx.Client, lease: dict[str, Any]) -> None:
        spec = lease["spec"]
        envs = spec.get("envs") or {}
        parsed = task_spec_from_mapping(spec)
        run_s = float(envs.get("FAKE_RUN_S", parsed.resources.estimate_s or 1.0))
        exit_code = int(envs.get("FAKE_EXIT", 0))
        now = time.monotonic()
        run = FakeRun(lease["attempt"], lease["token"], lease["task"], lease["pool"],
                      lease["units"], run_s, exit_code, now, now + run_s * self.time_scale)
        with self._lock:
            self._running[run.attempt] = run
        self._report(c, run, {"state": "running"})

    def _report(self, c: httpx.Client, run: FakeRun, body: dict[str, Any]) -> int:
        """Send a report, retrying through a service restart for up to `REPORT_RETRY_S`."""
        deadline = time.monotonic() + REPORT_RETRY_S
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                r = c.post(f"/api/v1/agent/attempts/{run.attempt}/report",
                           json={"token": run.token, **body})
            except httpx.HTTPError:
                self._stop.wait(0.2)
                continue
            if r.status_code >= 500:
                self._stop.wait(0.1)
                continue
            if r.status_code == 409:
                self.refused += 1
            self.reports.append({"attempt": run.attempt, "status": r.status_code, **body})
            return r.status_code
        return 0

    def _runs(self) -> None:
        with self.client() as c:
            while not self._stop.is_set():
                now = time.monotonic()
                with self._lock:
                    done = [r for r in self._running.values() if r.ends <= now]
                for run in done:
                    if run.cancelled:
                        ran = min(run.run_s, (now - run.started) / self.time_scale)
                        body = {"state": "exited", "signal": 15, "run_s": ran}
                    else:
                        body = {"state": "exited", "exit_code": run.exit_code,
                                "run_s": run.run_s}
                    self._report(c, run, body)
                    with self._lock:
                        self._running.pop(run.attempt, None)
                        self.finished.append(run)
                self._stop.wait(0.01)


def answers(client: httpx.Client) -> bool:
    """Whether the service behind `client` answers ``/healthz`` yet."""
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(predicate: Any, timeout: float = 60.0, every: float = 0.1) -> None:
    """Poll `predicate()` until it is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
