"""What every benchmark shares: finding data, timing, peak memory, and recording results."""

from __future__ import annotations

import json
import platform
import resource
import sys
from pathlib import Path
from typing import Any

from computility.testing.data import SHARED_DATA_ENV, find_shared_data_dir

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def shared_data() -> Path:
    found = find_shared_data_dir()
    if found is None:
        sys.exit(f"shared data not found: set {SHARED_DATA_ENV}")
    return found


def lublin_path() -> Path:
    return shared_data() / "swf_hpc" / "lublin_256.swf"


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its waited-for children), MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def record(name: str, payload: dict[str, Any]) -> Path:
    """Write a benchmark's figures to benchmarks/results/NAME.json and echo them."""
    RESULTS_DIR.mkdir(exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), **payload}
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path


def tiled_swf(source: Path, copies: int, target: Path) -> Path:
    """An SWF of `copies` back-to-back copies of `source`, with ids and submit times shifted.

    Each copy starts one second after the previous copy's last submission, so the load stays that
    of the original log while the job count grows.
    """
    header: list[str] = []
    rows: list[list[str]] = []
    with source.open() as f:
        for line in f:
            if line.startswith(";"):
                if not line.startswith("; MaxJobs") and not line.startswith("; MaxRecords"):
                    header.append(line)
            elif line.strip():
                rows.append(line.split())
    span = max(int(r[1]) for r in rows) + 1
    n = len(rows)
    with target.open("w") as out:
        out.writelines(header)
        for c in range(copies):
            for r in rows:
                fields = list(r)
                fields[0] = str(int(r[0]) + c * n)
                fields[1] = str(int(r[1]) + c * span)
                out.write(" ".join(fields) + "\n")
    return target
