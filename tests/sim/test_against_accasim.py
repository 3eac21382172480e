"""Our FCFS replays lublin_256 exactly as AccaSim's FIFO does, job by job.

The reference start times were recorded from AccaSim 1.1.3 (tests/data/accasim/PROVENANCE.md);
the trace is the copy shipped in the package, so this runs on any clone.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from computility.sim.run import SimRequest, simulate

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "accasim"


def test_fcfs_start_times_equal_accasim_fifo_for_every_job() -> None:
    with gzip.open(REFERENCE / "lublin_256-fifo.json.gz", "rt") as f:
        accasim = json.load(f)
    outcome = simulate(SimRequest(trace="builtin:lublin_256", queues=("fcfs",)))
    schedule = outcome.runs[0].schedule
    ours = {int(i): float(s) for i, s in zip(outcome.workload.ids, schedule.start, strict=True)}
    theirs = {int(k): float(v) for k, v in accasim["starts"].items()}
    assert ours.keys() == theirs.keys()
    differing = [i for i in ours if ours[i] != theirs[i]]
    assert differing == []
    summary = outcome.runs[0].summary
    assert np.isclose(summary["mean_wait_s"], accasim["mean_wait_s"])  # type: ignore[arg-type]
