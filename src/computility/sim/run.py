"""One simulation request, start to finish: read, build the network, replay each pair, report.

The CLI is a thin shell around `simulate`; tests and benchmarks call it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from computility.domain.cost import CostModel
from computility.domain.devices import Catalogue, default_catalogue
from computility.domain.errors import UsageError
from computility.domain.network import Network
from computility.domain.speed import SpeedModel
from computility.domain.throughput import default_throughput_table
from computility.domain.workload import Workload
from computility.network import load_network
from computility.scheduler.core import PoolSlots, Scheduler
from computility.scheduler.placement import PLACEMENT_MODES, Placement
from computility.scheduler.policies import DEFAULT_POLICY, PLACEMENT_POLICIES
from computility.scheduler.queues import QUEUE_DISCIPLINES
from computility.sim.engine import ProgressFn, Schedule, replay
from computility.sim.metrics import summarize
from computility.sim.single import parse_gpu_args, single_network, single_site
from computility.sim.synthetic import synthetic_workload
from computility.sim.traces import read_trace

DEFAULT_START = "2024-01-01T00:00:00+08:00"


@dataclass(frozen=True, slots=True)
class SimRequest:
    """Everything `computility sim` was asked, validated by `checked()`.

    Exactly one of `trace` (a path or ``builtin:NAME``) and `synthetic` (a task count for
    `computility.sim.synthetic.synthetic_workload`, drawn with `seed`) names the workload;
    `fmt`, `limit` and `arrivals` apply to a trace only. `network` empty means the usual one
    for the workload: ``single`` (the machine it was recorded on) for a trace, ``default`` (the
    embedded national network) for a synthetic workload.
    """

    trace: str = ""
    fmt: str = "auto"
    limit: int | None = None
    network: str = ""
    cpus: int | None = None
    gpus: tuple[str, ...] = ()
    policies: tuple[str, ...] = (DEFAULT_POLICY,)
    queues: tuple[str, ...] = ("easy",)
    seed: int = 0
    start: str = DEFAULT_START
    arrivals: str | None = None
    synthetic: int | None = None
    explain: int | None = None
    placement: str = "auto"

    @property
    def network_spec(self) -> str:
        """The ``--network`` value in force (see the class docstring for the default)."""
        if self.network:
            return self.network
        return "single" if self.synthetic is None else "default"

    @property
    def label(self) -> str:
        """What the report's ``trace`` field says: the trace as given, or ``synthetic:N``."""
        return self.trace if self.synthetic is None else f"synthetic:{self.synthetic}"

    def checked(self) -> SimRequest:
        """Raise UsageError for any argument that is wrong on its face, before reading input."""
        if (self.synthetic is None) == (not self.trace):
            raise UsageError("sim: give exactly one of --trace PATH or --synthetic N")
        if self.synthetic is not None and self.synthetic <= 0:
            raise UsageError(f"--synthetic: expected a positive integer, got {self.synthetic}")
        for p in self.policies:
            if p not in PLACEMENT_POLICIES:
                raise UsageError(
                    f"--policy: unknown policy '{p}' (choose from {' '.join(PLACEMENT_POLICIES)})"
                )
        for q in self.queues:
            if q not in QUEUE_DISCIPLINES:
                raise UsageError(
                    f"--queue: unknown queue '{q}' (choose from {' '.join(QUEUE_DISCIPLINES)})"
                )
        if self.placement not in PLACEMENT_MODES:
            raise UsageError(
                f"--placement: expected one of {', '.join(PLACEMENT_MODES)}, "
                f"got '{self.placement}'"
            )
        if not self.policies or not self.queues:
            raise UsageError("--policy and --queue need at least one name each")
        if self.limit is not None and self.limit <= 0:
            raise UsageError(f"--limit: expected a positive integer, got {self.limit}")
        parse_start(self.start)
        parse_gpu_args(self.gpus)
        if self.network_spec != "single" and (self.cpus is not None or self.gpus):
            raise UsageError(
                f"--cpus and --gpus size the single site; --network {self.network_spec} "
                "has its own pools"
            )
        if self.network_spec == "single" and self.synthetic is not None and self.cpus is None:
            raise UsageError(
                "--synthetic with --network single needs the machine size: give --cpus N"
            )
        return self


def parse_start(value: str) -> datetime:
    """The wall-clock time of simulated time 0; a time without a zone is refused."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--start: expected an ISO-8601 time such as {DEFAULT_START}, got '{value}'"
        ) from None
    if when.tzinfo is None:
        raise UsageError(f"--start: expected a time with a UTC offset, got '{value}'")
    return when


@dataclass(frozen=True, slots=True)
class RunResult:
    """One (policy, queue) replay: its schedule and its summary."""

    policy: str
    queue: str
    schedule: Schedule
    summary: dict[str, object]


@dataclass(frozen=True, slots=True)
class SimOutcome:
    """A whole simulation: the workload, the network it ran on, and every pair's result."""

    workload: Workload
    net: Network
    network: str
    trace: str
    start: datetime
    runs: list[RunResult] = field(default_factory=list)

    def report(self) -> dict[str, object]:
        """The contract's JSON report."""
        return {
            "trace": self.trace,
            "network": self.network,
            "jobs": len(self.workload),
            "skipped": self.workload.skipped,
            "censored": self.workload.censored,
            "results": [r.summary for r in self.runs],
        }


