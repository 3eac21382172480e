"""One site's agent: register, heartbeat, lease, run through the backend, report.

Three threads and a small pool of stagers:

* **heartbeat** every few seconds (the server says how often): free devices per pool and the
  attempts running, which renews their leases; the reply names attempts to cancel (the user
  cancelled, or the cost reached ``max_price``) and attempts the server no longer knows.
* **lease**: a long poll (30 s) for work that fits the free devices; each lease is staged and
  submitted by a stager thread so a slow download never delays the next lease.
* **monitor**: polls the backend for each attempt (every 20 ms in a task's first seconds, so
  its first output reaches the user at once, then every 0.5 s), uploads stdout and stderr as they
  grow, and on exit uploads the outputs and reports the outcome with the measured usage.

Every attempt the agent holds is written to ``attempts.json`` in its state directory (mode 600),
so an agent that restarts (even after kill -9) re-adopts the tasks its backend still runs,
reports those that ended while it was away, and hands back those it had not yet started.
Reports are retried through a control-plane outage; a report refused as stale (409: the lease was
given up and the task re-placed) is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from computility.agent.allocation import Pools
from computility.agent.backends.base import Allocation, Backend, BackendError, Status, TaskRun
from computility.agent.client import AgentClient, CertificateRefused, Stopping
from computility.agent.config import SiteConfig
from computility.agent.staging import StagingFailed, stage
from computility.domain.errors import ComputilityError
from computility.wire.archives import pack
from computility.wire.spec import task_spec_from_mapping

log = logging.getLogger("computility.agent")

LEASE_WAIT_S = 30.0
LOG_LIMIT_BYTES = 64 << 20
YOUNG_S = 3.0
FAST_POLL_S = 0.02
SLOW_POLL_S = 0.5
STATE_FILE = "attempts.json"
KEY_FILE = "agent.key"


@dataclass
class Held:
    """An attempt this agent holds, as persisted in ``attempts.json``."""

    attempt: int
    token: int
    task: int
    pool: str
    units: int
    ids: tuple[str, ...]
    outputs: tuple[str, ...]
    run: dict[str, Any] | None = None  # the TaskRun, once staged
    handle: str | None = None
    staged_bytes: int = 0
    stage_s: float = 0.0
    since: float = field(default_factory=time.time)
    reported_running: bool = False
    uploaded: dict[str, int] = field(default_factory=dict)
    uploaded_at: float = 0.0  # when its logs were last sent
    checked_at: float = 0.0  # when its logs were last looked at
    stopping: bool = False
    interrupted: bool = False  # stopped because this agent is shutting down
    number: int = 1  # which try of its task this is

    def task_run(self) -> TaskRun:
        assert self.run is not None
        r = dict(self.run)
        r["rundir"], r["workdir"] = Path(r["rundir"]), Path(r["workdir"])
        a = dict(r["allocation"])
        a["cpu_ids"], a["device_ids"] = tuple(a["cpu_ids"]), tuple(a["device_ids"])
        r["allocation"] = Allocation(**a)
        return TaskRun(**r)


def _run_dict(run: TaskRun) -> dict[str, Any]:
    d = asdict(run)
    d["rundir"], d["workdir"], d["envs"] = str(run.rundir), str(run.workdir), dict(run.envs)
    return d


class SiteAgent:
    def __init__(self, *, server: str, provider_key: str, site: SiteConfig, pools: Pools,
                 backend: Backend, state_dir: Path, tasks_root: Path,
                 run_as: tuple[int, int] | None = None, user: str | None = None,
                 keep_rundirs: bool = False, verify: ssl.SSLContext | bool = True) -> None:
        self.site, self.pools, self.backend = site, pools, backend
        self.state_dir, self.tasks_root = state_dir, tasks_root
        self.run_as, self.user, self.keep_rundirs = run_as, user, keep_rundirs
        self.provider_key = provider_key
        self.stop_event = threading.Event()
        self.client = AgentClient(server, provider_key, self.stop_event, verify=verify)
        self.heartbeat_s = 5.0
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._held: dict[int, Held] = {}
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._draining = False
        self._stagers = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{site.id}-stage")
        self.reports_refused = 0

    # ---------------------------------------------------------------- lifecycle

    def register(self) -> None:
        body = {"id": self.site.id, "region": self.site.region, "lat": self.site.lat,
                "lon": self.site.lon, "backend": self.backend.name, "pue": self.site.pue,
                "electricity_price_per_kwh": self.site.electricity_price_per_kwh,
                "carbon_kg_per_kwh": self.site.carbon_kg_per_kwh,
                "pools": [p.wire() for p in self.pools.by_id.values()],
                "tenants": list(self.site.tenants) if self.site.tenants is not None else None,
                "datasets": [d.wire() for d in self.site.datasets]}
        self.client.set_key(self.provider_key)
        r = self.client.call("POST", "/api/v1/sites", json=body)
        if r.status_code != 201 and r.status_code != 200:
            raise RegistrationFailed(f"site {self.site.id}: registration refused "
                                     f"({r.status_code}): {_detail(r)}")
        key = str(r.json()["agent_key"])
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.state_dir, 0o700)
        _write_private(self.state_dir / KEY_FILE, key)
        self.client.set_key(key)

    def start(self) -> SiteAgent:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._adopt()
        self.register()
        self._hand_back_unstarted()
        for target, name in ((self._heartbeats, "beat"), (self._leases, "lease"),
                             (self._monitor, "monitor")):
            t = threading.Thread(target=target, name=f"{self.site.id}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("site %s: serving with the %s backend", self.site.id, self.backend.name)
        return self

    def stop(self, cancel_tasks: bool = True, wait_s: float = 15.0) -> None:
        """Stop; with `cancel_tasks`, stop the tasks too and report them as interrupted by the
        site (re-placed at no charge) before leaving."""
        self._draining = True
        # If the service is away, the site goes offline after its silence anyway.
        with contextlib.suppress(httpx.HTTPError, Stopping, CertificateRefused):
            self.client.call("POST", "/api/v1/agent/heartbeat", retry=False, timeout=5,
                             json={"free": self.pools.free(), "leaving": True})
        if cancel_tasks:
            for held in self.held():
                held.interrupted = True
                if held.handle is not None and held.run is not None:
                    self.backend.cancel(held.handle, held.task_run())
            self._wake.set()
            deadline = time.monotonic() + wait_s
            while self.held() and time.monotonic() < deadline:
                time.sleep(0.05)
        self.stop_event.set()
        self._wake.set()
        self._stagers.shutdown(wait=False, cancel_futures=True)
        self.client.close()  # ends the open long poll at once
        for t in self._threads:
            t.join(timeout=5)
        self.backend.close()

    def held(self) -> list[Held]:
        with self._lock:
            return list(self._held.values())

    # ---------------------------------------------------------------- persistence

    def _save(self) -> None:
        with self._save_lock:  # snapshots land in the order they were taken
            with self._lock:
                data = [asdict(h) for h in self._held.values()]
            _write_private(self.state_dir / STATE_FILE, json.dumps(data))

    def _adopt(self) -> None:
        """Take back what an earlier agent process of this site held."""
        try:
            data = json.loads((self.state_dir / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        for raw in data:
            raw["ids"], raw["outputs"] = tuple(raw["ids"]), tuple(raw["outputs"])
            held = Held(**raw)
            with self._lock:
                self._held[held.attempt] = held
            self.pools.restore(held.attempt, held.pool, held.units, held.ids)
        if data:
            log.info("site %s: adopted %d attempts from an earlier agent", self.site.id, len(data))

    def _hand_back_unstarted(self) -> None:
        """Report each adopted attempt without a backend handle as failed to start.

        Such a record was written when the lease came and the process died before the backend
        took the task (or before its handle was saved). Nothing would ever poll it, while every
        heartbeat renewed its lease: the task stayed leased for ever. Whether its run began cannot
        be known, so it goes back to be placed again at no charge; a run that did begin reports
        to no one and is never billed."""
        for held in self.held():
            if held.handle is None:
                self._finish(held, Status(
                    "failed_to_start", reason=f"site {self.site.id}: its agent restarted while "
                    "starting the task; re-placed at no charge"))

    # ---------------------------------------------------------------- heartbeats

    def _heartbeats(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.beat()
            except Stopping:
                return
            self.stop_event.wait(self.heartbeat_s)

    def beat(self) -> None:
        now = time.time()
        running = [{"attempt": h.attempt, "token": h.token, "run_s": max(0.0, now - h.since)}
                   for h in self.held()]
        r = self.client.call("POST", "/api/v1/agent/heartbeat",
                             json={"free": self.pools.free(), "running": running,
                                   "leaving": self._draining})
        if r.status_code != 200:
            log.warning("site %s: heartbeat refused (%d): %s", self.site.id, r.status_code,
                        _detail(r))
            return
        reply = r.json()
        self.heartbeat_s = float(reply.get("heartbeat_s", self.heartbeat_s))
        for attempt in set(reply["cancel"]) | set(reply["unknown"]):
            self._cancel(int(attempt))

    def _cancel(self, attempt: int) -> None:
        with self._lock:
            held = self._held.get(attempt)
            if held is not None:
                held.stopping = True
        if held is not None and held.handle is not None and held.run is not None:
            self.backend.cancel(held.handle, held.task_run())
            self._wake.set()

    def _stopping(self) -> list[int]:
        return [h.attempt for h in self.held() if h.stopping]

    # ---------------------------------------------------------------- leases

    def _leases(self) -> None:
        while not self.stop_event.is_set() and not self._draining:
            try:
                r = self.client.call("POST", "/api/v1/agent/lease", timeout=LEASE_WAIT_S + 30,
                                     json={"free": self.pools.free(), "wait_s": LEASE_WAIT_S,
                                           "max_tasks": 64, "stopping": self._stopping()})
            except Stopping:
                return
            if r.status_code != 200:
                log.warning("site %s: lease refused (%d): %s", self.site.id, r.status_code,
                            _detail(r))
                self.stop_event.wait(2.0)
                continue
            reply = r.json()
            for attempt in reply.get("cancel", ()):
                self._cancel(int(attempt))
            for lease in reply["leases"]:
                self._accept(lease)

    def _accept(self, lease: dict[str, Any]) -> None:
        attempt, pool = int(lease["attempt"]), str(lease["pool"])
        units = int(lease["units"])
        spec_raw = lease["spec"]
        outputs = tuple(str(o) for o in spec_raw.get("outputs") or ())
        if self._draining:  # leased as the agent stops: hand it straight back
            gone = Held(attempt, int(lease["token"]), int(lease["task"]), pool, 0, (), outputs)
            self._report(gone, {"state": "failed_to_start", "reason": "the site is stopping"})
            return
        ids = self.pools.take(attempt, pool, units)
        held = Held(attempt, int(lease["token"]), int(lease["task"]), pool, units, ids, outputs,
                    number=int(lease.get("number", 1)))
        with self._lock:
            self._held[attempt] = held
        self._save()
        self._stagers.submit(self._launch, held, spec_raw)

    def _launch(self, held: Held, spec_raw: dict[str, Any]) -> None:
        try:
            spec = task_spec_from_mapping(spec_raw)
            pool = self.pools.by_id[held.pool]
            accelerators = -(-held.units // 1000) if pool.accelerator else 0
            cpus = held.units if not pool.accelerator else spec.resources.cpus
            allocation = Allocation(
                cpus=cpus,
                memory_bytes=int(spec.resources.memory_gb * 1e9)
                if spec.resources.memory_gb else None,
                accelerator=pool.device if pool.accelerator else None,
                accelerators=accelerators,
                cpu_ids=tuple(int(i) for i in held.ids) if not pool.accelerator else (),
                device_ids=held.ids if pool.accelerator else ())
            staged = stage(self.client, {"attempt": held.attempt, "task": held.task,
                                         "pool": held.pool, "number": held.number}, spec,
                           site=self.site.id,
                           tasks_root=self.tasks_root, allocation=allocation,
                           device=pool.device, pool_ids=held.ids, owner=self.run_as,
                           user=self.user, datasets=self.site.dataset_paths())
            held.run, held.staged_bytes, held.stage_s = (_run_dict(staged.run), staged.bytes,
                                                         staged.seconds)
            held.handle = self.backend.submit(staged.run)
            held.since = time.time()
        except (StagingFailed, BackendError, OSError, ValueError) as e:
            self._finish(held, Status("failed_to_start", reason=str(e)))
            return
        except Stopping:
            return
        self._save()
        if held.stopping:  # cancelled while it was being staged
            self.backend.cancel(held.handle, staged.run)
        self._report(held, {"state": "running"})
        held.reported_running = True
        self._wake.set()

    # ---------------------------------------------------------------- monitoring

    def _monitor(self) -> None:
        while not self.stop_event.is_set():
            active = [h for h in self.held() if h.handle is not None]
            if not active:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            now = time.time()
            young = False
            for held in active:
                if now - held.since < YOUNG_S or held.stopping:
                    young = True
                elif now - held.checked_at < SLOW_POLL_S and held.reported_running:
                    continue
                try:
                    self._check(held)
                except Stopping:
                    return
                except Exception:  # one attempt's trouble must not stop the others' monitoring
                    log.exception("site %s: attempt %d: monitoring failed", self.site.id,
                                  held.attempt)
            self._wake.wait(FAST_POLL_S if young else SLOW_POLL_S)
            self._wake.clear()

    def _check(self, held: Held) -> None:
        assert held.handle is not None
        run = held.task_run()
        status = self.backend.poll(held.handle, run)
        if not held.reported_running and status.phase in ("running", "exited"):
            self._report(held, {"state": "running"})
            held.reported_running = True
        self._upload_logs(held, run, final=status.done)
        if status.done:
            self._finish(held, status, run)

    def _upload_logs(self, held: Held, run: TaskRun, final: bool) -> None:
        now = time.time()
        for stream in ("stdout", "stderr"):
            data = self.backend.output(held.handle or "", run, stream, LOG_LIMIT_BYTES)
            if len(data) == held.uploaded.get(stream, 0) and (data or not final):
                continue
            size = held.uploaded.get(stream, 0)
            due = max(1.0, len(data) / (1 << 20))
            if not final and size and now - held.uploaded_at < due:
                continue
            self._put(held, stream, data)
            held.uploaded[stream] = len(data)
            held.uploaded_at = now
        # Only a send restarts the pause between sends; looking at the logs does not (else a
        # task writing steadily would be sent once, then only when it ends).
        held.checked_at = now

    def _put(self, held: Held, kind: str, data: bytes) -> None:
        r = self.client.call("PUT", f"/api/v1/agent/attempts/{held.attempt}/files/{kind}",
                             content=data, headers={"X-Attempt-Token": str(held.token)})
        if r.status_code not in (204, 200):
            log.warning("site %s: attempt %d: %s upload refused (%d): %s", self.site.id,
                        held.attempt, kind, r.status_code, _detail(r))

    def _finish(self, held: Held, status: Status, run: TaskRun | None = None) -> None:
        if held.interrupted and status.phase == "exited":
            body: dict[str, Any] = {"state": "interrupted",
                                    "reason": f"site {self.site.id} stopped (its agent shut "
                                              "down); re-placed at no charge"}
        elif status.phase == "exited":
            if run is not None and held.outputs:
                try:
                    self._put(held, "outputs", pack(run.workdir, held.outputs))
                except OSError as e:
                    log.warning("attempt %d: outputs not packed: %s", held.attempt, e)
            usage = {k: v for k, v in asdict(status.usage).items() if v is not None}
            usage.update(staged_bytes=held.staged_bytes, stage_s=round(held.stage_s, 6),
                         timed_out=status.timed_out, out_of_memory=status.out_of_memory)
            body = {
                "state": "exited", "run_s": status.usage.wall_s, "reason": status.reason,
                "gb_moved": held.staged_bytes / 1e9, "usage": usage,
                "exit_code": 124 if status.timed_out else status.exit_code,
                "signal": None if status.timed_out else status.signal}
            if body["exit_code"] is None and body["signal"] is None:
                body["exit_code"] = 1
        else:
            body = {"state": "failed_to_start",
                    "reason": status.reason or f"the {self.backend.name} backend lost the task"}
        if body.get("run_s") is None:
            body.pop("run_s", None)
        if body["state"] == "failed_to_start":
            log.warning("site %s: attempt %d did not run: %s", self.site.id, held.attempt,
                        body["reason"])
        if not held.reported_running and body["state"] in ("exited", "interrupted"):
            self._report(held, {"state": "running"})
        self._report(held, body)
        if held.handle is not None and run is not None:
            self.backend.release(held.handle, run)
            if not self.keep_rundirs:
                shutil.rmtree(run.rundir, ignore_errors=True)
        with self._lock:
            self._held.pop(held.attempt, None)
        self.pools.give_back(held.attempt, held.pool, held.units)
        self._save()

    def _report(self, held: Held, body: dict[str, Any]) -> int:
        try:
            r = self.client.call("POST", f"/api/v1/agent/attempts/{held.attempt}/report",
                                 json={"token": held.token, **body})
        except httpx.HTTPError:
            return 0
        if r.status_code == 409:
            self.reports_refused += 1
            log.info("site %s: attempt %d: report refused as stale: %s", self.site.id,
                     held.attempt, _detail(r))
        elif r.status_code >= 400:
            log.warning("site %s: attempt %d: report refused (%d): %s", self.site.id,
                        held.attempt, r.status_code, _detail(r))
        return r.status_code


class RegistrationFailed(ComputilityError):
    """The control plane refused the site (a bad key, a site id another provider owns)."""


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text))[:300]
    except ValueError:
        return r.text[:300]


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
