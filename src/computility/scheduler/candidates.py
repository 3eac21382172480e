"""What placement computes and answers with: candidates and their estimates, the choice made,
the load view waits are estimated from, and the rules a task spec may add.

Value types only, shared by the scoring (`placement`), the feasibility filter (`feasibility`) and
the large-network rankings (`ranking`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from computility.domain.cost import Price
from computility.domain.workload import NO_INDEX

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Candidates:
    """Every candidate pool of one task with its estimates, in pool order.

    Attributes:
        pools: pool rows of the network.
        wait_s: estimated queue wait once the task is ready.
        transfer_s: time to bring its input data there.
        run_s: run time on that pool's device.
        hold_s: how long the task would be held for better hours (0: not held).
        finish_s: estimated finish, seconds after now: max(hold, transfer) + wait + run.
        price: money, energy and carbon of the run starting at the estimated start.
        moved_gb: data moved to run there.
        src_region: region the data comes from (`NO_INDEX` when nothing moves).
        latency_ms: one-way latency from the task's user.
        score: the policy's figure (lower is better); the chosen candidate has the least.
    """

    pools: IntArray
    wait_s: FloatArray
    transfer_s: FloatArray
    run_s: FloatArray
    hold_s: FloatArray
    finish_s: FloatArray
    price: Price
    moved_gb: FloatArray
    src_region: IntArray
    latency_ms: FloatArray
    score: FloatArray


@dataclass(frozen=True, slots=True)
class Ranking:
    """A cached best-first ranking and, per candidate pool, its figures for the reference run:
    (run s, money, carbon kg, latency ms)."""

    order: IntArray
    parts: dict[int, tuple[float, float, float, float]]


@dataclass(frozen=True, slots=True)
class Choice:
    """Where a task goes: its pool, when it may join the pool's queue, and what that took."""

    pool: int
    ready_s: float
    run_s: float
    moved_gb: float
    src_region: int
    held_s: float


@dataclass(frozen=True, slots=True)
class LoadView:
    """Per-pool load that waits are estimated from (arrays over every pool of the network)."""

    capacity: IntArray
    free: IntArray
    queued: IntArray
    backlog: FloatArray

    def wait_s(self, pools: IntArray, demand: IntArray) -> FloatArray:
        """Estimated wait of a newcomer needing `demand` units of each of `pools`."""
        room = self.free[pools] - self.queued[pools] >= demand
        fluid = self.backlog[pools] / self.capacity[pools]
        wait: FloatArray = np.where(room, 0.0, fluid)
        return wait

    def spare_share(self, pools: IntArray) -> FloatArray:
        share: FloatArray = (self.free[pools] - self.queued[pools]) / self.capacity[pools]
        return share


@dataclass(frozen=True, slots=True)
class SiteRules:
    """Constraints a task spec may put on where it runs (all optional)."""

    regions: frozenset[str] | None = None
    sites: frozenset[str] | None = None
    owners: frozenset[str] | None = None
    exclude_sites: frozenset[str] = frozenset()
    max_latency_ms: float | None = None


def pick_rows(price: Price, shape: tuple[int, ...], pick: tuple[IntArray, IntArray]) -> Price:
    """Each candidate's figures at its chosen hold row (row 0 when there is only one)."""
    if shape[0] == 1:
        return Price(*(np.broadcast_to(getattr(price, f), shape)[0] for f in Price.__slots__))
    return Price(*(np.broadcast_to(getattr(price, f), shape)[pick] for f in Price.__slots__))


NO_LOAD = LoadView(
    capacity=np.ones(1, np.int64), free=np.ones(1, np.int64), queued=np.zeros(1, np.int64),
    backlog=np.zeros(1),
)
"""Load for static rankings: only the baselines read it, and they are never ranked statically."""


def index_col(values: npt.NDArray[np.int32], n: int) -> npt.NDArray[np.int32]:
    """A per-task index column, or `NO_INDEX` for every task where the workload lacks it."""
    return values if values.shape[0] == n else np.full(n, NO_INDEX, np.int32)


def flag_col(values: BoolArray, n: int) -> BoolArray:
    """A per-task flag column, or False for every task where the workload lacks it."""
    return values if values.shape[0] == n else np.zeros(n, np.bool_)
