"""Every table of the control plane, as SQLAlchemy Core tables.

Core rather than the ORM: the hot paths (batch submission, a scheduling cycle over 10^5 pending
tasks, lease claims) are set-based statements, and one explicit statement per step is easier to
prove correct under concurrency than an identity map. Timestamps are UNIX seconds as floats (UTC,
no time-zone arithmetic in SQL); money is integer micro-units; JSON columns hold what is only ever
read whole (a task's spec, a site's curves).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT on PostgreSQL, INTEGER on SQLite (whose INTEGER PRIMARY KEY is the 64-bit rowid).
Id = BigInteger().with_variant(Integer(), "sqlite")

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("concurrent_cu_quota", Float, nullable=True),
    Column("budget_micro", BigInteger, nullable=True),
    Column("budget_period", String(16), nullable=False, default="month"),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),  # user | provider | operator
    Column("created_at", Float, nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=True),
    Column("site_id", String(64), nullable=True),  # set for an agent token: it acts for one site
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("role", String(16), nullable=False),  # user | provider | operator | agent
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

sites = Table(
    "sites",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner_tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("region", String(64), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("backend", String(32), nullable=False),
    Column("pue", Float, nullable=False),
    Column("electricity_price_micro", BigInteger, nullable=False),
    Column("carbon_kg_per_kwh", Float, nullable=False),
    Column("electricity_curve", JSON, nullable=True),
    Column("carbon_curve", JSON, nullable=True),
    Column("allowed_tenants", JSON, nullable=True),  # null: every tenant
    # [{"id": ..., "size_gb": ...}] the site holds a full copy of (null: none); no paths.
    Column("datasets", JSON, nullable=True),
    Column("registered_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=True),
    Column("online", Boolean, nullable=False, default=False),
    Column("version", Integer, nullable=False, default=1),
)

pools = Table(
    "pools",
    metadata,
    Column("site_id", String(64), ForeignKey("sites.id"), primary_key=True),
    Column("pool_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("device", String(64), nullable=False),
    Column("count", Integer, nullable=False),
    Column("devices_per_node", Integer, nullable=False),
    Column("price_micro_per_cu_hour", BigInteger, nullable=False),
    # Free scheduling units (cores, or thousandths of a device) the agent last reported.
    Column("free_units", BigInteger, nullable=False, default=0),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("user_id", Id, nullable=True),
    Column("name", String(256), nullable=True),
    Column("spec", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("version", Integer, nullable=False, default=1),
    Column("submitted_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("policy", String(16), nullable=False),
    Column("cpus", Integer, nullable=False),
    Column("gpu_milli", Integer, nullable=False),
    Column("devices", JSON, nullable=True),  # catalogue ids allowed; null: any (or CPU)
    Column("run_s", Float, nullable=False),  # expected run time on ref_device
    Column("timeout_s", Float, nullable=False),
    Column("ref_device", String(64), nullable=True),
    Column("precision", String(8), nullable=False, default="fp32"),
    Column("location", String(64), nullable=True),  # the user's location id
    Column("rules", JSON, nullable=True),  # regions / sites / owners / exclusions / latency
    # The spec's first input: the dataset the scheduler places by, and whether it may move.
    Column("dataset", String(64), nullable=True),
    Column("data_local", Boolean, nullable=False, default=False),
    # The spec's deadline as UNIX seconds (a relative one counted from submission); null: none.
    Column("deadline_at", Float, nullable=True),
    # Held for a cheaper or greener hour until then; once set the task is never shifted again
    # (the simulator's rule: a task is held at most once). Null: never held for hours.
    Column("not_before", Float, nullable=True),
    Column("retries", Integer, nullable=False),
    Column("user_failures", Integer, nullable=False, default=0),
    Column("infra_failures", Integer, nullable=False, default=0),
    Column("max_price_micro", BigInteger, nullable=True),
    Column("quote_max_micro", BigInteger, nullable=True),
    Column("site_id", String(64), nullable=True),
    Column("pool_id", String(64), nullable=True),
    Column("units", BigInteger, nullable=True),  # scheduling units on its pool
    Column("cu", Float, nullable=True),  # CU it holds while it runs (for quotas)
    Column("exit_code", Integer, nullable=True),
    Column("signal", Integer, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("workdir", String(64), nullable=True),  # blob digest of the packed workdir
    Column("idempotency_key", String(256), nullable=True),
)
# Partial indexes: a placement (pending -> queued) must touch as few indexes as possible, since a
# scheduling cycle may move 10^5 tasks at once. Only rows a query looks for are indexed.
_keyed = tasks.c.idempotency_key.is_not(None)
Index("uq_tasks_tenant_idempotency", tasks.c.tenant_id, tasks.c.idempotency_key, unique=True,
      postgresql_where=_keyed, sqlite_where=_keyed)
_waiting = tasks.c.state.in_(("pending", "held"))
Index("ix_tasks_waiting", tasks.c.id, postgresql_where=_waiting, sqlite_where=_waiting)
_queued = tasks.c.state == "queued"
Index("ix_tasks_queued_site", tasks.c.site_id, tasks.c.id, postgresql_where=_queued,
      sqlite_where=_queued)
Index("ix_tasks_tenant_id", tasks.c.tenant_id, tasks.c.id)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", Id, ForeignKey("tasks.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("pool_id", String(64), nullable=False),
    Column("units", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("token", BigInteger, nullable=False),  # fencing token, unique and increasing
    Column("leased_at", Float, nullable=False),
    Column("lease_expires_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("signal", Integer, nullable=True),
    Column("run_s", Float, nullable=True),
    Column("gb_moved", Float, nullable=False, default=0.0),
    Column("reason", Text, nullable=True),
    Column("duplicates", Integer, nullable=False, default=0),
    # What the agent measured: wall/CPU/device seconds, peak memory, energy, staging; see
    # `computility.wire.api.AttemptUsage`.
    Column("usage", JSON, nullable=True),
    UniqueConstraint("task_id", "number", name="uq_attempts_task_number"),
)
Index("ix_attempts_state_expiry", attempts.c.state, attempts.c.lease_expires_at)
Index("ix_attempts_site_state", attempts.c.site_id, attempts.c.state)

ledger = Table(
    "ledger",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # One entry per billed attempt, enforced by the database, whatever the callers do.
    Column("attempt_id", Id, ForeignKey("attempts.id"), nullable=False, unique=True),
    Column("task_id", Id, nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("owner_tenant_id", String(64), nullable=False),
    Column("device", String(64), nullable=False),
    Column("precision", String(8), nullable=False),
    Column("run_s", Float, nullable=False),
    Column("cu_hours", Float, nullable=False),
    Column("device_hours", Float, nullable=False),
    Column("kwh", Float, nullable=False),
    Column("carbon_kg", Float, nullable=False),
    Column("gb_moved", Float, nullable=False),
    Column("compute_micro", BigInteger, nullable=False),
    Column("energy_micro", BigInteger, nullable=False),
    Column("network_micro", BigInteger, nullable=False),
    Column("total_micro", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_ledger_tenant_time", ledger.c.tenant_id, ledger.c.created_at)
Index("ix_ledger_site_time", ledger.c.site_id, ledger.c.created_at)
Index("ix_ledger_task", ledger.c.task_id)

uploads = Table(
    "uploads",
    metadata,
    # Who uploaded which blob: a task may name only its own tenant's uploads as its workdir.
    Column("tenant_id", String(64), ForeignKey("tenants.id"), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)

task_files = Table(
    "task_files",
    metadata,
    Column("task_id", Id, ForeignKey("tasks.id"), primary_key=True),
    Column("kind", String(16), primary_key=True),  # stdout | stderr | outputs
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("attempt_id", Id, nullable=False),
    Column("created_at", Float, nullable=False),
)

leadership = Table(
    "leadership",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("epoch", BigInteger, nullable=False),
    Column("holder", String(128), nullable=False),
    Column("backend_pid", Integer, nullable=True),
    Column("renewed_at", Float, nullable=False),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# --------------------------------------------------------------------------- dashboard

web_sessions = Table(
    "web_sessions",
    metadata,
    # SHA-256 of the cookie's secret: a copy of the table signs no one in.
    Column("id", String(64), primary_key=True),
    Column("key_id", String(32), ForeignKey("api_keys.id"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("lang", String(8), nullable=False, default="en"),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
Index("ix_web_sessions_key", web_sessions.c.key_id)

samples = Table(
    "samples",
    metadata,
    # One row per pool per sampling tick: supply and demand over time, what the dashboard's
    # charts draw (the live tables hold only the present).
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("site_id", String(64), nullable=False),
    Column("pool_id", String(64), nullable=False),
    Column("device", String(64), nullable=False),
    Column("capacity_cu", Float, nullable=False),
    Column("busy_cu", Float, nullable=False),
    Column("queued_cu", Float, nullable=False),
    Column("queued_tasks", Integer, nullable=False),
    Column("price_micro_per_cu_hour", BigInteger, nullable=False),
    Column("electricity_price_micro", BigInteger, nullable=False),
    Column("carbon_kg_per_kwh", Float, nullable=False),
    Column("online", Boolean, nullable=False),
)
Index("ix_samples_at", samples.c.at)
Index("ix_samples_site_at", samples.c.site_id, samples.c.at)

validation_runs = Table(
    "validation_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("created_by", String(32), nullable=False),  # the API key id that started it
    Column("created_at", Float, nullable=False),
    Column("state", String(16), nullable=False),  # queued | running | done | failed | cancelled
    Column("trace", String(256), nullable=False),
    Column("network", String(256), nullable=False),
    Column("policies", JSON, nullable=False),
    Column("options", JSON, nullable=False),
    Column("progress", Float, nullable=False, default=0.0),
    Column("message", Text, nullable=True),
    Column("result", JSON, nullable=True),
    Column("replica", String(128), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
)
Index("ix_validation_runs_created", validation_runs.c.created_at)

# --------------------------------------------------------------------------- audit

audit_events = Table(
    "audit_events",
    metadata,
    # Who did what to what: written in the transaction of the action itself, so an action and
    # its record commit (or roll back) together. Never a secret: `detail` holds ids and figures.
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("key_id", String(32), nullable=True),  # the actor's key (null: the service itself)
    Column("actor_tenant", String(64), nullable=True),
    Column("role", String(16), nullable=True),
    Column("tenant", String(64), nullable=True),  # the tenant the action concerns
    Column("action", String(32), nullable=False),
    Column("target", String(128), nullable=False),
    Column("detail", JSON, nullable=True),
)
Index("ix_audit_events_tenant", audit_events.c.tenant, audit_events.c.id)
Index("ix_audit_events_at", audit_events.c.at)
