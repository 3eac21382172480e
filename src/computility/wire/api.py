"""The REST API's bodies (``/api/v1``): what the server, the agent and the SDK exchange.

Requests forbid unknown fields, so a misspelt field is a 422 naming it rather than a silent
default. Money is shown as a decimal number of the network's currency (``12.345678``), computed
from integer micro-units; times are UNIX seconds (UTC).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TASK_STATES = (
    "pending", "held", "queued", "leased", "running",
    "succeeded", "failed", "cancelled", "lost",
)
TERMINAL_TASK_STATES = ("succeeded", "failed", "cancelled", "lost")
ATTEMPT_STATES = ("leased", "running", "succeeded", "failed", "cancelled", "lost")
BACKENDS = ("local", "slurm", "ray", "kubernetes", "fake")
ROLES = ("user", "provider", "operator")

SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_ID = 2**63 - 1
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A non-negative finite number (free devices, seconds, GB)."""



class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- tasks -------------------------------------------------------------------------------------


class TaskOut(Reply):
    id: int
    name: str | None
    tenant: str
    state: str
    reason: str | None = None
    policy: str
    site: str | None = None
    pool: str | None = None
    submitted_at: float
    updated_at: float
    finished_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    attempts: int = 0
    retries: int
    user_failures: int = 0
    infra_failures: int = 0
    quote_max: float | None = None
    cost: float = 0.0
    currency: str = "CNY"
    energy_kwh: float = 0.0
    """Energy its attempts were billed for (kWh, PUE included)."""
    carbon_kg: float = 0.0
    """Carbon its attempts were billed for (kg CO2e)."""
    spec: dict[str, Any] | None = None


class TaskList(Reply):
    tasks: list[TaskOut]
    next_cursor: int | None = None


class SubmitMany(Request):
    tasks: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class Submitted(Reply):
    tasks: list[TaskOut]


class Candidate(Reply):
    site: str
    pool: str
    device: str
    region: str
    run_s: float
    price: float
    max_price: float
    carbon_kg: float
    energy_kwh: float
    free_now: bool
    score: float | None = None
    chosen: bool = False
    # The task's `residency: any` dataset, moved from the nearest copy to run here (the cost
    # model's transfer; 0 where the site's region holds a copy). `price` includes its egress.
    transfer_s: float = 0.0
    moved_gb: float = 0.0
    # A task with a deadline under `cheapest` / `greenest`: how long it would be held here for a
    # cheaper or greener hour first (0: it starts now). `price` and `carbon_kg` are then those of
    # the run starting after the hold.
    hold_s: float = 0.0


class Quote(Reply):
    currency: str
    run_s: float
    timeout_s: float
    candidates: list[Candidate]
    max_price: float | None = None
    reason: str | None = None


class Explanation(Reply):
    task: int
    state: str
    reason: str | None
    site: str | None
    pool: str | None
    policy: str
    candidates: list[Candidate]


class AttemptOut(Reply):
    id: int
    task: int
    number: int
    site: str
    pool: str
    state: str
    leased_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    run_s: float | None
    reason: str | None
    usage: dict[str, Any] | None = None


# --- sites and agents --------------------------------------------------------------------------


class PoolIn(Request):
    id: str = Field(pattern=SLUG)
    device: str = Field(min_length=1, max_length=64)
    count: int = Field(ge=1, le=10_000_000)
    devices_per_node: int = Field(default=1, ge=1)
    price_per_cu_hour: float = Field(ge=0, le=1e6, allow_inf_nan=False)


class DatasetIn(Request):
    """A dataset a site holds a full copy of. Where it lies on disk stays with the agent: the
    service needs only the name (what task specs' ``inputs:`` refer to) and the size (what
    moving it elsewhere costs)."""

    id: str = Field(pattern=SLUG)
    size_gb: float = Field(gt=0, le=1e9, allow_inf_nan=False)


class SiteIn(Request):
    id: str = Field(pattern=SLUG)
    region: str = Field(min_length=1, max_length=64)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    backend: Literal["local", "slurm", "ray", "kubernetes", "fake"] = "local"
    pue: float = Field(default=1.3, ge=1.0, le=5.0)
    electricity_price_per_kwh: float | None = Field(default=None, ge=0, le=1e3)
    carbon_kg_per_kwh: float | None = Field(default=None, ge=0, le=5)
    pools: list[PoolIn] = Field(min_length=1, max_length=256)
    tenants: list[str] | None = None
    datasets: list[DatasetIn] = Field(default_factory=list, max_length=10_000)


class PoolOut(Reply):
    id: str
    device: str
    count: int
    devices_per_node: int
    price_per_cu_hour: float
    free: float


class DatasetOut(Reply):
    id: str
    size_gb: float


class SiteOut(Reply):
    id: str
    owner: str
    region: str
    backend: str
    online: bool
    last_seen_at: float | None
    pools: list[PoolOut]
    tenants: list[str] | None = None
    datasets: list[DatasetOut] = Field(default_factory=list)


class SiteRegistered(Reply):
    site: SiteOut
    agent_key: str


