"""Seeded stand-ins for times a trace does not carry (``--arrivals poisson:RATE_PER_HOUR``).

Some published pod lists drop their timestamps; to replay them at all, arrivals (and, when they
are missing too, run times) are drawn from one generator seeded by ``--seed``, so the same
arguments always give the same workload.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from computility.domain.errors import UsageError

MIN_DRAWN_RUN_S = 60.0
MAX_DRAWN_RUN_S = 4 * 3600.0


def parse_arrivals(spec: str) -> float:
    """The rate in arrivals per hour of a ``poisson:RATE_PER_HOUR`` spec."""
    kind, sep, rate_text = spec.strip().partition(":")
    rate = math.nan
    if kind.strip().lower() == "poisson" and sep:
        try:
            rate = float(rate_text)
        except ValueError:
            rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise UsageError(
            f"--arrivals: expected poisson:RATE_PER_HOUR with a positive rate, got '{spec}'"
        )
    return rate


def poisson_submits(rng: np.random.Generator, n: int, rate_per_hour: float) -> NDArray[np.float64]:
    """Arrival times of a Poisson process started at time 0 (the first arrival is one
    exponential gap after 0, as in the process itself)."""
    gaps = rng.exponential(3600.0 / rate_per_hour, size=n)
    return np.cumsum(gaps)


def log_uniform_runs(rng: np.random.Generator, n: int) -> NDArray[np.float64]:
    """Run times log-uniform on [1 min, 4 h], the range ``--synthetic`` uses for CPU tasks."""
    low, high = math.log(MIN_DRAWN_RUN_S), math.log(MAX_DRAWN_RUN_S)
    return np.exp(rng.uniform(low, high, size=n))
