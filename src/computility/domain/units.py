"""Data sizes as users write them, turned into the one unit the network meters: GB (10^9 bytes).

CONTRACT.md ("Units") accepts powers of ten (KB, MB, GB, TB) and powers of two (KiB, MiB, GiB,
TiB); a bare number means GB. Keeping the parser in one place means a dataset in a network file
and a disk request in a task spec can never disagree about what "1TiB" is.
"""

from __future__ import annotations

import math
import re
from typing import Final

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*")
_BYTES: Final[dict[str, int]] = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
SIZE_UNITS: Final = "KB, MB, GB, TB, KiB, MiB, GiB or TiB"


def parse_size_gb(value: object) -> float:
    """A size (``500GB``, ``1.5 TiB``, or a bare number of GB) in GB.

    Units are case-insensitive (``gb`` is GB) but a bare ``B`` suffix is bytes.

    Raises:
        ValueError: not a non-negative finite number with one of the accepted units; the
            message says what was expected, for a reader to put next to the line.
    """
    if isinstance(value, bool):
        raise ValueError(f"a size such as 500GB ({SIZE_UNITS})")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("a non-negative size")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"a size such as 500GB ({SIZE_UNITS})")
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValueError(f"a size such as 500GB ({SIZE_UNITS})")
    number, unit = match.groups()
    factor = _BYTES.get(unit.upper() if unit else "GB")
    if factor is None:
        raise ValueError(f"a size unit of {SIZE_UNITS}")
    return float(number) * factor / 10**9
