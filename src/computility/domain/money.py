"""Money as integers of micro-units, so sums of many small charges never drift.

JSON and tables show money as a decimal number of the currency (CONTRACT.md, "Units").
"""

from __future__ import annotations

MICRO = 1_000_000
DEFAULT_CURRENCY = "CNY"


def to_micro(amount: float) -> int:
    """Currency units -> micro-units, rounded half away from zero."""
    scaled = amount * MICRO
    return int(scaled + 0.5) if scaled >= 0 else -int(-scaled + 0.5)


def from_micro(micro: int) -> float:
    """Micro-units -> a decimal number of currency units, exact to the micro-unit."""
    return round(micro / MICRO, 6)
