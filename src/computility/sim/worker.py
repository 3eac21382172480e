"""The simulator as a child process that speaks JSON lines: how the control plane's validation
page compares policies without simulating inside the service.

Why a separate process: a replay of 100,000 tasks under several policies takes minutes of CPU;
in the service's own process it would hold the interpreter's lock against every request, could
not be stopped part way, and would die with a restart half-written. A child process runs beside
the service, is killed outright when its run is cancelled, and (being in this package) keeps the
service free of simulator imports, as the layering requires.

Protocol: one JSON object on stdin, then one JSON object per line on stdout:

- ``{"command": "run", "trace": "builtin:lublin_256" | PATH | "", "synthetic": N | null,
  "fmt": "auto", "limit": N | null, "network": "default", "policies": [...], "queue": "easy",
  "seed": 0}`` answers ``{"event": "progress", "progress": 0.42, "message": "policy 1/2:
  cheapest"}`` lines as it goes, then ``{"event": "result", "result": {...}}`` (see `comparison`).
- ``{"command": "check", "trace": PATH, "fmt": "auto", "limit": N | null}`` reads the trace as a
  run would and answers ``{"event": "checked", "jobs": N, "skipped": K}``.

Either answers ``{"event": "error", "message": ..., "line": N | null, "field": ...,
"expected": ..., "got": ...}`` for input the user can fix (the simulator's own one-line message;
the location fields only for a bad value in a file) and exits 2. An unexpected failure prints its
traceback on stderr, for the service's log, and exits 1 with a message that shows no internals.

The worker lowers its own priority, so the service stays responsive beside it, and exits once
its parent is gone (its stdout then has no reader, or it has been re-parented), so a crashed
service leaves no simulation running.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from computility.domain.devices import default_catalogue
from computility.domain.errors import BadInput, FieldError
from computility.sim.engine import ProgressFn
from computility.sim.metrics import meter
from computility.sim.run import RunResult, SimOutcome, SimRequest, load_workload, simulate

SERIES_BINS = 200
"""Points of each time series: enough for a chart's width, small enough to keep in a row."""
WAIT_PERCENTILES = tuple(range(0, 101, 5))
PROGRESS_EVERY_S = 0.5
"""At most this often a progress line is written (a new policy is always reported at once)."""
DROPPED_KEYS = ("tenants",)
"""Per-tenant figures are left out of a comparison: a trace may name thousands of tenants."""

UNEXPECTED = "the simulation failed unexpectedly; the service log has the details"
"""A failure that is not the input's fault; the service knows this text and translates it."""

Emit = Callable[[dict[str, Any]], None]


