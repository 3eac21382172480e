"""Chaos: real processes, seeded faults, and the books still balance.

A real control plane (`computility up`) and four real agents (`computility agent`: two local
sites on the host, one local site inside a network namespace reached over a veth pair, one Slurm
site) run a seeded workload of short shell tasks while, at seeded moments, the control plane is
SIGKILLed and restarted on the same port and database, agents are SIGKILLed and restarted (some
back within the lease TTL, some after it), an agent is SIGSTOPped for longer than its lease TTL,
and the namespaced agent's link is taken down for longer than its TTL. Each task appends
"task-id attempt-id" to its site's witness file as it ends: the record of what really ran.

Afterwards, from the database, the API and the witnesses:

- every accepted task exists once and reached one terminal state (succeeded; or lost after more
  infrastructure failures than the free re-placements allow), with no attempt still active;
- a succeeded task has exactly one succeeded attempt, and that attempt's run is witnessed;
- the ledger has one entry per attempt that exited and none for an attempt ended by the
  infrastructure; a run witnessed for such an attempt is a duplicate run: counted, never billed;
- every witnessed run belongs to an attempt of that task on that site;
- each tenant's usage (GET /api/v1/usage) is the sum of its ledger entries;
- while an agent is paused or cut off, and at the end, no lease is held past its expiry.

Sizes and the seed come from the environment: COMPUTILITY_CHAOS_SEED (default: a fresh one,
printed), COMPUTILITY_CHAOS_TASKS (1000 on SQLite), COMPUTILITY_CHAOS_PG_TASKS (on PostgreSQL;
default 30 % of that, at least 100), COMPUTILITY_CHAOS_KILLS (3 of the service and 3 of agents;
one pause and one cut per 10 kills, at least one).
docs/reliability.md has the commands.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos_harness import (
    Agent,
    Event,
    Namespace,
    Service,
    Submitter,
    netns_refused,
    operator_key,
    read_witnesses,
    remove_stale_namespaces,
    schedule,
    service_env,
    site_config,
    witness_line,
)
from sqlalchemy import Engine, func, select

from computility.domain.money import from_micro
from computility.server import states
from computility.server.db import schema as db
from computility.server.db.engine import make_engine
from computility.testing.backends import slurm_ready
from computility.testing.controlplane import free_port, new_tenant, wait_until

pytestmark = pytest.mark.chaos

TASKS = int(os.environ.get("COMPUTILITY_CHAOS_TASKS", "1000"))
PG_TASKS = int(os.environ.get("COMPUTILITY_CHAOS_PG_TASKS", str(max(100, TASKS * 3 // 10))))
"""PostgreSQL runs the same faults on a smaller workload by default, so that both databases
together stay within a CI job's minutes on two cores."""
KILLS = int(os.environ.get("COMPUTILITY_CHAOS_KILLS", "3"))
PAUSES = max(1, KILLS // 10) if KILLS else 0
CUTS = max(1, KILLS // 10) if KILLS else 0
LEASE_TTL_S = 3.0
HEARTBEAT_S = 0.5
CPUS_PER_SITE = 6
BACKLOG = 60
"""Unfinished tasks the workload keeps at most: enough to keep every site busy, few enough that
the faults land while work is in flight from the first task to the last."""
SLURM_SHARE = 0.03
LOCAL_SITES = ("chaos-a", "chaos-b")
NETNS_SITE = "chaos-n"
SLURM_SITE = "chaos-slurm"
SLACK_S = 1.5
"""How long past its expiry a lease may still look active: the expiry runs each scheduling cycle
(0.2 s here), and a write may be waiting its turn."""


def seed_from_env() -> int:
    raw = os.environ.get("COMPUTILITY_CHAOS_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)


@pytest.fixture
def url_of_db(db_url: str | None, tmp_path: Path) -> Iterator[str]:
    """The database URL handed to `computility up --db` (SQLite: a file under tmp_path)."""
    yield db_url if db_url is not None else f"sqlite:///{tmp_path / 'chaos.db'}"


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """Run directories and witness files where the tasks' user (nobody, for local sites run by
    root) and Slurm's node (this host) can reach them."""
    base = Path(os.environ.get("COMPUTILITY_TEST_TASKS_ROOT", "/tmp/computility-test-tasks"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    root = base / f"chaos-{uuid.uuid4().hex[:10]}"
    (root / "witness").mkdir(parents=True)
    root.chmod(0o755)
    (root / "witness").chmod(0o1777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def expired_leases(engine: Engine, slack_s: float, site: str | None = None) -> list[Any]:
    """Active attempts whose lease ran out more than `slack_s` ago (none may exist)."""
    query = select(db.attempts.c.id, db.attempts.c.site_id, db.attempts.c.lease_expires_at).where(
        db.attempts.c.state.in_(states.ACTIVE),
        db.attempts.c.lease_expires_at < time.time() - slack_s)
    if site is not None:
        query = query.where(db.attempts.c.site_id == site)
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def unfinished(engine: Engine) -> int:
    with engine.connect() as conn:
        n: int = conn.execute(select(func.count()).select_from(db.tasks).where(
            db.tasks.c.state.not_in(states.TERMINAL))).scalar_one()
    return n


class Workload:
    """Task specs drawn from the seed: mostly local sites, a few pinned to the Slurm site."""

    def __init__(self, rng: random.Random, witness_dir: Path) -> None:
        self.rng, self.witness = rng, witness_line(witness_dir)

    def spec(self, n: int) -> dict[str, Any]:
        pause = self.rng.choice((0.1, 0.2, 0.3, 0.5, 0.8, 1.0))
        pinned = self.rng.random() < SLURM_SHARE
        placement = {"sites": [SLURM_SITE]} if pinned else {"exclude_sites": [SLURM_SITE]}
        return {"name": f"chaos-{n}", "run": f"echo {n}; sleep {pause}; {self.witness}",
                "resources": {"cpus": 1, "estimate": "2s"}, "timeout": "10m",
                "placement": placement}


def test_faults_of_every_kind_lose_no_task_and_bill_every_run_once(
    url_of_db: str, tmp_path: Path, shared_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    why = netns_refused() or slurm_ready()
    if why is not None:
        pytest.skip(why)
    seed = seed_from_env()
    tag = f"COMPUTILITY_CHAOS_SEED={seed}"
    total = TASKS if url_of_db.startswith("sqlite") else PG_TASKS
    with capsys.disabled():
        print(f"\nchaos: {tag} tasks={total} COMPUTILITY_CHAOS_KILLS={KILLS} "
              f"database={url_of_db.split(':')[0]}")
    started = time.monotonic()
    remove_stale_namespaces()
    ns = Namespace()
    env = service_env(tmp_path, COMPUTILITY_CYCLE_S="0.2",
                      COMPUTILITY_LEASE_TTL_S=str(LEASE_TTL_S),
                      COMPUTILITY_HEARTBEAT_S=str(HEARTBEAT_S),
                      COMPUTILITY_OFFLINE_AFTER_S=str(2 * LEASE_TTL_S),
                      COMPUTILITY_LEADER_STALE_S="3")
    port = free_port()
    service = Service(url_of_db, port, env, tmp_path / "service.log", host="0.0.0.0")
    agents: dict[str, Agent] = {}
    submitter: Submitter | None = None
    engine = make_engine(url_of_db)
    counts: Counter[str] = Counter()
    try:
        ns.create()
        service.start()
        admin = httpx.Client(base_url=service.url, timeout=30,
                             headers={"Authorization": f"Bearer {operator_key(env)}"})
        users = {t: new_tenant(admin, t, "user") for t in ("acme", "beta")}
        token = tmp_path / "provider.key"
        token.write_text(new_tenant(admin, "hosts", "provider"))
        token.chmod(0o600)
        tasks_root = shared_root / "runs"
        tasks_root.mkdir(mode=0o755)
        for site in (*LOCAL_SITES, NETNS_SITE, SLURM_SITE):
            slurm = site == SLURM_SITE
            config = site_config(tmp_path / f"{site}.yaml", site, "slurm" if slurm else "local",
                                 None if slurm else CPUS_PER_SITE)
            inside = site == NETNS_SITE
            server = f"http://{ns.host_ip}:{port}" if inside else service.url
            agents[site] = Agent(site, server, token, config, tmp_path / site, tasks_root, env,
                                 netns=ns.name if inside else None)
            agents[site].start()

        def online() -> bool:
            sites = admin.get("/api/v1/sites").json()
            return sorted(s["id"] for s in sites if s["online"]) == sorted(agents)

        wait_until(online, timeout=90, every=0.3)

        rng = random.Random(seed)
        events = schedule(rng, KILLS, PAUSES, CUTS, sorted(agents), NETNS_SITE, LEASE_TTL_S)
        workload = Workload(random.Random(seed + 1), shared_root / "witness")
        submitter = Submitter(service.url, users, total, random.Random(seed + 2), workload.spec,
                              lambda: unfinished(engine), BACKLOG)
        submitter.start()
        for event in events:
            wait_until(lambda e=event: len(submitter.accepted) >= e.at * total
                       or not submitter.is_alive(), timeout=900, every=0.1)
            inflict(event, service, agents, ns, engine, tag)
            counts[event.kind] += 1
        submitter.join(timeout=900)
        assert not submitter.is_alive(), f"the workload did not finish submitting ({tag})"
        assert not submitter.errors, f"{submitter.errors} ({tag})"
        accepted = submitter.accepted
        assert len(accepted) == total, (len(accepted), tag)

        # Settle: every task ends, every agent lets go of everything it held.
        def settled() -> bool:
            return unfinished(engine) == 0 and all(a.holds() == 0 for a in agents.values())

        try:
            wait_until(settled, timeout=300, every=0.5)
        except AssertionError:
            pytest.fail(f"not settled within 300 s: {unfinished(engine)} tasks unfinished, held "
                        f"{ {s: a.holds() for s, a in agents.items()} } ({tag})\n"
                        f"{service.tail()}")
        assert all(a.alive for a in agents.values()), [
            a.tail() for a in agents.values() if not a.alive]
        usage = {t: httpx.get(f"{service.url}/api/v1/usage", params={"since": 0},
                              headers={"Authorization": f"Bearer {k}"}, timeout=30).json()
                 for t, k in users.items()}
        summary = check_books(engine, accepted, usage, read_witnesses(shared_root / "witness"),
                              tag)
        assert "Traceback" not in service.tail(10_000_000), service.tail()
        for agent in agents.values():
            assert "Traceback" not in agent.tail(10_000_000), agent.tail()
        summary.update(
            tasks=len(accepted), service_kills=counts["service-kill"],
            agent_kills=counts["agent-kill"], pauses=counts["pause"], cuts=counts["cut"],
            resubmissions=submitter.resent, wall_s=round(time.monotonic() - started, 1))
        with capsys.disabled():
            print("chaos summary: " + ", ".join(f"{k}={v}" for k, v in summary.items())
                  + f" ({tag})")
    finally:
        if submitter is not None:
            submitter.stop.set()
        for agent in agents.values():
            agent.stop()
        service.stop()
        ns.destroy()
        engine.dispose()


def inflict(event: Event, service: Service, agents: dict[str, Agent], ns: Namespace,
            engine: Engine, tag: str) -> None:
    """Do one fault and undo it; while a paused or cut-off agent is away, check that its leases
    expire on time (no lease is held past its expiry by an agent that cannot renew it)."""
    if event.kind == "service-kill":
        service.kill()
        time.sleep(event.down_s)
        service.start()
    elif event.kind == "agent-kill":
        agent = agents[event.target]
        agent.kill()
        time.sleep(event.down_s)
        agent.start()
    elif event.kind in ("pause", "cut"):
        agent = agents[event.target]
        if event.kind == "pause":
            agent.send(signal.SIGSTOP)
        else:
            ns.cut()
        try:
            time.sleep(event.down_s)
            stuck = expired_leases(engine, SLACK_S, event.target)
            assert not stuck, (f"{event.kind} of {event.target}: leases held past expiry: "
                               f"{stuck} (now {time.time():.1f}; {tag})")
        finally:
            if event.kind == "pause":
                agent.send(signal.SIGCONT)
            else:
                ns.restore()
    else:
        raise AssertionError(f"unknown fault {event.kind}")


def check_books(engine: Engine, accepted: dict[int, str], usage: dict[str, Any],
                witnesses: dict[str, list[tuple[int, int]]], tag: str) -> dict[str, Any]:
    """Check the invariants of the module docstring; returns the figures for the summary."""
    with engine.connect() as conn:
        tasks = {t["id"]: t for t in conn.execute(select(db.tasks)).mappings()}
        attempts = {a["id"]: a for a in conn.execute(select(db.attempts)).mappings()}
        ledger = list(conn.execute(select(db.ledger)).mappings())

    # -- every accepted task, once, in one terminal state
    assert sorted(tasks) == sorted(accepted), f"the tasks table is not the accepted tasks ({tag})"
    by_task: dict[int, list[Any]] = defaultdict(list)
    for a in attempts.values():
        by_task[a["task_id"]].append(a)
    active = [a["id"] for a in attempts.values() if a["state"] not in states.ATTEMPT_TERMINAL]
    assert not active, f"attempts still active after everything settled: {active} ({tag})"
    lost_tasks = []
    for tid, t in tasks.items():
        succeeded = [a for a in by_task[tid] if a["state"] == states.SUCCEEDED]
        if t["state"] == states.SUCCEEDED:
            assert len(succeeded) == 1, (f"task {tid}: {len(succeeded)} succeeded attempts "
                                         f"({tag})")
        else:
            # Only the infrastructure may end a shell task that exits 0: past the free
            # re-placements it is lost, with every attempt it had ended by the infrastructure.
            assert t["state"] == states.LOST and not succeeded, (
                f"task {tid} ended {t['state']} ({t['reason']}) ({tag})")
            assert t["infra_failures"] > states.MAX_INFRA_FAILURES, (tid, t["reason"], tag)
            lost_tasks.append(tid)

    # -- the ledger: one entry per exited attempt, none for one the infrastructure ended
    billed = Counter(e["attempt_id"] for e in ledger)
    for aid, a in attempts.items():
        exited = a["state"] in (states.SUCCEEDED, states.FAILED, states.CANCELLED)
        assert billed[aid] == (1 if exited else 0), (
            f"attempt {aid} ({a['state']}) has {billed[aid]} ledger entries ({tag})")
    for e in ledger:
        assert e["task_id"] == attempts[e["attempt_id"]]["task_id"], (e["attempt_id"], tag)
        assert e["tenant_id"] == accepted[e["task_id"]], (e["attempt_id"], tag)

    # -- the witnesses: every run belongs to an attempt of its task on its site; every
    # succeeded attempt ran; a run of an attempt the infrastructure ended is a duplicate run
    ran: Counter[int] = Counter()
    for site, pairs in witnesses.items():
        for task, aid in pairs:
            a = attempts.get(aid)
            assert a is not None and a["task_id"] == task and a["site_id"] == site, (
                f"{site} witnessed task {task} attempt {aid}, which the service does not know "
                f"as such: {None if a is None else dict(a)} ({tag})")
            ran[aid] += 1
    assert max(ran.values(), default=1) == 1, f"an attempt ran twice: {ran.most_common(3)} ({tag})"
    for aid, a in attempts.items():
        if a["state"] == states.SUCCEEDED:
            assert ran[aid] == 1, f"attempt {aid} succeeded but no run of it is witnessed ({tag})"
    duplicates = [aid for aid in ran if attempts[aid]["state"] == states.LOST]
    for aid in duplicates:
        assert billed[aid] == 0, (aid, tag)

    # -- each tenant's bill is its ledger
    for tenant, u in usage.items():
        mine = [e for e in ledger if e["tenant_id"] == tenant]
        assert u["attempts"] == len(mine), (tenant, u, len(mine), tag)
        total = sum(e["total_micro"] for e in mine)
        assert u["total"] == pytest.approx(from_micro(total), abs=1e-6), (tenant, u, total, tag)
        assert u["cu_hours"] == pytest.approx(sum(e["cu_hours"] for e in mine), rel=1e-9)
    assert sum(u["attempts"] for u in usage.values()) == len(ledger), tag

    states_of_attempts = Counter(a["state"] for a in attempts.values())
    return {
        "attempts": len(attempts), "attempts_by_state": dict(sorted(states_of_attempts.items())),
        "duplicate_runs": len(duplicates),
        "refused_reports": sum(int(a["duplicates"] or 0) for a in attempts.values()),
        "lost_tasks": len(lost_tasks), "ledger_entries": len(ledger),
        "slurm_tasks": sum(1 for t in tasks.values() if t["site_id"] == SLURM_SITE),
    }
