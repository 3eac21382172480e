"""The state one pool's queue discipline works on: a waiting line and a running set.

Both are kept as numpy columns so a scheduling pass over a long queue is a handful of vector
operations rather than a Python loop per waiting task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_EMPTY = np.zeros(0, np.int64)


class PoolQueue(ABC):
    """A pool of `capacity` interchangeable units and the tasks waiting for and holding them.

    Units are whatever the pool counts (processor cores, or thousandths of an accelerator).
    Subclasses implement one discipline in `schedule`; everything else is shared.
    """

    name: str = ""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"pool capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.free = int(capacity)
        # Waiting line, in queue order.
        self._q_task = np.zeros(64, np.int64)
        self._q_demand = np.zeros(64, np.int64)
        self._q_req = np.zeros(64, np.float64)
        self._q_head = 0  # the line is [_q_head, _q_head + _q_len) of the buffers
        self._q_len = 0
        self._q_total = 0
        # Running set, unordered; positions tracked for O(1) removal.
        self._r_task = np.zeros(64, np.int64)
        self._r_demand = np.zeros(64, np.int64)
        self._r_end = np.zeros(64, np.float64)
        self._r_len = 0
        self._r_pos: dict[int, int] = {}

    # -- the waiting line ------------------------------------------------------------------

    @property
    def queued(self) -> NDArray[np.int64]:
        """Waiting tasks in queue order (a view: copy before keeping it)."""
        return self._q_task[self._q_head : self._q_head + self._q_len]

    @property
    def _qd(self) -> NDArray[np.int64]:
        """Demand of the waiting tasks, in queue order (a view)."""
        return self._q_demand[self._q_head : self._q_head + self._q_len]

    @property
    def _qr(self) -> NDArray[np.float64]:
        """Requested time of the waiting tasks, in queue order (a view)."""
        return self._q_req[self._q_head : self._q_head + self._q_len]

    @property
    def queued_demand(self) -> int:
        """Units asked for by all waiting tasks together."""
        return self._q_total

    def __len__(self) -> int:
        return self._q_len

    def enqueue(
        self,
        tasks: NDArray[np.int64],
        demand: NDArray[np.int64],
        requested: NDArray[np.float64],
    ) -> None:
        """Append tasks at the back of the line, in the order given."""
        k = int(tasks.shape[0])
        if k == 0:
            return
        biggest = int(demand[0]) if k == 1 else int(demand.max())
        if biggest > self.capacity:
            raise ValueError("a task wider than the pool reached its queue")
        h = self._q_head
        need = h + self._q_len + k
        if need > self._q_task.shape[0]:
            if h > 0:
                self._compact_line()
                h = 0
                need = self._q_len + k
            if need > self._q_task.shape[0]:
                size = max(need, 2 * self._q_task.shape[0])
                self._q_task = _grown(self._q_task, size)
                self._q_demand = _grown(self._q_demand, size)
                self._q_req = _grown(self._q_req, size)
        at = h + self._q_len
        if k == 1:
            # One arrival is the common case; scalar stores avoid three array dispatches.
            self._q_task[at] = tasks[0]
            self._q_demand[at] = biggest
            self._q_req[at] = requested[0]
            self._q_total += biggest
        else:
            self._q_task[at:need] = tasks
            self._q_demand[at:need] = demand
            self._q_req[at:need] = requested
            self._q_total += int(demand.sum())
        self._q_len += k
        self._on_enqueue(k)

    def _compact_line(self) -> None:
        """Move the line to the front of its buffers, so appends reuse the space starts freed."""
        h, n = self._q_head, self._q_len
        for arr in (self._q_task, self._q_demand, self._q_req):
            arr[:n] = arr[h : h + n]
        self._q_head = 0

    def _drop_queued(self, positions: NDArray[np.int64]) -> None:
        """Remove the waiting tasks at these queue positions, keeping the others' order."""
        k = positions.shape[0]
        if k == 0:
            return
        h, n = self._q_head, self._q_len
        if int(positions[-1]) == k - 1:
            # The common case, a prefix of the line started: move the head, copy nothing.
            self._q_head = h + k
            self._q_len = n - k
            return
        keep = np.ones(n, np.bool_)
        keep[positions] = False
        m = n - k
        self._q_task[h : h + m] = self._q_task[h : h + n][keep]
        self._q_demand[h : h + m] = self._q_demand[h : h + n][keep]
        self._q_req[h : h + m] = self._q_req[h : h + n][keep]
        self._q_len = m

    # -- the running set -------------------------------------------------------------------

    @property
    def running(self) -> NDArray[np.int64]:
        return self._r_task[: self._r_len]

    def _start(self, positions: NDArray[np.int64], now: float) -> NDArray[np.int64]:
        """Move waiting tasks at `positions` (ascending) into the running set."""
        if positions.shape[0] == 0:
            return _EMPTY
        at = positions + self._q_head
        tasks = self._q_task[at]
        demand = self._q_demand[at]
        ends = now + self._q_req[at]
        k = tasks.shape[0]
        need = self._r_len + k
        if need > self._r_task.shape[0]:
            size = max(need, 2 * self._r_task.shape[0])
            self._r_task = _grown(self._r_task, size)
            self._r_demand = _grown(self._r_demand, size)
            self._r_end = _grown(self._r_end, size)
        sl = slice(self._r_len, need)
        self._r_task[sl] = tasks
        self._r_demand[sl] = demand
        self._r_end[sl] = ends
        for offset, task in enumerate(tasks.tolist()):
            self._r_pos[task] = self._r_len + offset
        self._r_len = need
        taken = int(demand.sum())
        self.free -= taken
        self._q_total -= taken
        self._drop_queued(positions)
        return tasks

    def release(self, tasks: NDArray[np.int64], now: float) -> None:
        """Running tasks ended: give their units back."""
        for task in tasks.tolist():
            pos = self._r_pos.pop(task)
            last = self._r_len - 1
            self.free += int(self._r_demand[pos])
            if self._r_end[pos] > now:
                self._on_early_end()
            self._on_release()
            if pos != last:
                moved = int(self._r_task[last])
                self._r_task[pos] = moved
                self._r_demand[pos] = self._r_demand[last]
                self._r_end[pos] = self._r_end[last]
                self._r_pos[moved] = pos
            self._r_len = last

    def expected_releases(self) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Expected end (start + requested time) and size of each running task, by end time."""
        ends = self._r_end[: self._r_len]
        order = np.argsort(ends, kind="stable")
        return ends[order], self._r_demand[: self._r_len][order]

    # -- the discipline --------------------------------------------------------------------

    @abstractmethod
    def schedule(self, now: float) -> NDArray[np.int64]:
        """One scheduling pass at time `now`: start what the discipline allows, return it."""

    def _on_enqueue(self, count: int) -> None:
        """Hook for disciplines that keep derived state about the line."""

    def _on_release(self) -> None:
        """Hook: units came back, so conclusions drawn from the last pass may no longer hold."""

    def _on_early_end(self) -> None:
        """Hook: a task ended before its requested time, so plans made on it are stale."""

    def _start_head_run(self, now: float) -> NDArray[np.int64]:
        """Start tasks from the front of the line while each fits: the FCFS step."""
        n = self._q_len
        if n == 0 or self.free <= 0:
            return _EMPTY
        free = self.free
        demand = self._q_demand
        h = self._q_head
        k = 0
        while k < n:
            d = int(demand[h + k])
            if d > free:
                break
            free -= d
            k += 1
        if k == 0:
            return _EMPTY
        return self._start(np.arange(k, dtype=np.int64), now)


_Scalar = TypeVar("_Scalar", bound=np.generic)


def _grown(arr: NDArray[_Scalar], size: int) -> NDArray[_Scalar]:
    out = np.zeros(size, arr.dtype)
    out[: arr.shape[0]] = arr
    return out