def _emitter(parent: int) -> Emit:
    def emit(message: dict[str, Any]) -> None:
        if os.getppid() != parent:
            os._exit(3)  # the service is gone: nobody will read the result
        try:
            sys.stdout.write(json.dumps(message, allow_nan=False) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            os._exit(3)

    return emit


def request_of(spec: dict[str, Any]) -> SimRequest:
    """The `SimRequest` that `computility sim` would build from the same choices."""
    synthetic = spec.get("synthetic")
    return SimRequest(
        trace=str(spec.get("trace") or ""),
        synthetic=int(synthetic) if synthetic is not None else None,
        fmt=str(spec.get("fmt") or "auto"),
        limit=spec.get("limit"),
        network=str(spec.get("network") or ""),
        policies=tuple(spec.get("policies") or ()),
        queues=(str(spec.get("queue") or "easy"),),
        seed=int(spec.get("seed") or 0),
    )


def run(spec: dict[str, Any], emit: Emit) -> None:
    """Simulate every chosen policy with the simulator's own entry point, reporting progress."""
    req = request_of(spec)
    n = len(req.policies)
    state = {"k": 0, "last": 0.0}

    def report(value: float, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - state["last"] >= PROGRESS_EVERY_S:
            state["last"] = now
            emit({"event": "progress", "progress": round(min(value, 0.99), 4),
                  "message": message})

    def factory(label: str, total: int) -> ProgressFn:
        state["k"] += 1
        k = state["k"]
        policy = label.split("/")[0]
        message = f"policy {k}/{n}: {policy}"
        report((k - 1) / n, message, force=True)

        def update(done: int) -> None:
            report((k - 1 + done / max(total, 1)) / n, message)

        return update

    report(0.0, "", force=True)
    outcome = simulate(req, progress=factory)
    emit({"event": "result", "result": comparison(outcome)})


def check(spec: dict[str, Any], emit: Emit) -> None:
    """Read a trace exactly as a run would (format, limit, device names), keeping nothing."""
    req = SimRequest(trace=str(spec["trace"]), fmt=str(spec.get("fmt") or "auto"),
                     limit=spec.get("limit")).checked()
    workload = load_workload(req, default_catalogue())
    emit({"event": "checked", "jobs": len(workload), "skipped": int(workload.skipped)})


def comparison(outcome: SimOutcome, bins: int = SERIES_BINS) -> dict[str, Any]:
    """What the validation page shows: the report's figures per policy, and series to plot.

    ``results`` are the report's entries as `computility sim --json` writes them (less
    per-tenant figures); ``series`` holds, on one time grid for every policy (UNIX seconds of
    the simulated period), the busy share of the network's compute units and the number of
    tasks waiting, and each policy's wait at the percentiles ``wait_percentiles``.
    """
    report = outcome.report()
    results = [{k: v for k, v in r.summary.items() if k not in DROPPED_KEYS}
               for r in outcome.runs]
    return {
        "worker_pid": os.getpid(),
        "trace": report["trace"],
        "network": report["network"],
        "jobs": report["jobs"],
        "skipped": report["skipped"],
        "censored": report["censored"],
        "start": outcome.start.timestamp(),
        "results": results,
        "series": time_series(outcome, bins),
        "wait_percentiles": {
            "x": list(WAIT_PERCENTILES),
            "values": [_finite(_wait_percentiles(outcome, r)) for r in outcome.runs],
        },
    }


def _wait_percentiles(outcome: SimOutcome, run: RunResult) -> NDArray[np.float64]:
    done = ~run.schedule.rejected
    wait = (run.schedule.start - outcome.workload.submit)[done]
    if wait.shape[0] == 0:
        return np.full(len(WAIT_PERCENTILES), np.nan)
    return np.percentile(wait, WAIT_PERCENTILES)


def time_series(outcome: SimOutcome, bins: int) -> dict[str, Any]:
    """Utilisation and queue length of every policy on one grid from first submit to last end.

    Utilisation of a bin is the busy CU-seconds in it over the network's CU times its width
    (as `computility.sim.metrics.utilization_series`, on a grid shared by the policies so they
    plot on one axis). Waiting counts tasks submitted and not yet started at the bin's centre;
    a rejected task is never counted as waiting.
    """
    w = outcome.workload
    ends = [float(np.nanmax(r.schedule.end)) for r in outcome.runs if (~r.schedule.rejected).any()]
    if len(w) == 0 or not ends:
        return {"x": [], "utilization": [[] for _ in outcome.runs],
                "waiting": [[] for _ in outcome.runs]}
    t0 = float(w.submit.min())
    t1 = max(max(ends), t0 + 1.0)
    edges = np.linspace(t0, t1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    total_cu = sum(p.total_cu for _, p in outcome.net.pools)
    utilization = []
    waiting = []
    for r in outcome.runs:
        s = r.schedule
        ran = ~s.rejected
        usage = meter(w, s, outcome.net, outcome.start)
        utilization.append(_finite(_busy_share(s.start[ran], s.end[ran],
                                               usage.cu_seconds[ran], total_cu, edges)))
        submitted = np.searchsorted(np.sort(w.submit[ran]), centres, side="right")
        started = np.searchsorted(np.sort(s.start[ran]), centres, side="right")
        waiting.append([int(v) for v in submitted - started])
    epoch = outcome.start.timestamp()
    return {"x": [round(epoch + t, 1) for t in centres.tolist()],
            "utilization": utilization, "waiting": waiting}


def _busy_share(start: NDArray[np.float64], end: NDArray[np.float64],
                cu_seconds: NDArray[np.float64], total_cu: float,
                edges: NDArray[np.float64]) -> NDArray[np.float64]:
    if start.shape[0] == 0 or total_cu <= 0:
        return np.zeros(edges.shape[0] - 1)
    rate = cu_seconds / np.maximum(end - start, 1e-12)  # CU held while running
    times = np.concatenate((start, end))
    delta = np.concatenate((rate, -rate))
    order = np.argsort(times, kind="stable")
    times, delta = times[order], delta[order]
    busy = np.cumsum(delta)
    area = np.concatenate(([0.0], np.cumsum(busy[:-1] * np.diff(times))))
    at_edges = np.interp(edges, times, area)
    width = max(float(edges[1] - edges[0]), 1e-12)
    share: NDArray[np.float64] = np.diff(at_edges) / (width * total_cu)
    return share


def _finite(values: NDArray[np.float64]) -> list[float | None]:
    """Six significant digits, and None (a gap in the chart) where a value is undefined."""
    return [float(f"{v:.6g}") if np.isfinite(v) else None for v in values.tolist()]


def _error(error: BadInput) -> dict[str, Any]:
    out: dict[str, Any] = {"event": "error", "message": str(error), "line": None}
    if isinstance(error, FieldError):
        out.update(line=error.line, field=error.field_name, expected=error.expected,
                   got=error.got[:200])
    return out


def main() -> int:
    parent = os.getppid()
    emit = _emitter(parent)
    with contextlib.suppress(OSError):
        os.nice(5)
    try:
        spec = json.loads(sys.stdin.read())
        command = spec.get("command")
        if command == "run":
            run(spec, emit)
        elif command == "check":
            check(spec, emit)
        else:
            emit({"event": "error", "message": f"unknown command {command!r}", "line": None})
            return 2
    except BadInput as error:
        emit(_error(error))
        return 2
    except Exception:
        traceback.print_exc(file=sys.stderr)
        emit({"event": "error", "line": None, "message": UNEXPECTED})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
