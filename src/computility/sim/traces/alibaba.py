"""The Alibaba GPU pod list (``openb_pod_list_*.csv``, cluster-trace-gpu-v2023), read as
CONTRACT.md says, so that results are comparable with FGD (USENIX ATC'23) on the same trace.

Columns, by header name (the standard order is ``name, cpu_milli, memory_mib, num_gpu, gpu_milli,
gpu_spec, qos, pod_phase, creation_time, deletion_time, scheduled_time``; field numbers in
messages are positions in the file, or in that standard order for a column that is missing):

- Arrival = ``creation_time``. Run time = ``deletion_time - scheduled_time``.
- Pods with an empty ``scheduled_time`` (never scheduled: phase Pending at the snapshot) or a
  run time <= 0 are counted in ``skipped``.
- Pods whose ``pod_phase`` is ``Running`` were still running when the trace was cut; their
  ``deletion_time`` is the snapshot time, so they are simulated with that truncated run time and
  counted in ``censored``. Failed and Succeeded pods are simulated with their real run time.
- cpus = ceil(``cpu_milli`` / 1000), at least 1 for a pod without GPUs.
- GPUs: ``num_gpu`` whole devices (``gpu_milli`` 1000 or empty) give ``num_gpu * 1000``;
  ``num_gpu`` 1 with 0 < ``gpu_milli`` < 1000 is a fractional share of one device. Any other
  combination is bad input rather than a guess.
- ``gpu_spec``: allowed types separated by ``|``, each resolved to catalogue ids by the caller's
  resolver (``V100M32``, ``G2``, ... are catalogue aliases); empty means any type.
- Requested time = run time (the trace has no user estimates). Tenant: ``default`` (the trace has
  no users; ``qos`` is a service class, not an owner). ``memory_mib`` and ``qos`` are not used.
- Ids are the 1-based data-row number (``openb-pod-0000`` is id 1): names are not numbers.
- Other columns are ignored, so variants of the trace with extra columns still read.

``arrivals`` (``--arrivals poisson:RATE_PER_HOUR``): arrivals are drawn as a Poisson process
from ``numpy.random.default_rng(seed)``, one per simulated pod in file order, replacing
``creation_time`` (which may then be absent). When ``deletion_time`` and ``scheduled_time`` are
absent too, run times are drawn from the same generator, after all arrivals, log-uniform between
60 s and 4 h: the range ``--synthetic`` uses for CPU tasks, which spans the trace's short
inference pods and multi-hour training pods without inventing a heavy tail the data cannot
support. Such pods are never ``censored``, and a pod is then skipped only when its ``pod_phase``
says Pending.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from computility.domain.csvrows import csv_rows
from computility.domain.errors import FieldError
from computility.domain.workload import ANY_GPU, Workload
from computility.sim.traces._arrivals import log_uniform_runs, poisson_submits
from computility.sim.traces._common import (
    MAX_COUNT,
    GpuResolver,
    GpuTypeSets,
    TaskColumns,
    check_width,
    csv_header,
    parse_count,
    parse_number,
)

ALIBABA_COLUMNS = (
    "name",
    "cpu_milli",
    "memory_mib",
    "num_gpu",
    "gpu_milli",
    "gpu_spec",
    "qos",
    "pod_phase",
    "creation_time",
    "deletion_time",
    "scheduled_time",
)
_ARRIVALS_HINT = " (or --arrivals poisson:RATE_PER_HOUR)"


def read_alibaba(
    path: str,
    lines: Iterable[str],
    *,
    limit: int | None = None,
    arrivals_per_hour: float | None = None,
    seed: int = 0,
    resolve_gpu: GpuResolver | None = None,
) -> Workload:
    """Read an openb pod list; `arrivals_per_hour` switches on seeded Poisson arrivals."""
    rows = csv_rows(path, lines)
    header_line, raw_header, header = csv_header(path, rows, ALIBABA_COLUMNS)
    col: dict[str, int] = {}
    for i, name in enumerate(header):
        col.setdefault(name, i)

    def missing(name: str, hint: str = "") -> FieldError:
        return FieldError(
            path,
            header_line,
            ALIBABA_COLUMNS.index(name) + 1,
            name,
            f"a column named {name}{hint}",
            ",".join(raw_header),
        )

    poisson = arrivals_per_hour is not None
    for name in ("cpu_milli", "num_gpu"):
        if name not in col:
            raise missing(name)
    if not poisson and "creation_time" not in col:
        raise missing("creation_time", _ARRIVALS_HINT)
    has_del, has_sched = "deletion_time" in col, "scheduled_time" in col
    if has_del != has_sched:
        absent, present = (
            ("scheduled_time", "deletion_time") if has_del else ("deletion_time", "scheduled_time")
        )
        raise missing(absent, f" (it goes with {present})")
    draw_runs = not has_del
    if draw_runs and not poisson:
        raise missing("deletion_time", _ARRIVALS_HINT)

    i_cpu, i_ngpu = col["cpu_milli"], col["num_gpu"]
    i_gm, i_spec, i_phase = col.get("gpu_milli"), col.get("gpu_spec"), col.get("pod_phase")
    i_create = col.get("creation_time")
    i_del, i_sched = col.get("deletion_time", -1), col.get("scheduled_time", -1)

    types = GpuTypeSets(path, resolve_gpu)
    kept = TaskColumns()
    skipped = censored = 0
    row_no = 0
    for line, row in rows:
        if len(kept) == limit:
            break
        check_width(path, line, row, header)
        row_no += 1
        phase = row[i_phase].strip() if i_phase is not None else ""
        if draw_runs:
            if phase == "Pending":
                skipped += 1
                continue
            run_s = math.nan
        else:
            sched_text = row[i_sched].strip()
            if not sched_text:
                skipped += 1
                continue
            sched = parse_number(path, line, i_sched + 1, "scheduled_time", sched_text)
            deleted = parse_number(path, line, i_del + 1, "deletion_time", row[i_del].strip())
            run_s = deleted - sched
            if run_s <= 0:
                skipped += 1
                continue

        cpu_m = parse_number(path, line, i_cpu + 1, "cpu_milli", row[i_cpu].strip())
        if not 0 <= cpu_m <= MAX_COUNT:
            raise FieldError(
                path, line, i_cpu + 1, "cpu_milli", "a number from 0 to 2^53", row[i_cpu]
            )
        n_gpu = parse_count(path, line, i_ngpu + 1, "num_gpu", row[i_ngpu].strip())
        milli = _gpu_milli(path, line, n_gpu, i_gm, row)
        n_cpu = math.ceil(cpu_m / 1000)
        if milli == 0:
            n_cpu = max(n_cpu, 1)
        gtype = ANY_GPU
        if milli > 0 and i_spec is not None:
            gtype = types.index(row[i_spec].strip(), line, i_spec + 1, "gpu_spec")
        created = None
        if i_create is not None and not poisson:
            created = parse_number(
                path, line, i_create + 1, "creation_time", row[i_create].strip()
            )
        if phase == "Running" and not draw_runs:
            censored += 1
        kept.add(row_no, line, run_s, cpus=n_cpu, gpu_milli=milli, gpu_type=gtype, submit=created)

    submit_col: NDArray[np.float64] | None = None
    run_col: NDArray[np.float64] | None = None
    if arrivals_per_hour is not None:
        rng = np.random.default_rng(seed)
        submit_col = poisson_submits(rng, len(kept), arrivals_per_hour)
        if draw_runs:
            run_col = log_uniform_runs(rng, len(kept))
    return kept.workload(
        path, types=types, submit=submit_col, run=run_col, skipped=skipped, censored=censored
    )


def _gpu_milli(path: str, line: int, n_gpu: int, i_gm: int | None, row: list[str]) -> int:
    """Thousandths of a device the pod needs, from ``num_gpu`` and ``gpu_milli``."""
    text = row[i_gm].strip() if i_gm is not None else ""
    milli = None if not text else parse_count(path, line, (i_gm or 0) + 1, "gpu_milli", text)
    if n_gpu == 0:
        if milli:
            raise FieldError(
                path, line, (i_gm or 0) + 1, "gpu_milli", "0 or empty when num_gpu is 0", text
            )
        return 0
    if milli is None or milli == 1000:
        return n_gpu * 1000
    if n_gpu == 1 and 0 < milli < 1000:
        return milli
    expected = "1 to 1000 or empty" if n_gpu == 1 else f"1000 or empty when num_gpu is {n_gpu}"
    raise FieldError(path, line, (i_gm or 0) + 1, "gpu_milli", expected, text)
