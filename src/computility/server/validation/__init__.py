"""Validation: operators replay workloads under several placement policies and compare them
before rolling a policy out (the seed's 监测调度试验验证平台).

A thin driver of the simulator: `choices` checks what the form asks for, `runs` keeps each run
in ``validation_runs`` (which is also the queue), and `runner` starts each run in a worker
process (`computility.sim.worker`, the simulator's own entry point behind a JSON-lines pipe),
copies its progress and result to the row, and kills it on cancel. The pages are in
`computility.server.web.pages.validation`.
"""

from __future__ import annotations

from fastapi import FastAPI

from computility.server.validation.runner import ValidationRunner


def start_validation_worker(app: FastAPI) -> ValidationRunner:
    """Fail the runs a dead process left running, and start this replica's runner."""
    runner = ValidationRunner(app.state.plane)
    runner.start()
    app.state.validation = runner
    return runner


def stop_validation_worker(app: FastAPI) -> None:
    """Kill this replica's workers and queue their runs again (they start over later)."""
    runner: ValidationRunner | None = getattr(app.state, "validation", None)
    if runner is not None:
        runner.stop()
        app.state.validation = None


__all__ = ["ValidationRunner", "start_validation_worker", "stop_validation_worker"]
