"""The Computility CSV: the project's own task list, for workloads that no published trace
describes (tenants with deadlines, typed accelerators, fractional GPUs) and for exchanging
converted traces between tools.

Format (also in ``docs/trace-formats.md``)::

    id,submit_s,run_s,requested_s,cpus,gpus,gpu_types,tenant,deadline_s
    1,0,3600,7200,8,0,,alice,
    2,30,600,,4,0.5,T4|A10,bob,5000
    3,60,1800,,16,2,A100,alice,

- A header line is required; columns are found by name, in any order. ``id``, ``submit_s`` and
  ``run_s`` are required; ``requested_s``, ``cpus``, ``gpus``, ``gpu_types``, ``tenant`` and
  ``deadline_s`` are optional, as columns and (but for ``id``, ``submit_s``, ``run_s``) as values.
  Any other column name is an error, so a typo cannot silently drop a constraint.
- ``id``: integer. ``submit_s``: seconds of simulated time, >= 0.
- ``run_s``: actual run time in seconds; a row with ``run_s`` <= 0 is counted in ``skipped``, as
  SWF counts zero-length jobs.
- ``requested_s``: the user's estimate; empty means ``run_s``, and a value below ``run_s`` is
  raised to it (so ``-1`` or ``0`` read as "unknown", as in SWF).
- ``cpus``: non-negative integer, default 1.
- ``gpus``: accelerators, default 0; below 1 a fractional share of one device (``0.5`` = 500
  milli-GPU, at most three decimals), from 1 up whole devices only.
- ``gpu_types``: catalogue names separated by ``|``, resolved by the caller's resolver (family
  names and trace aliases allowed); empty means any type. Ignored for rows without GPUs.
- ``tenant``: owner name, default ``default``; tenants are numbered in order of first appearance.
- ``deadline_s``: absolute deadline in seconds of simulated time (not relative to submit),
  empty for none.
- A row with neither cpus nor gpus is counted in ``skipped``.

`write_computility_csv` writes every column, so a workload written and read back (with a resolver
that maps catalogue ids to themselves) has the same tasks; ``skipped``, ``censored`` and the
header facts have no place in the format and are not kept.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import TextIO

import numpy as np

from computility.domain.csvrows import csv_rows
from computility.domain.errors import FieldError
from computility.domain.workload import ANY_GPU, Workload
from computility.sim.traces._common import (
    MAX_COUNT,
    GpuResolver,
    GpuTypeSets,
    TaskColumns,
    Tenants,
    check_width,
    csv_header,
    parse_count,
    parse_number,
)

CSV_COLUMNS = (
    "id",
    "submit_s",
    "run_s",
    "requested_s",
    "cpus",
    "gpus",
    "gpu_types",
    "tenant",
    "deadline_s",
)
REQUIRED_COLUMNS = ("id", "submit_s", "run_s")


def read_computility_csv(
    path: str,
    lines: Iterable[str],
    *,
    limit: int | None = None,
    resolve_gpu: GpuResolver | None = None,
) -> Workload:
    """Read a Computility CSV task list."""
    rows = csv_rows(path, lines)
    header_line, raw_header, header = csv_header(path, rows, CSV_COLUMNS)
    header_text = ",".join(raw_header)
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise FieldError(
            path,
            header_line,
            header.index(unknown[0]) + 1,
            unknown[0],
            "only the columns " + ", ".join(CSV_COLUMNS),
            ", ".join(unknown),
        )
    col: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in col:
            raise FieldError(path, header_line, i + 1, name, "each column once", header_text)
        col[name] = i
    for name in REQUIRED_COLUMNS:
        if name not in col:
            raise FieldError(
                path,
                header_line,
                CSV_COLUMNS.index(name) + 1,
                name,
                f"a column named {name}",
                header_text,
            )

    i_id, i_sub, i_run = col["id"], col["submit_s"], col["run_s"]
    i_req, i_cpu, i_gpu = col.get("requested_s"), col.get("cpus"), col.get("gpus")
    i_types, i_ten, i_dl = col.get("gpu_types"), col.get("tenant"), col.get("deadline_s")

    types = GpuTypeSets(path, resolve_gpu)
    tenants = Tenants()
    kept = TaskColumns()
    skipped = 0
    for line, row in rows:
        if len(kept) == limit:
            break
        check_width(path, line, row, header)

        def cell(i: int | None, row: list[str] = row) -> str:
            return row[i].strip() if i is not None else ""

        job_id = parse_number(path, line, i_id + 1, "id", cell(i_id))
        if not job_id.is_integer() or abs(job_id) > MAX_COUNT:
            raise FieldError(
                path, line, i_id + 1, "id", "an integer no larger than 2^53", cell(i_id)
            )
        sub = parse_number(path, line, i_sub + 1, "submit_s", cell(i_sub))
        if sub < 0:
            raise FieldError(path, line, i_sub + 1, "submit_s", "seconds >= 0", cell(i_sub))
        run_s = parse_number(path, line, i_run + 1, "run_s", cell(i_run))
        req_text = cell(i_req)
        req = run_s
        if req_text:
            req = parse_number(path, line, (i_req or 0) + 1, "requested_s", req_text)
        cpu_text = cell(i_cpu)
        n_cpu = parse_count(path, line, (i_cpu or 0) + 1, "cpus", cpu_text) if cpu_text else 1
        milli = _milli(path, line, (i_gpu or 0) + 1, cell(i_gpu))
        dl_text = cell(i_dl)
        dl = math.nan
        if dl_text:
            dl = parse_number(path, line, (i_dl or 0) + 1, "deadline_s", dl_text)
        if run_s <= 0 or (n_cpu == 0 and milli == 0):
            skipped += 1
            continue
        gtype = ANY_GPU
        if milli > 0 and i_types is not None:
            gtype = types.index(cell(i_types), line, i_types + 1, "gpu_types")
        kept.add(
            int(job_id), line, run_s, cpus=n_cpu, gpu_milli=milli, gpu_type=gtype, submit=sub,
            requested=max(req, run_s), tenant=tenants.index(cell(i_ten) or "default"),
            deadline=dl,
        )

    return kept.workload(path, types=types, tenants=tenants, skipped=skipped)


def _milli(path: str, line: int, field_no: int, text: str) -> int:
    if not text:
        return 0
    gpus = parse_number(path, line, field_no, "gpus", text)
    milli = round(gpus * 1000)
    if gpus < 0 or abs(gpus * 1000 - milli) > 1e-6 or (milli > 1000 and milli % 1000):
        raise FieldError(
            path,
            line,
            field_no,
            "gpus",
            "a number of GPUs >= 0: a share below 1 (at most 3 decimals) or whole devices",
            text,
        )
    return int(milli)


def _num(value: float) -> str:
    """Shortest text that reads back to the same float (integers without a trailing .0)."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def write_computility_csv(workload: Workload, dest: str | os.PathLike[str] | TextIO) -> None:
    """Write `workload` as a Computility CSV, one row per task in the workload's order."""
    if isinstance(dest, str | os.PathLike):
        with open(dest, "w", encoding="utf-8", newline="") as out:
            _write(workload, out)
    else:
        _write(workload, dest)


def _write(w: Workload, out: TextIO) -> None:
    out.write(",".join(CSV_COLUMNS) + "\n")
    type_names = ["|".join(s) for s in w.gpu_type_sets]
    for i in range(len(w)):
        milli = int(w.gpu_milli[i])
        gt = int(w.gpu_types[i])
        dl = float(w.deadline[i])
        tenant = w.tenants[int(w.tenant[i])]
        if any(c in tenant for c in ',"\n\r'):
            tenant = '"' + tenant.replace('"', '""') + '"'
        fields = (
            str(int(w.ids[i])),
            _num(float(w.submit[i])),
            _num(float(w.run[i])),
            _num(float(w.requested[i])),
            str(int(w.cpus[i])),
            _num(milli / 1000) if milli else "0",
            type_names[gt] if milli and gt != ANY_GPU else "",
            tenant,
            "" if np.isnan(dl) else _num(dl),
        )
        out.write(",".join(fields) + "\n")
