"""The control plane's shared state: the database, the settings, and the live network cache.

One `ControlPlane` per process. The live network (registered sites as a core `Network`) is
rebuilt only when the set of sites or their online state changes, so quotes, bills and the
scheduling loop all price with one consistent model.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.sql import Select
from starlette.concurrency import run_in_threadpool

from computility.domain.network import Network
from computility.network import load_network
from computility.server.db import schema as db
from computility.server.db.engine import is_sqlite, writer
from computility.server.db.loop_reads import LoopReads
from computility.server.live import LiveNetwork, PoolRow, SiteRow
from computility.server.observability.metrics import ServerMetrics
from computility.server.settings import Settings, default_replica


class ControlPlane:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.reads = engine if is_sqlite(engine) else \
            engine.execution_options(isolation_level="AUTOCOMMIT")
        """For reads of one statement (a task's status, a key): on PostgreSQL without a
        transaction around it, one round trip instead of three (BEGIN, the read, ROLLBACK)."""
        self._writer = writer(engine)
        self._write_gate = threading.RLock() if is_sqlite(engine) else None
        """SQLite has one writer at a time: this process's writers queue here, in order and
        without a connection, instead of in SQLite's busy handler (which polls with sleeps of up
        to 100 ms, and meanwhile holds a pooled connection that readers need)."""
        self.settings = settings
        self.base: Network = load_network(settings.network)
        self.replica = settings.replica or default_replica()
        self.loop_reads = None if is_sqlite(engine) else LoopReads(engine, self.replica[:63])
        """On PostgreSQL, the pool `one` reads through on the service's event loop (opened and
        closed by the app's lifespan)."""
        self._live: LiveNetwork | None = None
        self._live_key: Any = None
        self._fresh: tuple[LiveNetwork, float] | None = None
        self._sites_generation = 0
        self._lock = threading.Lock()
        self.wake_scheduler = threading.Event()
        self.on_placed: list[Callable[[], None]] = []
        self.duplicates = 0
        self.metrics = ServerMetrics()
        """What the server's code paths count (`computility.server.observability.metrics`);
        this plane's own registry, never shared with another plane in the process."""
        self.last_housekeeping = 0.0
        self.started_at = time.time()

    def now(self) -> float:
        """The scheduling clock (`Settings.clock`): what time it is for curves, deadlines and
        holds. Protocol timers use the wall clock instead."""
        return self.settings.clock()

    async def one(self, statement: Select[Any], params: dict[str, Any]) -> dict[str, Any] | None:
        """The first row of a read of one statement (None: no row), for a request.

        On SQLite a read is this process's own work, done in less time than a hop to a worker
        thread and back, so it runs on the event loop. On PostgreSQL it waits on the network:
        awaited on the event loop through `loop_reads` where that is open, else in a worker
        thread; never blocking the loop on the database."""
        if self.loop_reads is not None and self.loop_reads.serves():
            return await self.loop_reads.one(statement, params)
        if self._write_gate is not None:
            return self.one_now(statement, params)
        return await run_in_threadpool(self.one_now, statement, params)

    def one_now(self, statement: Select[Any], params: dict[str, Any]) -> dict[str, Any] | None:
        """`one` for code already off the event loop (a handler in a worker thread)."""
        with self.reads.connect() as conn:
            row = conn.execute(statement, params).mappings().first()
        return None if row is None else dict(row)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``with plane.write() as conn:``)."""
        if self._write_gate is None:
            with self._writer.begin() as conn:
                yield conn
            return
        with self._write_gate, self._writer.begin() as conn:
            yield conn

    @property
    def currency(self) -> str:
        return self.base.currency

    def live(self, max_age_s: float = 0.0, conn: Connection | None = None) -> LiveNetwork:
        """The registered sites as a network (cached until a site or its online state changes).

        With `max_age_s`, a view checked against the database at most that long ago is reused
        without checking again. Inside a write transaction, pass its `conn`: a second connection
        taken from the pool while the transaction holds one (and, on SQLite, the write lock)
        waits on requests that themselves wait on this transaction, once enough of them hold the
        pool's connections; everything then stalls until the pool's 30 s timeout.
        """
        fresh = self._fresh  # (view, checked at): one read, never a torn pair
        if max_age_s > 0 and fresh is not None and time.monotonic() - fresh[1] < max_age_s:
            return fresh[0]
        generation = self._sites_generation
        checked = time.monotonic()
        with contextlib.ExitStack() as stack:
            reader = conn if conn is not None else stack.enter_context(self.engine.connect())
            key = tuple(reader.execute(
                select(db.sites.c.id, db.sites.c.version, db.sites.c.online).order_by(db.sites.c.id)
            ).all())
            with self._lock:
                if self._live is None or key != self._live_key:
                    self._live, self._live_key = self._build(key, reader), key
                live = self._live
                # Vouch for the view only once it is in place, and only if no change was
                # signalled while we read (a registration committed meanwhile is not in this key).
                if generation == self._sites_generation:
                    self._fresh = (live, checked)
                return live

    def sites_changed(self) -> None:
        """A site was registered or came back: the next `live` checks the database."""
        self._sites_generation += 1
        self._fresh = None

    def _build(self, key: Any, conn: Connection) -> LiveNetwork:
        site_rows = conn.execute(select(db.sites).order_by(db.sites.c.id)).mappings().all()
        pool_rows = conn.execute(
            select(db.pools).order_by(db.pools.c.site_id, db.pools.c.position)
        ).mappings().all()
        sites = [
            SiteRow(
                id=r["id"], owner=r["owner_tenant_id"], region=r["region"], lat=r["lat"],
                lon=r["lon"], pue=r["pue"], electricity_price_micro=r["electricity_price_micro"],
                carbon_kg_per_kwh=r["carbon_kg_per_kwh"],
                electricity_curve=tuple(r["electricity_curve"]) if r["electricity_curve"] else None,
                carbon_curve=tuple(r["carbon_curve"]) if r["carbon_curve"] else None,
                allowed_tenants=(
                    frozenset(r["allowed_tenants"]) if r["allowed_tenants"] is not None else None
                ),
                online=bool(r["online"]),
                datasets=tuple((d["id"], float(d["size_gb"])) for d in r["datasets"] or ()),
            )
            for r in site_rows
        ]
        pools = [
            PoolRow(site=r["site_id"], pool=r["pool_id"], device=r["device"], count=r["count"],
                    devices_per_node=r["devices_per_node"],
                    price_micro=r["price_micro_per_cu_hour"], free_units=r["free_units"])
            for r in pool_rows
        ]
        return LiveNetwork(self.base, sites, pools)

    def placed(self) -> None:
        """Tell long-polling agents that new work may be queued for them."""
        for callback in list(self.on_placed):
            callback()