ProgressFactory = Callable[[str, int], ProgressFn | None]


BUILTIN_PREFIX = "builtin:"


def trace_path(name: str) -> str:
    """A path as given, or ``builtin:NAME`` for a trace shipped inside the package."""
    if not name.startswith(BUILTIN_PREFIX):
        return name
    from importlib.resources import files

    stem = name[len(BUILTIN_PREFIX) :]
    folder = files("computility") / "data" / "traces"
    shipped = sorted(p.name.split(".")[0] for p in folder.iterdir() if p.name.endswith(".gz"))
    if stem not in shipped:
        raise UsageError(f"--trace {name}: no such built-in trace (have: {', '.join(shipped)})")
    return str(folder / f"{stem}.swf.gz")


def load_workload(req: SimRequest, catalogue: Catalogue) -> Workload:
    def resolve(name: str) -> tuple[str, ...]:
        return tuple(d.id for d in catalogue.match(name))

    return read_trace(
        trace_path(req.trace),
        req.fmt,
        limit=req.limit,
        arrivals=req.arrivals,
        seed=req.seed,
        resolve_gpu=resolve,
    )


def simulate(
    req: SimRequest,
    catalogue: Catalogue | None = None,
    progress: ProgressFactory | None = None,
) -> SimOutcome:
    """Run every (policy, queue) pair of `req`, policies outer and queues inner."""
    req = req.checked()
    catalogue = catalogue or default_catalogue()
    start = parse_start(req.start)
    spec = req.network_spec
    if spec == "single":
        if req.synthetic is None:
            workload = load_workload(req, catalogue)
            site = single_site(workload, catalogue, req.cpus, parse_gpu_args(req.gpus))
            network = single_network(site)
        else:
            empty = Workload.from_columns(req.label, ids=[], submit=[], run=[])
            site = single_site(empty, catalogue, req.cpus, parse_gpu_args(req.gpus))
            drawn = synthetic_workload(req.synthetic, single_network(site), req.seed)
            workload, network = drawn.workload, drawn.network_with_datasets(single_network(site))
    else:
        network = load_network(spec, req.seed, catalogue)
        if req.synthetic is None:
            workload = load_workload(req, catalogue)
        else:
            drawn = synthetic_workload(req.synthetic, network, req.seed)
            workload, network = drawn.workload, drawn.network_with_datasets(network)
    outcome = SimOutcome(
        workload=workload, net=network, network=spec, trace=req.label, start=start
    )
    for policy in req.policies:
        for queue in req.queues:
            label = f"{policy}/{queue}"
            scheduler = network_scheduler(
                workload, network, policy, queue, start, req.seed, req.placement
            )
            if req.explain is not None:
                scheduler.watch = task_index(workload, req.explain)
            schedule = replay(
                workload, scheduler, queue, progress(label, len(workload)) if progress else None
            )
            summary = summarize(workload, schedule, network, policy, queue, start)
            if req.explain is not None:
                summary["explain"] = [e.as_dict() for e in scheduler.explanations]
            outcome.runs.append(RunResult(policy, queue, schedule, summary))
    return outcome


def task_index(workload: Workload, task_id: int) -> int:
    """Row of the task whose trace id is `task_id` (UsageError if there is none)."""
    rows = np.flatnonzero(workload.ids == task_id)
    if rows.shape[0] == 0:
        raise UsageError(f"--explain: no task with id {task_id} in {workload.name}")
    return int(rows[0])


def network_scheduler(
    workload: Workload,
    network: Network,
    policy: str,
    queue: str,
    start: datetime,
    seed: int = 0,
    mode: str = "auto",
) -> Scheduler:
    """The live scheduler for `workload` on `network`: placement under `policy`, `queue` pools."""
    devices = [p.device for _, p in network.pools]
    catalogue = default_catalogue()
    device_of = {d.id: d for d in catalogue}
    device_of.update({d.id: d for d in devices})
    speed = SpeedModel(workload, devices, device_of, default_throughput_table())
    placement = Placement(
        network, workload, policy, CostModel(network, start), speed, seed=seed, mode=mode
    )
    return Scheduler(pool_slots(network), queue, workload, placement)


def pool_slots(network: Network) -> Sequence[PoolSlots]:
    """The scheduler's view of every pool of a network, in pool order."""
    return [
        PoolSlots(p.device.id, "cpu" if p.is_cpu else "gpu", p.units, p.cu_per_unit)
        for _, p in network.pools
    ]
