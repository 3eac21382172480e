"""Real processes for the chaos suite: `computility up`, `computility agent` (one per site, one of
them inside a network namespace), and the seeded faults done to them.

Everything here drives the product the way an operator runs it: child processes started from the
installed `computility` command, killed with SIGKILL, stopped with SIGSTOP, cut off the network by
taking their link down. The test module decides what to do and when; these classes only know how.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from computility.testing.service import (  # noqa: F401 - the suite's one import of them
    COMPUTILITY,
    ServiceProcess,
    operator_key,
    service_env,
)

NETNS_PREFIX = "cuchaos-"
"""Network namespaces this suite makes are named ``cuchaos-<pid of the test process>``."""


# ------------------------------------------------------------------------------ the control plane

Service = ServiceProcess


# ---------------------------------------------------------------------------------------- agents


class Agent:
    """One site's `computility agent` process; inside `netns` when given."""

    def __init__(self, site: str, server: str, token_file: Path, config: Path, home: Path,
                 tasks_root: Path, env: dict[str, str], netns: str | None = None) -> None:
        self.site, self.server, self.token_file, self.config = site, server, token_file, config
        self.home, self.tasks_root, self.env, self.netns = home, tasks_root, env, netns
        self.log = home / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def records(self) -> Path:
        """The agent's own record of the attempts it holds (`attempts.json`)."""
        return self.home / "state" / self.site / "attempts.json"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [COMPUTILITY, "agent", "--server", self.server, "--token-file",
                str(self.token_file), "--config", str(self.config), "--site", self.site,
                "--state-dir", str(self.home / "state"), "--tasks-root", str(self.tasks_root)]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.send(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case it was left stopped): it stops its tasks and leaves."""
        if not self.alive:
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.send(signal.SIGCONT)
            self.send(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def holds(self) -> int:
        """How many attempts the agent's record says it holds (0 without a record)."""
        try:
            return len(json.loads(self.records.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return 0

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def site_config(path: Path, site: str, backend: str, cpus: int | None) -> Path:
    """A one-site config file: an emulated CPU pool of `cpus` (a backend's own pools when None)."""
    lines = [f"backend: {backend}", "sites:", f"  - id: {site}", "    region: ZJK"]
    if cpus is not None:
        lines += ["    emulated: true", "    pools:",
                  f"      - {{id: cpu, device: EPYC-7763, count: {cpus}}}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ network namespace


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def netns_refused() -> str | None:
    """Why this machine does not let the test make a network namespace; None when it does."""
    name = f"{NETNS_PREFIX}probe-{os.getpid()}"
    try:
        made = _ip("netns", "add", name, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return f"`ip netns add` cannot run: {e}"
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()[:200]}"
    _ip("netns", "del", name, check=False)
    return None


def remove_stale_namespaces() -> list[str]:
    """Delete the namespaces (and their links) of earlier runs whose test process is gone."""
    removed = []
    listing = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listing:
        name = line.split(" ")[0].strip()
        if not name.startswith(NETNS_PREFIX):
            continue
        owner = name.removeprefix(NETNS_PREFIX).removeprefix("probe-")
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            continue  # a live run's
        _ip("netns", "del", name, check=False)
        _ip("link", "del", f"cuc{owner}h", check=False)
        removed.append(name)
    return removed


@dataclass
class Namespace:
    """A network namespace joined to the host by a veth pair: host side ``10.203.X.1/30``, the
    namespace's side ``.2``. `cut` takes the host side down; `restore` brings it up."""

    name: str = field(default_factory=lambda: f"{NETNS_PREFIX}{os.getpid()}")
    subnet: int = 0

    @property
    def host_dev(self) -> str:
        return f"cuc{self.name.removeprefix(NETNS_PREFIX)}h"

    @property
    def host_ip(self) -> str:
        return f"10.203.{self.subnet}.1"

    def create(self) -> Namespace:
        used = _ip("-o", "-4", "addr", check=False).stdout
        self.subnet = next(x for x in range(1 + os.getpid() % 200, 255)
                           if f"10.203.{x}." not in used)
        inner = "cuc0"
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_dev, "type", "veth", "peer", "name", inner,
            "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_dev)
        _ip("link", "set", self.host_dev, "up")
        for args in (("addr", "add", f"10.203.{self.subnet}.2/30", "dev", inner),
                     ("link", "set", inner, "up"), ("link", "set", "lo", "up")):
            _ip("netns", "exec", self.name, "ip", *args)
        return self

    def cut(self) -> None:
        _ip("link", "set", self.host_dev, "down")

    def restore(self) -> None:
        _ip("link", "set", self.host_dev, "up")

    def destroy(self) -> None:
        _ip("link", "del", self.host_dev, check=False)
        _ip("netns", "del", self.name, check=False)


# -------------------------------------------------------------------------------------- workload


def witness_line(witness_dir: Path) -> str:
    """What each task does last: append "task-id attempt-id" to its site's witness file, the
    task's own record of having run (kept outside anything the agent or the service writes)."""
    return (f'echo "$COMPUTILITY_TASK_ID $COMPUTILITY_ATTEMPT" >> '
            f'{witness_dir}/"$COMPUTILITY_SITE".log')


def read_witnesses(witness_dir: Path) -> dict[str, list[tuple[int, int]]]:
    """(task, attempt) pairs per site, one per run that got to its end."""
    out: dict[str, list[tuple[int, int]]] = {}
    for path in sorted(witness_dir.glob("*.log")):
        pairs = []
        for line in path.read_text(encoding="utf-8").splitlines():
            task, attempt = line.split()
            pairs.append((int(task), int(attempt)))
        out[path.stem] = pairs
    return out


class Submitter(threading.Thread):
    """Submits `total` tasks in batches (with Idempotency-Key headers) for several tenants,
    keeping at most `backlog` of them unfinished; a batch is re-sent with the same key and body
    through connection errors and 5xx until it gets its 201."""

    def __init__(self, url: str, keys: dict[str, str], total: int, rng: random.Random,
                 make_spec: Any, unfinished: Any, backlog: int) -> None:
        super().__init__(name="submitter", daemon=True)
        self.url, self.keys, self.total, self.rng = url, keys, total, rng
        self.make_spec, self.unfinished, self.backlog = make_spec, unfinished, backlog
        self.stop = threading.Event()
        self.accepted: dict[int, str] = {}  # task id -> tenant
        self.resent = 0
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            clients = {t: httpx.Client(base_url=self.url, timeout=20.0,
                                       headers={"Authorization": f"Bearer {k}"})
                       for t, k in self.keys.items()}
            n = 0
            while n < self.total and not self.stop.is_set():
                if self._unfinished() >= self.backlog:
                    self.stop.wait(0.2)
                    continue
                tenant = self.rng.choice(sorted(clients))
                size = min(self.total - n, self.rng.randint(5, 25))
                body = {"tasks": [self.make_spec(n + i) for i in range(size)]}
                ids = self._send(clients[tenant], f"chaos-{uuid.uuid4().hex}", body)
                self.accepted.update(dict.fromkeys(ids, tenant))
                n += size
            for c in clients.values():
                c.close()
        except Exception as error:
            self.errors.append(repr(error))

    def _unfinished(self) -> int:
        try:
            count: int = self.unfinished()
        except Exception:  # the database is being written by a restart; ask again later
            return self.backlog
        return count

    def _send(self, c: httpx.Client, key: str, body: dict[str, Any]) -> list[int]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                r = c.post("/api/v1/tasks/batch", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                self.resent += 1
                time.sleep(0.2)
                continue
            if r.status_code >= 500:
                self.resent += 1
                time.sleep(0.2)
                continue
            if r.status_code != 201:
                self.errors.append(f"batch: {r.status_code} {r.text[:300]}")
                return []
            return [int(t["id"]) for t in r.json()["tasks"]]
        self.errors.append("batch: no 201 within 120 s")
        return []


@dataclass
class Event:
    """One fault, done when `at` (a share of the tasks submitted) is reached."""

    at: float
    kind: str  # "service-kill" | "agent-kill" | "pause" | "cut"
    target: str = ""
    down_s: float = 0.0


def schedule(rng: random.Random, kills: int, pauses: int, cuts: int, agents: Sequence[str],
             netns_agent: str, lease_ttl_s: float) -> list[Event]:
    """The seeded faults: what, to whom, for how long, and at which point of the workload."""
    events = [Event(0, "service-kill", "service", rng.uniform(0.2, 2.5)) for _ in range(kills)]
    events += [Event(0, "agent-kill", rng.choice(list(agents)),
                     rng.choice((rng.uniform(0.1, 1.0), rng.uniform(lease_ttl_s + 1,
                                                                    lease_ttl_s + 4))))
               for _ in range(kills)]
    events += [Event(0, "pause", rng.choice(list(agents)),
                     rng.uniform(lease_ttl_s + 2, lease_ttl_s + 5)) for _ in range(pauses)]
    events += [Event(0, "cut", netns_agent, rng.uniform(lease_ttl_s + 2, lease_ttl_s + 5))
               for _ in range(cuts)]
    rng.shuffle(events)
    for e, at in zip(events, sorted(rng.uniform(0.05, 0.9) for _ in events), strict=True):
        e.at = at
    return events
