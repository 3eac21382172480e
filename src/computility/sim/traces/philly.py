"""The compact Microsoft Philly job list of the Pollux artifact
(``timestamp,duration,num_gpus,gpu_time,cluster``), the multi-tenant GPU trace of the project.

- ``timestamp`` (``YYYY-MM-DD HH:MM:SS``, cluster-local wall time, taken as-is with no time zone)
  is the submit time; the file is not sorted, so submit = seconds since the earliest timestamp of
  every row read (skipped rows included, so a row's submit time does not depend on its
  neighbours' sizes). With ``limit``, reading stops after the N-th kept job and "every row read"
  is the rows up to there.
- Run time = requested time = ``duration`` (seconds). ``gpu_time`` is redundant and ignored.
- ``num_gpus`` whole devices of any type (the trace does not say which of Philly's 12 GB or 24 GB
  servers a job ran on). cpus = ``num_gpus``: the trace has no host-core counts and CPU demand is
  not modelled for GPU tasks; one core per GPU keeps every task's size positive.
- Tenant = ``cluster``, the hashed virtual-cluster id, in order of first appearance (an empty
  cluster is tenant ``default``); this gives the fair-share queue order real tenants.
- Rows with ``duration`` <= 0 or ``num_gpus`` <= 0 are counted in ``skipped``.
- Ids are the 1-based data-row number: the trace has no job ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np

from computility.domain.csvrows import csv_rows
from computility.domain.errors import FieldError
from computility.domain.workload import Workload
from computility.sim.traces._common import (
    GpuTypeSets,
    TaskColumns,
    Tenants,
    check_width,
    csv_header,
    parse_count,
    parse_number,
)

PHILLY_COLUMNS = ("timestamp", "duration", "num_gpus", "gpu_time", "cluster")
_EPOCH = datetime(1970, 1, 1)


def _seconds(path: str, line: int, field_no: int, text: str) -> float:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise FieldError(
            path, line, field_no, "timestamp", "a time like 2017-10-09 07:01:55", text
        ) from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    return (stamp - _EPOCH).total_seconds()


def read_philly(path: str, lines: Iterable[str], *, limit: int | None = None) -> Workload:
    """Read a Philly job list; the earliest timestamp read becomes simulated time 0."""
    rows = csv_rows(path, lines)
    header_line, raw_header, header = csv_header(path, rows, PHILLY_COLUMNS)
    col: dict[str, int] = {}
    for i, name in enumerate(header):
        col.setdefault(name, i)
    for name in ("timestamp", "duration", "num_gpus"):
        if name not in col:
            raise FieldError(
                path,
                header_line,
                PHILLY_COLUMNS.index(name) + 1,
                name,
                f"a column named {name}",
                ",".join(raw_header),
            )
    i_ts, i_dur, i_gpus = col["timestamp"], col["duration"], col["num_gpus"]
    i_vc = col.get("cluster")

    tenants = Tenants()
    kept = TaskColumns()
    stamps: list[float] = []
    earliest = float("inf")
    skipped = 0
    row_no = 0
    for line, row in rows:
        if len(kept) == limit:
            break
        check_width(path, line, row, header)
        row_no += 1
        stamp = _seconds(path, line, i_ts + 1, row[i_ts].strip())
        earliest = min(earliest, stamp)
        duration = parse_number(path, line, i_dur + 1, "duration", row[i_dur].strip())
        n_text = row[i_gpus].strip()
        if duration <= 0 or parse_number(path, line, i_gpus + 1, "num_gpus", n_text) <= 0:
            skipped += 1
            continue
        n_gpus = parse_count(path, line, i_gpus + 1, "num_gpus", n_text)
        vc = (row[i_vc].strip() if i_vc is not None else "") or "default"
        stamps.append(stamp)
        kept.add(row_no, line, duration, cpus=n_gpus, gpu_milli=n_gpus * 1000,
                 tenant=tenants.index(vc))

    submit = np.asarray(stamps, dtype=np.float64) - (earliest if stamps else 0.0)
    return kept.workload(
        path, types=GpuTypeSets(path, None), tenants=tenants, submit=submit, skipped=skipped
    )
