"""Pieces shared by the trace readers: value parsing that reports the exact field, CSV rows with
their physical line numbers, and interning of tenants and accelerator sets.

Every reader must turn a bad value into the one-line ``PATH:LINE: field N (name)`` message, so the
parsing helpers take the location along with the text instead of letting ``ValueError`` escape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from computility.domain.errors import FieldError, UnknownDeviceType
from computility.domain.workload import ANY_GPU, Workload

GpuResolver = Callable[[str], tuple[str, ...]]
"""Maps a device name from a trace (``V100M32``, ``A100``) to catalogue ids, or raises
`UnknownDeviceType`."""


def parse_number(path: str, line: int, field_no: int, name: str, text: str) -> float:
    """A finite number; NaN and infinities are refused because no trace means them."""
    try:
        value = float(text)
    except ValueError:
        raise FieldError(path, line, field_no, name, "a number", text) from None
    if not math.isfinite(value):
        raise FieldError(path, line, field_no, name, "a finite number", text)
    return value


MAX_COUNT = 2**53
"""Largest integer a trace field may hold: every integer up to it is exact as a float, and sums
of them stay far from int64 overflow."""


def parse_count(path: str, line: int, field_no: int, name: str, text: str) -> int:
    """A non-negative integer (``4`` and ``4.0`` both accepted: some exporters write floats)."""
    value = parse_number(path, line, field_no, name, text)
    if value < 0 or not value.is_integer():
        raise FieldError(path, line, field_no, name, "a non-negative integer", text)
    if value > MAX_COUNT:
        raise FieldError(path, line, field_no, name, "an integer no larger than 2^53", text)
    return int(value)


def csv_header(
    path: str, rows: Iterator[tuple[int, list[str]]], columns: Sequence[str]
) -> tuple[int, list[str], list[str]]:
    """The header row of a CSV trace: its line, its raw cells and the stripped column names.

    An empty file is reported at line 1, field 1, with the columns the format expects.
    """
    first = next(rows, None)
    if first is None:
        expected = "a header line naming the columns (" + ",".join(columns) + ")"
        raise FieldError(path, 1, 1, columns[0], expected, "")
    line, raw = first
    return line, raw, [h.strip() for h in raw]


def check_width(path: str, line: int, row: Sequence[str], header: Sequence[str]) -> None:
    """Refuse a row whose field count differs from the header's, naming the first field off."""
    if len(row) == len(header):
        return
    field_no = min(len(row), len(header)) + 1
    name = header[field_no - 1] if field_no <= len(header) else "extra field"
    raise FieldError(
        path,
        line,
        field_no,
        name,
        f"{len(header)} comma-separated fields, as in the header",
        ",".join(row),
    )


class TaskColumns:
    """A reader's kept records, one Python list per column, in file order.

    Optional columns (requested time, tenant, deadline) are passed on only when the reader filled
    them, so `Workload.from_columns` applies its own defaults otherwise.
    """

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.lines: list[int] = []
        self.submit: list[float] = []
        self.run: list[float] = []
        self.cpus: list[int] = []
        self.gpu_milli: list[int] = []
        self.gpu_types: list[int] = []
        self.requested: list[float] = []
        self.tenant: list[int] = []
        self.deadline: list[float] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(
        self,
        task_id: int,
        line: int,
        run: float,
        *,
        cpus: int,
        gpu_milli: int = 0,
        gpu_type: int = ANY_GPU,
        submit: float | None = None,
        requested: float | None = None,
        tenant: int | None = None,
        deadline: float | None = None,
    ) -> None:
        """Keep one record; leave out `submit` when arrivals are drawn later."""
        self.ids.append(task_id)
        self.lines.append(line)
        self.run.append(run)
        self.cpus.append(cpus)
        self.gpu_milli.append(gpu_milli)
        self.gpu_types.append(gpu_type)
        if submit is not None:
            self.submit.append(submit)
        if requested is not None:
            self.requested.append(requested)
        if tenant is not None:
            self.tenant.append(tenant)
        if deadline is not None:
            self.deadline.append(deadline)

    def workload(
        self,
        path: str,
        *,
        types: GpuTypeSets,
        tenants: Tenants | None = None,
        submit: list[float] | NDArray[np.float64] | None = None,
        run: list[float] | NDArray[np.float64] | None = None,
        skipped: int = 0,
        censored: int = 0,
    ) -> Workload:
        """The workload of the kept records; `submit`/`run` replace columns drawn afterwards."""
        return Workload.from_columns(
            path,
            ids=self.ids,
            submit=list(self.submit) if submit is None else submit,
            run=list(self.run) if run is None else run,
            requested=self.requested or None,
            cpus=self.cpus,
            gpu_milli=self.gpu_milli,
            gpu_types=self.gpu_types,
            gpu_type_sets=tuple(types.sets),
            tenant=self.tenant or None,
            tenants=tenants.names() if tenants is not None else ("default",),
            deadline=self.deadline or None,
            lines=self.lines,
            skipped=skipped,
            censored=censored,
        )


class Tenants:
    """Tenant names in order of first appearance, so indices are stable for a given file."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}

    def index(self, name: str) -> int:
        found = self._index.get(name)
        if found is None:
            found = self._index[name] = len(self._index)
        return found

    def names(self) -> tuple[str, ...]:
        return tuple(self._index) or ("default",)


class GpuTypeSets:
    """Resolves ``|``-separated accelerator names once per distinct spelling and interns the
    resulting id sets, so a trace with thousands of GPU tasks calls the resolver a few times.

    Without a resolver the names are kept as they are: useful for files that already hold
    catalogue ids, and for tools that do not load the catalogue.
    """

    def __init__(self, path: str, resolve: GpuResolver | None) -> None:
        self._path = path
        self._resolve = resolve
        self.sets: list[tuple[str, ...]] = []
        self._by_ids: dict[tuple[str, ...], int] = {}
        self._by_spec: dict[str, int] = {}

    def index(self, spec: str, line: int, field_no: int, field_name: str) -> int:
        cached = self._by_spec.get(spec)
        if cached is not None:
            return cached
        names = [n.strip() for n in spec.split("|") if n.strip()]
        if not names:
            self._by_spec[spec] = ANY_GPU
            return ANY_GPU
        ids: list[str] = []
        for name in names:
            try:
                resolved = self._resolve(name) if self._resolve is not None else (name,)
            except UnknownDeviceType:
                resolved = ()
            if not resolved:
                raise FieldError(
                    self._path,
                    line,
                    field_no,
                    field_name,
                    "GPU type names known to the device catalogue, separated by '|'",
                    name,
                )
            ids.extend(r for r in resolved if r not in ids)
        key = tuple(ids)
        found = self._by_ids.get(key)
        if found is None:
            found = self._by_ids[key] = len(self.sets)
            self.sets.append(key)
        self._by_spec[spec] = found
        return found
