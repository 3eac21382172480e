"""The state one pool's queue discipline works on: a waiting line and a running set.

Both are kept as numpy columns so a scheduling pass over a long queue is a handful of vector
operations rather than a Python loop per waiting task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_left, insort
from collections.abc import Sequence
from heapq import heappop, heappush
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_EMPTY = np.zeros(0, np.int64)
HOLE = np.iinfo(np.int64).max // 4
"""Demand of a slot whose task left the middle of the line: larger than any pool, so no scan
ever picks it."""


class PoolQueue(ABC):
    """A pool of `capacity` interchangeable units and the tasks waiting for and holding them.

    Units are whatever the pool counts (processor cores, or thousandths of an accelerator).
    Subclasses implement one discipline in `schedule`; everything else is shared.
    """

    name: str = ""
    starts_alone: bool = True
    """Whether a task arriving at an empty line that fits may start at once without a pass
    (`start_alone`): true of every discipline that keeps no plan beyond its line."""

    leaves_holes: bool = False
    """Whether tasks leaving the middle of the line leave a hole instead of closing the gap.

    Holes keep every other task's position, so a discipline may remember positions between
    passes; they are squeezed out only when they outnumber the waiting tasks.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"pool capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.free = int(capacity)
        # Waiting line, in queue order.
        self._q_task = np.zeros(64, np.int64)
        self._q_demand = np.zeros(64, np.int64)
        self._q_req = np.zeros(64, np.float64)
        # The same three columns as Python lists: scalar reads and writes of single tasks are
        # several times cheaper on lists, vector scans stay on the arrays.
        self._lt: list[int] = [0] * 64
        self._ld: list[int] = [0] * 64
        self._lr: list[float] = [0.0] * 64
        self._q_head = 0  # the line is [_q_head, _q_head + _q_len) of the buffers
        self._q_len = 0
        self._q_holes = 0
        self._q_total = 0
        # Multiset of waiting demands (count by size, plus a lazily cleaned min-heap of sizes),
        # so "could any waiting task fit in `free` units?" is answered without a scan.
        self._size_count: dict[int, int] = {}
        self._size_heap: list[int] = []
        # Running set: expected end and size by task, and the same ordered by expected end,
        # which is the order every backfilling decision reads it in.
        self._running: dict[int, tuple[float, int]] = {}
        self._by_end: list[tuple[float, int, int]] = []
        # Sums that let placement estimate a wait in O(1): unit-seconds asked for by the line,
        # and sum of size x expected end over the running set.
        self._q_work = 0.0
        self._end_units = 0.0

    # -- the waiting line ------------------------------------------------------------------

    @property
    def queued(self) -> NDArray[np.int64]:
        """Waiting tasks in queue order."""
        line = self._q_task[self._q_head : self._q_head + self._q_len]
        return line[self._qd != HOLE] if self._q_holes else line.copy()

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
        return self._q_len - self._q_holes

    def smallest_waiting(self) -> int | None:
        """The smallest demand of any waiting task, or None when none waits."""
        heap, counts = self._size_heap, self._size_count
        while heap and counts.get(heap[0], 0) == 0:
            heappop(heap)
        return heap[0] if heap else None

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
        if k == 1:
            self.enqueue_one(int(tasks[0]), int(demand[0]), float(requested[0]))
            return
        if int(demand.max()) > self.capacity:
            raise ValueError("a task wider than the pool reached its queue")
        at = self._room_for(k)
        need = at + k
        self._q_task[at:need] = tasks
        self._q_demand[at:need] = demand
        self._q_req[at:need] = requested
        self._lt[at:need] = tasks.tolist()
        self._ld[at:need] = sizes = demand.tolist()
        self._lr[at:need] = requested.tolist()
        self._q_work += float(np.dot(demand, requested))
        self._q_total += sum(sizes)
        self._q_len += k
        for size in sizes:
            self._count_size(size)
        self._on_enqueue(k)

    def enqueue_one(self, task: int, demand: int, requested: float) -> None:
        """Append one task: the common case, with no array built for it."""
        if demand > self.capacity:
            raise ValueError("a task wider than the pool reached its queue")
        at = self._room_for(1)
        self._q_task[at] = self._lt[at] = task
        self._q_demand[at] = self._ld[at] = demand
        self._q_req[at] = self._lr[at] = requested
        self._q_work += demand * requested
        self._q_total += demand
        self._q_len += 1
        self._count_size(demand)
        self._on_enqueue(1)

    def _count_size(self, size: int) -> None:
        counts = self._size_count
        c = counts.get(size, 0)
        if c == 0:
            heappush(self._size_heap, size)
        counts[size] = c + 1

    def _room_for(self, k: int) -> int:
        """Make room for `k` more slots at the back of the line; return the first one's index."""
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
                more = size - len(self._lt)
                self._lt.extend([0] * more)
                self._ld.extend([0] * more)
                self._lr.extend([0.0] * more)
        return h + self._q_len

    def _compact_line(self) -> None:
        """Move the line to the front of its buffers, squeezing out holes."""
        h, n = self._q_head, self._q_len
        if self._q_holes:
            keep = self._q_demand[h : h + n] != HOLE
            m = int(keep.sum())
            for arr in (self._q_task, self._q_demand, self._q_req):
                arr[:m] = arr[h : h + n][keep]
            self._q_len = m
            self._q_holes = 0
            self._q_head = 0
            self._mirror(m)
            self._on_compact()
            return
        for arr in (self._q_task, self._q_demand, self._q_req):
            arr[:n] = arr[h : h + n]
        self._q_head = 0
        self._mirror(n)

    def _mirror(self, n: int) -> None:
        """Copy the first `n` slots of the arrays into the lists."""
        self._lt[:n] = self._q_task[:n].tolist()
        self._ld[:n] = self._q_demand[:n].tolist()
        self._lr[:n] = self._q_req[:n].tolist()

    def _drop_queued(self, positions: Sequence[int]) -> None:
        """Remove the waiting tasks at these queue positions (ascending), keeping the order."""
        k = len(positions)
        if k == 0:
            return
        h, n = self._q_head, self._q_len
        if int(positions[-1]) == k - 1:
            # The common case, a prefix of the line started: move the head, copy nothing.
            h += k
            n -= k
            while n and self._q_holes and self._ld[h] == HOLE:
                h += 1
                n -= 1
                self._q_holes -= 1
            self._q_head, self._q_len = h, n
            return
        if self.leaves_holes:
            ld, qd = self._ld, self._q_demand
            for p in positions:
                ld[h + p] = qd[h + p] = HOLE
            self._q_holes += k
            if 2 * self._q_holes > n:
                self._compact_line()
            return
        # A few tasks from the middle: close each gap with slice moves, which are cheaper than a
        # boolean gather over the whole line.
        arrays = (self._q_task, self._q_demand, self._q_req)
        lists: tuple[list[int] | list[float], ...] = (self._lt, self._ld, self._lr)
        write = h + int(positions[0])
        for i in range(k):
            src = h + int(positions[i]) + 1
            stop = h + (int(positions[i + 1]) if i + 1 < k else n)
            length = stop - src
            if length > 0:
                for arr in arrays:
                    arr[write : write + length] = arr[src:stop]
                for lst in lists:
                    lst[write : write + length] = lst[src:stop]  # type: ignore[assignment]
                write += length
        self._q_len = n - k

    # -- the running set -------------------------------------------------------------------

    @property
    def running(self) -> NDArray[np.int64]:
        return np.fromiter(self._running, np.int64, len(self._running))

    def _start(self, positions: Sequence[int], now: float) -> NDArray[np.int64]:
        """Move the waiting tasks at queue `positions` (ascending) into the running set."""
        k = len(positions)
        if k == 0:
            return _EMPTY
        h = self._q_head
        q_task, q_demand, q_req = self._lt, self._ld, self._lr
        running, by_end = self._running, self._by_end
        counts = self._size_count
        started = np.empty(k, np.int64)
        taken = 0
        work = 0.0
        end_units = 0.0
        for i, pos in enumerate(positions):
            at = h + int(pos)
            task = q_task[at]
            size = q_demand[at]
            req = q_req[at]
            end = now + req
            running[task] = (end, size)
            insort(by_end, (end, task, size))
            counts[size] -= 1
            started[i] = task
            taken += size
            work += size * req
            end_units += size * end
        self._q_work -= work
        self._end_units += end_units
        self.free -= taken
        self._q_total -= taken
        self._drop_queued(positions)
        return started

    def start_alone(self, task: int, demand: int, requested: float, now: float) -> None:
        """Start `task` now: it arrived at an empty line and fits, so a pass would start it.

        The caller checks both conditions; skipping the line saves a placement on a large,
        lightly queued network most of its bookkeeping.
        """
        end = now + requested
        self._running[task] = (end, demand)
        insort(self._by_end, (end, task, demand))
        self._end_units += demand * end
        self.free -= demand
        self._on_compact()  # a remembered scan position refers to a line that has moved on

    def release(self, tasks: NDArray[np.int64] | Sequence[int], now: float) -> None:
        """Running tasks ended: give their units back."""
        running, by_end = self._running, self._by_end
        for task in tasks.tolist() if isinstance(tasks, np.ndarray) else tasks:
            end, size = running.pop(task)
            del by_end[bisect_left(by_end, (end, task, size))]
            self._end_units -= size * end
            self.free += size
            if end > now:
                self._on_early_end()
        self._on_release()

    @property
    def queued_work(self) -> float:
        """Unit-seconds the waiting line asks for (demand x requested time, summed)."""
        if not self._q_len - self._q_holes:
            self._q_work = 0.0  # drop accumulated rounding once the line is empty
        return self._q_work

    @property
    def running_end_units(self) -> float:
        """Sum of size x expected end over the running set."""
        if not self._running:
            self._end_units = 0.0
        return self._end_units

    def backlog(self, now: float) -> float:
        """Unit-seconds of work ahead of a newcomer: the line's plus the running set's remainder.

        Divided by capacity it is a fluid estimate of the wait, the cheap figure placement
        compares pools by; `expected_releases` gives the exact profile when one is wanted.
        """
        if not self._running:
            self._end_units = 0.0  # drop accumulated rounding once the set is empty
        if not self._q_len - self._q_holes:
            self._q_work = 0.0
        held = self.capacity - self.free
        return max(0.0, self._q_work) + max(0.0, self._end_units - now * held)

    def reorder(self, key: NDArray[np.int64]) -> bool:
        """Put the line in ascending ``key[task]`` order (stable); True if anything moved.

        Fair share changes the order of waiting tasks as tenants' usage changes; disciplines
        then see a line that was rebuilt, exactly as after holes are squeezed out.
        """
        if self._q_len - self._q_holes < 2:
            return False
        if self._q_holes or self._q_head:
            self._compact_line()
        n = self._q_len
        keys = key[self._q_task[:n]]
        if bool(np.all(keys[1:] >= keys[:-1])):
            return False
        order = np.argsort(keys, kind="stable")
        for arr in (self._q_task, self._q_demand, self._q_req):
            arr[:n] = arr[:n][order]
        self._mirror(n)
        self._on_reorder()
        return True

    def expected_releases(self) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Expected end (start + requested time) and size of each running task, by end time."""
        r = len(self._by_end)
        ends = np.fromiter((e for e, _, _ in self._by_end), np.float64, r)
        sizes = np.fromiter((d for _, _, d in self._by_end), np.int64, r)
        return ends, sizes

    # -- the discipline --------------------------------------------------------------------

    @abstractmethod
    def schedule(self, now: float) -> NDArray[np.int64]:
        """One scheduling pass at time `now`: start what the discipline allows, return it."""

    def _on_enqueue(self, count: int) -> None:
        """Hook for disciplines that keep derived state about the line."""

    def _on_compact(self) -> None:
        """Hook: holes were squeezed out, so remembered queue positions are void."""

    def _on_reorder(self) -> None:
        """Hook: the line was permuted, so remembered positions and plans are void."""
        self._on_compact()

    def _on_release(self) -> None:
        """Hook: units came back, so conclusions drawn from the last pass may no longer hold."""

    def _on_early_end(self) -> None:
        """Hook: a task ended before its requested time, so plans made on it are stale."""

    def _start_head_run(self, now: float) -> NDArray[np.int64]:
        """Start tasks from the front of the line while each fits: the FCFS step."""
        runs: list[NDArray[np.int64]] = []
        while self._q_len and self.free > 0:
            free = self.free
            demand = self._ld
            h, n = self._q_head, self._q_len
            k = 0
            while k < n:
                d = demand[h + k]
                if d > free:  # a hole stops the run too; the next round starts past it
                    break
                free -= d
                k += 1
            if k == 0:
                break
            runs.append(self._start(range(k), now))
        if not runs:
            return _EMPTY
        return runs[0] if len(runs) == 1 else np.concatenate(runs)


_Scalar = TypeVar("_Scalar", bound=np.generic)


def _grown(arr: NDArray[_Scalar], size: int) -> NDArray[_Scalar]:
    out = np.zeros(size, arr.dtype)
    out[: arr.shape[0]] = arr
    return out
