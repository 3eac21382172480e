"""The Standard Workload Format of the Parallel Workloads Archive, read exactly as CONTRACT.md
("SWF semantics") says, because published scheduling results are only reproducible when every
simulator filters and sizes jobs the same way.

- ``;`` lines are header comments; ``; Key: value`` pairs land in `Workload.header` (the first
  occurrence of a key wins), which is where ``--network single`` finds ``MaxProcs``/``MaxNodes``.
- A record is exactly 18 whitespace-separated numbers; anything else is bad input, reported at the
  first field that is missing, extra or not a number. Job id and processor counts must be
  integers. Blank lines are ignored (but counted, like comments, in line numbers).
- Simulated: run time (4) > 0 and processors > 0, processors being requested (8) when > 0, else
  allocated (5). Other records are counted in ``skipped``.
- Requested time is field 9 when > 0, else the run time, and never below the run time.
- ``limit`` keeps the first N records that pass the filter, in file order, and stops reading
  there: records after them are neither checked nor counted.
- One tenant (``default``): fields 12-13 are ignored on purpose, so single-tenant queue order is
  the plain (submit, id) order the published baselines use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from computility.domain.errors import FieldError
from computility.domain.workload import Workload
from computility.sim.traces._common import MAX_COUNT

SWF_FIELDS = (
    "job id",
    "submit time",
    "wait time",
    "run time",
    "allocated processors",
    "average cpu time",
    "used memory",
    "requested processors",
    "requested time",
    "requested memory",
    "status",
    "user id",
    "group id",
    "executable",
    "queue",
    "partition",
    "preceding job",
    "think time",
)
N_FIELDS = len(SWF_FIELDS)
_INTEGER_FIELDS = [0, 4, 7]


def _header_pair(line: str, header: dict[str, str]) -> None:
    key, sep, value = line.lstrip()[1:].partition(":")
    key = key.strip()
    if sep and key:
        header.setdefault(key, value.strip())


def _field_value(path: str, line_no: int, i: int, text: str) -> float:
    # Python's float() also takes "1_000"; numpy's parser does not. Refusing it here keeps the
    # slow path and the fast path in agreement on what a number is.
    try:
        if "_" in text:
            raise ValueError
        value = float(text)
    except ValueError:
        raise FieldError(path, line_no, i + 1, SWF_FIELDS[i], "a number", text) from None
    if not math.isfinite(value):
        raise FieldError(path, line_no, i + 1, SWF_FIELDS[i], "a finite number", text)
    if i in _INTEGER_FIELDS and not value.is_integer():
        raise FieldError(path, line_no, i + 1, SWF_FIELDS[i], "an integer", text)
    if i in _INTEGER_FIELDS and abs(value) > MAX_COUNT:
        expected = "an integer no larger than 2^53"
        raise FieldError(path, line_no, i + 1, SWF_FIELDS[i], expected, text)
    return value


def _record(path: str, line_no: int, line: str) -> list[float]:
    """One record's fields, or the error for its first bad field."""
    parts = line.split()
    if len(parts) != N_FIELDS:
        field_no = min(len(parts), N_FIELDS) + 1
        name = SWF_FIELDS[field_no - 1] if field_no <= N_FIELDS else "extra field"
        raise FieldError(path, line_no, field_no, name, f"{N_FIELDS} numeric fields", line.strip())
    return [_field_value(path, line_no, i, text) for i, text in enumerate(parts)]


def _passes(fields: NDArray[np.float64]) -> NDArray[np.bool_]:
    procs = np.where(fields[:, 7] > 0, fields[:, 7], fields[:, 4])
    return (fields[:, 3] > 0) & (procs > 0)


def _parse_chunk(
    path: str, chunk: list[str], line_nos: list[int], room: int | None
) -> NDArray[np.float64]:
    """The fields of a chunk of records as an (n, 18) array.

    numpy's C parser reads a clean chunk; a chunk it refuses, or that holds NaN, infinities or
    fractional ids or processor counts, is re-read record by record in Python, which raises the
    precise error for the first bad record. That re-read stops once `room` records have passed
    the filter, so a bad record beyond ``--limit`` is never reported, as if reading had
    stopped there.
    """
    fields: NDArray[np.float64] | None = None
    # Published SWF logs are nearly all integers, which numpy parses four times faster than
    # floats; a chunk with a fractional field (or anything else) falls back to floats. numpy's
    # parser sees ASCII only: a character beyond U+FFFF in a field can crash it (numpy 2.4,
    # segmentation fault), and no record with a non-ASCII character is valid anyway.
    # (`str.isascii` is a flag check, not a scan.)
    ascii_only = all(line.isascii() for line in chunk)
    for dtype in (np.int64, np.float64) if ascii_only else ():
        try:
            fields = np.loadtxt(chunk, dtype=dtype, comments=None, ndmin=2).astype(np.float64)
            break
        except (ValueError, OverflowError):
            continue
    if (
        fields is not None
        and fields.shape == (len(chunk), N_FIELDS)
        and bool(np.isfinite(fields).all())
        and bool((fields[:, _INTEGER_FIELDS] % 1 == 0).all())
        and bool((np.abs(fields[:, _INTEGER_FIELDS]) <= MAX_COUNT).all())
    ):
        return fields
    rows: list[list[float]] = []
    passed = 0
    for line, line_no in zip(chunk, line_nos, strict=True):
        if passed == room:
            break
        row = _record(path, line_no, line)
        rows.append(row)
        procs = row[7] if row[7] > 0 else row[4]
        passed += row[3] > 0 and procs > 0
    return np.asarray(rows, dtype=np.float64).reshape(-1, N_FIELDS)


