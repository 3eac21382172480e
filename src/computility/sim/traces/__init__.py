"""Trace readers: turn a workload file into a `Workload` for the simulator.

Four formats (see ``docs/trace-formats.md``): SWF (``swf``), the Alibaba GPU pod list
(``alibaba``), the Philly job list (``philly``) and the Computility CSV (``csv``). Files may be
gzip-compressed. Every reader streams the file line by line and reports bad input as a one-line
`FieldError` located to the physical line, so ``computility sim`` can exit 2 with a message a
script can parse.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from computility.domain.errors import UsageError
from computility.domain.workload import Workload
from computility.sim.traces._arrivals import parse_arrivals
from computility.sim.traces._open import first_content_line, open_lines
from computility.sim.traces.alibaba import read_alibaba
from computility.sim.traces.computility_csv import read_computility_csv, write_computility_csv
from computility.sim.traces.philly import read_philly
from computility.sim.traces.swf import read_swf

FORMATS = ("swf", "alibaba", "philly", "csv")

__all__ = [
    "FORMATS",
    "detect_format",
    "read_alibaba",
    "read_computility_csv",
    "read_philly",
    "read_swf",
    "read_trace",
    "write_computility_csv",
]


def detect_format(path: str | os.PathLike[str]) -> str:
    """Tell a trace's format from its name, else from its first line.

    The name wins because it is cheap and unambiguous for the published traces (``*.swf``,
    ``openb_pod_list_*``); the header decides for renamed files and for CSV dialects. The file is
    opened either way, so a missing file is reported as such rather than as an unknown format.
    """
    name = os.fspath(path)
    first = first_content_line(name)
    base = os.path.basename(name).lower()
    if base.endswith(".gz"):
        base = base[:-3]
    if base.endswith(".swf"):
        return "swf"
    if base.startswith("openb_pod_list"):
        return "alibaba"
    if first.startswith(";") or _looks_like_swf_record(first):
        return "swf"
    columns = [c.strip().strip('"') for c in first.split(",")]
    if "creation_time" in columns or "gpu_milli" in columns:
        return "alibaba"
    if columns[:3] == ["timestamp", "duration", "num_gpus"]:
        return "philly"
    if "submit_s" in columns:
        return "csv"
    raise UsageError(
        f"{name}: cannot tell the trace format from its name or header; "
        f"give --format {'|'.join(FORMATS)}"
    )


def _looks_like_swf_record(line: str) -> bool:
    parts = line.split()
    if len(parts) != 18:
        return False
    try:
        for part in parts:
            float(part)
    except ValueError:
        return False
    return True


def read_trace(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    *,
    limit: int | None = None,
    arrivals: str | None = None,
    seed: int = 0,
    resolve_gpu: Callable[[str], tuple[str, ...]] | None = None,
) -> Workload:
    """Read a trace file (plain or gzip) into a `Workload`.

    Args:
        path: the file; its text is the workload's `name`.
        fmt: ``auto`` or one of `FORMATS`.
        limit: keep only the first N simulated records, in file order (reading stops there).
        arrivals: ``poisson:RATE_PER_HOUR``, seeded Poisson arrivals for an Alibaba pod list
            (needed when it has no ``creation_time``).
        seed: seed of the generator behind `arrivals`.
        resolve_gpu: maps a trace's GPU type name to catalogue ids, raising
            `UnknownDeviceType` for names it does not know; without it names are kept verbatim.

    Raises:
        UsageError: a malformed argument, or a format that cannot be told.
        BadInput: a missing or unreadable file; `FieldError` for a bad value in it.
    """
    name = os.fspath(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise UsageError(f"--format: expected one of auto, {', '.join(FORMATS)}, got '{fmt}'")
    if limit is not None and limit < 0:
        raise UsageError(f"--limit: expected a number of jobs >= 0, got {limit}")
    rate = parse_arrivals(arrivals) if arrivals is not None else None
    kind = detect_format(name) if fmt == "auto" else fmt
    if rate is not None and kind != "alibaba":
        raise UsageError(
            f"--arrivals applies to the Alibaba pod list (format alibaba), not to {name} "
            f"(format {kind})"
        )
    with open_lines(name) as lines:
        if kind == "swf":
            return read_swf(name, lines, limit=limit)
        if kind == "alibaba":
            return read_alibaba(
                name,
                lines,
                limit=limit,
                arrivals_per_hour=rate,
                seed=seed,
                resolve_gpu=resolve_gpu,
            )
        if kind == "philly":
            return read_philly(name, lines, limit=limit)
        return read_computility_csv(name, lines, limit=limit, resolve_gpu=resolve_gpu)