class RunningAttempt(Request):
    attempt: int = Field(ge=1, le=MAX_ID)
    token: int = Field(ge=0, le=MAX_ID)
    run_s: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)


class Heartbeat(Request):
    free: dict[str, Amount] = Field(default_factory=dict)
    running: list[RunningAttempt] = Field(default_factory=list)
    # The agent is shutting down: the site goes offline now (its queued tasks are placed
    # elsewhere) instead of after `offline_after_s` of silence.
    leaving: bool = False


class HeartbeatReply(Reply):
    cancel: list[int]
    unknown: list[int]
    lease_ttl_s: float
    heartbeat_s: float


class LeaseRequest(Request):
    free: dict[str, Amount]
    wait_s: float = Field(default=30.0, ge=0, le=30)
    max_tasks: int = Field(default=64, ge=1, le=1024)
    # Attempts the agent is already stopping: not repeated in `Leases.cancel`.
    stopping: list[int] = Field(default_factory=list, max_length=100_000)


class Lease(Reply):
    attempt: int
    token: int
    task: int
    number: int
    pool: str
    units: int
    expires_at: float
    spec: dict[str, Any]


class Leases(Reply):
    leases: list[Lease]
    ttl_s: float
    # Attempts of this site to stop now (their users cancelled them): a poll answers as soon as
    # there is one, so a cancel reaches the agent in milliseconds, not at its next heartbeat.
    cancel: list[int] = Field(default_factory=list)


class AttemptUsage(Request):
    """What the site measured of one attempt; a field is absent where its backend cannot tell."""

    wall_s: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    cpu_s: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    max_rss_bytes: int | None = Field(default=None, ge=0, le=2**62)
    device_s: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    energy_j: float | None = Field(default=None, ge=0, le=1e15, allow_inf_nan=False)
    staged_bytes: int | None = Field(default=None, ge=0, le=2**62)
    stage_s: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    timed_out: bool = False
    out_of_memory: bool = False


class AttemptReport(Request):
    """An agent's word on one attempt. ``failed_to_start``: it never ran; ``interrupted``: the
    site stopped it (its agent shut down). Both are the infrastructure's doing: the task is
    re-placed at no charge."""

    token: int = Field(ge=0, le=MAX_ID)
    state: Literal["running", "exited", "failed_to_start", "interrupted"]
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    signal: int | None = Field(default=None, ge=1, le=64)
    run_s: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    gb_moved: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)
    reason: str | None = Field(default=None, max_length=2000)
    usage: AttemptUsage | None = None


class ReportReply(Reply):
    attempt: int
    state: str
    billed: bool = False
    cancel: bool = False


# --- tenants, keys, usage ----------------------------------------------------------------------


class TenantIn(Request):
    id: str = Field(pattern=SLUG)
    concurrent_cu_quota: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    budget: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)


class TenantOut(Reply):
    id: str
    concurrent_cu_quota: float | None
    budget: float | None
    budget_period: str


class KeyIn(Request):
    user: str = Field(pattern=SLUG)
    role: Literal["user", "provider", "operator"] = "user"


class KeyOut(Reply):
    id: str
    tenant: str
    user: str | None
    role: str
    key: str | None = None


MAX_GRACE_S = 7 * 24 * 3600
"""The longest a rotated key keeps working beside its successor."""


class KeyInfo(Reply):
    """A key as listed: never its secret (which is shown once, when it is made) nor a hash.

    `revoked_at` is when the key stops (or stopped) working: in the future while a rotation's
    grace period runs, null for a live key."""

    id: str
    tenant: str
    user: str | None
    role: str
    site: str | None = None
    created_at: float
    revoked_at: float | None = None


class KeyList(Reply):
    keys: list[KeyInfo]
    truncated: bool = False


class KeyRotate(Request):
    grace_s: Annotated[float, Field(ge=0, le=MAX_GRACE_S, allow_inf_nan=False)] = 0.0


class KeyRotated(Reply):
    """The new key (its secret shown this once) and the key it replaces."""

    id: str
    tenant: str
    user: str | None
    role: str
    site: str | None = None
    key: str
    replaces: KeyInfo


class AuditEvent(Reply):
    id: int
    at: float
    key: str | None
    """The actor's key id (null: the service itself)."""
    actor_tenant: str | None
    role: str | None
    tenant: str | None
    """The tenant the action concerns."""
    action: str
    target: str
    detail: dict[str, Any] | None = None


class AuditList(Reply):
    events: list[AuditEvent]
    next_cursor: int | None = None
    """Pass as ``before`` for the next (older) page; null on the last page."""


class Usage(Reply):
    tenant: str
    since: float
    until: float
    attempts: int
    cu_hours: float
    device_hours: float
    kwh: float
    carbon_kg: float
    gb_moved: float
    compute: float
    energy: float
    network: float
    total: float
    currency: str
    budget: float | None = None
    budget_left: float | None = None


class SiteEarnings(Reply):
    site: str
    since: float
    until: float
    attempts: int
    cu_hours: float
    total: float
    currency: str


class Earnings(Reply):
    owner: str
    sites: list[SiteEarnings]


class Problem(Reply):
    """RFC 9457 problem details; `errors` names each bad field."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] = Field(default_factory=list)