class _Columns:
    """Kept records, accumulated per chunk as numpy arrays (a few bytes per job, not objects)."""

    def __init__(self) -> None:
        self.ids: list[NDArray[np.int64]] = []
        self.submit: list[NDArray[np.float64]] = []
        self.run: list[NDArray[np.float64]] = []
        self.requested: list[NDArray[np.float64]] = []
        self.cpus: list[NDArray[np.int64]] = []
        self.lines: list[NDArray[np.int64]] = []
        self.kept = 0
        self.skipped = 0

    def add(self, fields: NDArray[np.float64], line_nos: list[int], limit: int | None) -> None:
        ok = _passes(fields)
        if limit is not None:
            passing = np.flatnonzero(ok)
            room = limit - self.kept
            if passing.shape[0] >= room:
                cut = int(passing[room - 1]) + 1 if room > 0 else 0
                fields, ok = fields[:cut], ok[:cut]
        where = np.asarray(line_nos[: fields.shape[0]], dtype=np.int64)[ok]
        kept = fields[ok]
        run = kept[:, 3].copy()  # copies, so that the 18-column chunk can be freed
        procs = np.where(kept[:, 7] > 0, kept[:, 7], kept[:, 4])
        self.ids.append(kept[:, 0].astype(np.int64))
        self.submit.append(kept[:, 1].copy())
        self.run.append(run)
        self.requested.append(np.where(kept[:, 8] > 0, kept[:, 8], run))
        self.cpus.append(procs.astype(np.int64))
        self.lines.append(where)
        self.kept += int(kept.shape[0])
        self.skipped += int(ok.shape[0] - kept.shape[0])


_CHUNK = 8192


def read_swf(path: str, lines: Iterable[str], *, limit: int | None = None) -> Workload:
    """Read SWF records from `lines` (physical lines of `path`, used only for messages)."""
    header: dict[str, str] = {}
    cols = _Columns()
    chunk: list[str] = []
    chunk_lines: list[int] = []

    def flush() -> None:
        room = None if limit is None else limit - cols.kept
        cols.add(_parse_chunk(path, chunk, chunk_lines, room), chunk_lines, limit)
        chunk.clear()
        chunk_lines.clear()

    # Small limits read small chunks, so little is parsed beyond the records kept.
    size = _CHUNK if limit is None else max(16, min(_CHUNK, limit))
    if limit != 0:
        for line_no, line in enumerate(lines, 1):
            first = line[:1]
            if first == ";":
                _header_pair(line, header)
                continue
            if not first or first in _SPACE:
                stripped = line.lstrip()
                if not stripped:
                    continue
                if stripped[0] == ";":
                    _header_pair(line, header)
                    continue
            chunk.append(line)
            chunk_lines.append(line_no)
            if len(chunk) >= size:
                flush()
                if cols.kept == limit:
                    break
        else:
            if chunk:
                flush()
    else:
        # Nothing is kept, but the header still tells the machine size.
        for line in lines:
            stripped = line.lstrip()
            if stripped and stripped[0] != ";":
                break
            if stripped:
                _header_pair(line, header)

    ids = np.concatenate(cols.ids) if cols.ids else np.zeros(0, np.int64)
    return Workload.from_columns(
        path,
        ids=ids,
        submit=np.concatenate(cols.submit) if cols.submit else np.zeros(0),
        run=np.concatenate(cols.run) if cols.run else np.zeros(0),
        requested=np.concatenate(cols.requested) if cols.requested else np.zeros(0),
        cpus=np.concatenate(cols.cpus) if cols.cpus else np.zeros(0, np.int64),
        gpu_milli=np.zeros(ids.shape[0], np.int64),
        lines=np.concatenate(cols.lines) if cols.lines else np.zeros(0, np.int64),
        skipped=cols.skipped,
        header=header,
    )


_SPACE = " \t\r\n\f\v"
