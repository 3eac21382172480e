"""Measured training throughput per job type and device: how much faster one device really is.

A CU is a device's FP32 peak, and peaks mislead for real jobs: Gavel measured a recommendation
model running *slower* on a V100 than on a K80, and ResNet-50 7x faster. A scheduler that places
by CU alone would misjudge both. This table holds the measured rates, so a task tagged with a job
type (its *profile*) can be costed on each device by what it actually achieves there.

The packaged table is Gavel's (OSDI'20) isolated throughputs; see
``computility/data/throughput/PROVENANCE.md``. Its format is a CSV with the header
``profile,scale_factor,device,steps_per_s``:

- ``profile``: the job type (Gavel's string, e.g. ``ResNet-50 (batch size 64)``).
- ``scale_factor``: GPUs the job runs on, a positive integer; the rate is for the whole job.
- ``device``: a catalogue id, alias or family name. A family name stands for every variant,
  because a measurement on "a V100" is the best figure the table has for either V100.
- ``steps_per_s``: training iterations per second, finite and >= 0. Zero is a measurement too:
  Gavel records 0 where the job does not run on that device at that scale (it does not fit), so
  it is kept, and `speed_ratio` refuses to divide by it.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Final

from computility.domain.csvrows import csv_rows
from computility.domain.devices import DeviceType
from computility.domain.errors import BadInput, FieldError

COLUMNS: Final[tuple[str, ...]] = ("profile", "scale_factor", "device", "steps_per_s")
DEFAULT_TABLE: Final = "gavel_osdi20.csv"

# The same name rule as catalogue ids and aliases, so every table device name could be one.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DIGITS = re.compile(r"[0-9]+")
_Key = tuple[str, int, str]


def _fold(name: str) -> str:
    """Look-up key of a device name; catalogue names are case-insensitive, so these are too."""
    return name.strip().casefold()


@dataclass(frozen=True, slots=True)
class ThroughputRow:
    """One measurement: `profile` at `scale_factor` GPUs of `device` runs `steps_per_s`."""

    profile: str
    scale_factor: int
    device: str
    steps_per_s: float


@dataclass(frozen=True)
class ThroughputTable:
    """Measured steps per second, looked up by (profile, scale factor, device).

    Attributes:
        rows: the measurements, in the order given.
        source: where they came from, for messages (a file name).

    Raises:
        BadInput: a row with an empty profile, a scale factor below 1, a device name that is not
            a name, a negative or non-finite rate, or a second row for the same (profile,
            scale factor, device name), device names compared case-insensitively.
    """

    rows: tuple[ThroughputRow, ...]
    source: str = "<rows>"
    _by_key: dict[_Key, float] = field(init=False, repr=False, compare=False)
    _scales: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    _profiles: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(self.rows))
        by_key: dict[_Key, float] = {}
        scales: dict[str, set[int]] = {}
        for row in self.rows:
            problem = _row_problem(row)
            if problem is not None:
                raise BadInput(f"{self.source}: {problem}")
            key = (row.profile, row.scale_factor, _fold(row.device))
            if key in by_key:
                raise BadInput(
                    f"{self.source}: two rows for '{row.profile}' at scale factor "
                    f"{row.scale_factor} on '{row.device}'"
                )
            by_key[key] = row.steps_per_s
            scales.setdefault(row.profile, set()).add(row.scale_factor)
        object.__setattr__(self, "_by_key", by_key)
        object.__setattr__(
            self, "_scales", {profile: tuple(sorted(s)) for profile, s in scales.items()}
        )
        object.__setattr__(self, "_profiles", tuple(sorted(scales)))

    @classmethod
    def from_csv_text(cls, text: str, source: str = "throughput.csv") -> ThroughputTable:
        """Read a table from CSV text (format in the module docstring), checking every field.

        Args:
            text: the whole file.
            source: the file name to put in messages.

        Raises:
            FieldError: ``SOURCE:LINE: field N (name): expected ..., got '...'`` for the first
                bad field, a wrong header, a row of the wrong width or a repeated row.
            BadInput: text the CSV reader cannot split (an unclosed quote).
        """
        rows: list[ThroughputRow] = []
        first_line: dict[_Key, int] = {}
        records = csv_rows(source, text.splitlines(keepends=True), strict=True)
        header = next(records, None)
        if header is None:
            raise FieldError(source, 1, 1, COLUMNS[0], "the header " + ",".join(COLUMNS), "")
        header_line, names = header
        got = [name.strip() for name in names]
        if got != list(COLUMNS):
            pairs = zip(got, COLUMNS, strict=False)
            i = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(got), len(COLUMNS)))
            name = COLUMNS[i] if i < len(COLUMNS) else "extra field"
            expected = "the header " + ",".join(COLUMNS)
            raise FieldError(source, header_line, i + 1, name, expected, ",".join(names))
        for line, cells in records:
            row = _parse_row(source, line, cells)
            key = (row.profile, row.scale_factor, _fold(row.device))
            if key in first_line:
                raise FieldError(
                    source,
                    line,
                    3,
                    "device",
                    f"one row per (profile, scale_factor, device); line {first_line[key]} "
                    "has this one",
                    ",".join(cells),
                )
            first_line[key] = line
            rows.append(row)
        return cls(tuple(rows), source)

    # ------------------------------------------------------------------ look-ups

    @property
    def profiles(self) -> tuple[str, ...]:
        """Every job type in the table, sorted, so an index into it is stable for one table."""
        return self._profiles

    def scale_factors(self, profile: str) -> tuple[int, ...]:
        """The GPU counts `profile` was measured at, ascending; empty for an unknown profile."""
        return self._scales.get(profile, ())

    def steps_per_s(self, profile: str, scale_factor: int, device: DeviceType) -> float | None:
        """Measured rate of `profile` on `scale_factor` devices of type `device`, or None.

        A row counts for `device` when its device name is the device's id, one of its aliases or
        its family (case-insensitively), in that order of preference: a row for the exact part
        beats a row for its family. None where the table has no row for any of them.
        """
        for name in (device.id, *device.aliases, device.family):
            rate = self._by_key.get((profile, scale_factor, _fold(name)))
            if rate is not None:
                return rate
        return None

    def speed_ratio(
        self, profile: str, scale_factor: int, reference: DeviceType, device: DeviceType
    ) -> float | None:
        """How many times faster `profile` runs on `device` than on `reference`.

        A run time measured on `reference` becomes ``run / ratio`` on `device`. None where
        either rate is missing or zero, since no finite ratio describes a job that cannot run.
        """
        on_reference = self.steps_per_s(profile, scale_factor, reference)
        on_device = self.steps_per_s(profile, scale_factor, device)
        if not on_reference or not on_device:
            return None
        return on_device / on_reference

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"ThroughputTable({self.source!r}, {len(self.rows)} rows)"


@functools.lru_cache(maxsize=1)
def default_throughput_table() -> ThroughputTable:
    """The table shipped with the package (Gavel, OSDI'20), parsed once per process."""
    path = resources.files("computility") / "data" / "throughput" / DEFAULT_TABLE
    text = path.read_text(encoding="utf-8")
    return ThroughputTable.from_csv_text(
        text, source=f"computility/data/throughput/{DEFAULT_TABLE}"
    )


# --------------------------------------------------------------------------- CSV parsing


def _parse_row(source: str, line: int, cells: list[str]) -> ThroughputRow:
    if len(cells) != len(COLUMNS):
        field_no = min(len(cells), len(COLUMNS)) + 1
        name = COLUMNS[field_no - 1] if field_no <= len(COLUMNS) else "extra field"
        raise FieldError(
            source,
            line,
            field_no,
            name,
            f"{len(COLUMNS)} comma-separated fields, as in the header",
            ",".join(cells),
        )
    profile, scale_text, device, steps_text = (cell.strip() for cell in cells)
    if not profile:
        raise FieldError(source, line, 1, "profile", "a job type name", cells[0])
    if not _DIGITS.fullmatch(scale_text) or int(scale_text) < 1:
        raise FieldError(source, line, 2, "scale_factor", "a positive integer", cells[1])
    if not _NAME.fullmatch(device):
        expected = "a device id, alias or family (letters, digits, '.', '_', '-')"
        raise FieldError(source, line, 3, "device", expected, cells[2])
    try:
        steps = float(steps_text)
    except ValueError:
        raise FieldError(source, line, 4, "steps_per_s", "a number", cells[3]) from None
    if not math.isfinite(steps) or steps < 0:
        raise FieldError(source, line, 4, "steps_per_s", "a finite number >= 0", cells[3])
    return ThroughputRow(profile, int(scale_text), device, steps)


def _row_problem(row: ThroughputRow) -> str | None:
    """What is wrong with a row built in code, in the words a file reader would use."""
    if not row.profile.strip():
        return "a row has an empty profile"
    if isinstance(row.scale_factor, bool) or row.scale_factor < 1:
        return f"'{row.profile}': scale factor must be a positive integer, got {row.scale_factor}"
    if not _NAME.fullmatch(row.device):
        return f"'{row.profile}': '{row.device}' is not a device name"
    if not math.isfinite(row.steps_per_s) or row.steps_per_s < 0:
        return f"'{row.profile}': steps_per_s must be finite and >= 0, got {row.steps_per_s}"
    return None
