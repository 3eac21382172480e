"""Decayed-usage fair share between tenants: who goes first when several wait.

Each tenant's usage is the CU-seconds its running tasks have consumed, decayed with a half-life
(as Slurm's multifactor priority does with ``PriorityDecayHalfLife``), so what a tenant used last
week weighs half of what it used just now. Tenants have equal shares; the tenant with the least
decayed usage ranks first. A tenant that has run nothing ranks ahead of one with 10,000 tasks
queued and running, which is what keeps a large tenant from starving a small one.

Usage accrues continuously while tasks run: between two events a tenant holding R CU accrues
``R * H / ln 2 * (1 - 2^(-dt/H))`` (the exact integral of a constant rate under decay).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

DEFAULT_HALF_LIFE_S = 7 * 24 * 3600.0
"""Slurm's default ``PriorityDecayHalfLife`` (7 days), a figure operators already reason in."""


class FairShare:
    """Decayed usage per tenant and the ranking it gives."""

    def __init__(self, tenants: int, half_life_s: float = DEFAULT_HALF_LIFE_S) -> None:
        if tenants <= 0:
            raise ValueError("fair share needs at least one tenant")
        if half_life_s <= 0:
            raise ValueError(f"half-life must be positive, got {half_life_s}")
        self.half_life_s = float(half_life_s)
        self.usage = np.zeros(tenants)
        self.rate = np.zeros(tenants)  # CU held right now by each tenant's running tasks
        self._at = 0.0
        self._rank = np.arange(tenants, dtype=np.int64)

    def advance(self, now: float) -> None:
        """Accrue and decay usage up to `now`."""
        dt = now - self._at
        if dt <= 0:
            return
        h = self.half_life_s
        lost = -math.expm1(-dt / h * math.log(2.0))  # 1 - 2^(-dt/h), exact for small dt
        self.usage = self.usage * (1.0 - lost) + self.rate * (h / math.log(2.0)) * lost
        self._at = now

    def started(self, tenant: int, cu: float, now: float) -> None:
        """A task of `tenant` holding `cu` CU started at `now`."""
        self.advance(now)
        self.rate[tenant] += cu

    def finished(self, tenant: int, cu: float, now: float) -> None:
        """A task of `tenant` holding `cu` CU ended at `now`."""
        self.advance(now)
        self.rate[tenant] = max(0.0, self.rate[tenant] - cu)

    def ranks(self) -> NDArray[np.int64]:
        """Rank of each tenant (0 first): least decayed usage first, ties by tenant index."""
        order = np.lexsort((np.arange(self.usage.shape[0]), self.usage))
        rank = np.empty_like(order)
        rank[order] = np.arange(order.shape[0])
        return rank
