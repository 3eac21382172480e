"""EASY backfilling (Lifka 1995), exactly as CONTRACT.md defines it.

The head task gets one reservation at its shadow time; any later task may jump ahead if it fits
now and either ends by the shadow time or uses only the processors that will still be spare then.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from computility.scheduler.queues.base import _EMPTY, PoolQueue


class EasyQueue(PoolQueue):
    """FCFS plus one reservation for the head and a single in-order backfill scan.

    A pass in which nothing was released (only arrivals) cannot change the head, its shadow time,
    or the verdict on tasks already scanned, since free and extra units only went down since. Such
    a pass scans just the new arrivals against the state the last scan ended with; the result is
    the one a full rescan would give, at a cost independent of the queue's length.
    """

    name = "easy"
    leaves_holes = True

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        # After a pass: ((shadow, extra) or None if not needed yet, tasks scanned); None after
        # a release, when the next pass must start from the head again.
        self._scan: tuple[tuple[float, int] | None, int] | None = None
        # The head's reservation outlives passes: while the same task heads the line and every
        # task ends when it said it would, its shadow time and extra units do not change (a
        # release at the expected time only turns units "free at the shadow time" into units
        # free now). (head task, shadow, extra), or None once a task ends early.
        self._held: tuple[int, float, int] | None = None

    def _on_release(self) -> None:
        self._scan = None

    def _on_early_end(self) -> None:
        self._held = None

    def _on_compact(self) -> None:
        self._scan = None

    def _reservation(self) -> tuple[float, int]:
        head = self._lt[self._q_head]
        held = self._held
        if held is not None and held[0] == head:
            return held[1], held[2]
        return self.shadow(self._ld[self._q_head])

    def shadow(self, need: int) -> tuple[float, int]:
        """Shadow time and extra units for a head task needing `need` units.

        The shadow time is the earliest expected end of a running task at which enough units are
        free, assuming running tasks end at start + requested time. Extra counts every unit free
        then (every task whose expected end is at or before the shadow time included) beyond
        `need`.
        """
        avail = self.free
        by_end = self._by_end
        r = len(by_end)
        i = 0
        while i < r:
            end, _, size = by_end[i]
            avail += size
            i += 1
            if avail >= need:
                while i < r and by_end[i][0] == end:
                    avail += by_end[i][2]
                    i += 1
                return end, avail - need
        raise ValueError(f"a head task of {need} units can never fit a pool of {self.capacity}")

    def schedule(self, now: float) -> NDArray[np.int64]:
        started = _EMPTY
        if self._scan is None:
            started = self._start_head_run(now)
            reservation: tuple[float, int] | None = None
            first = 1
        else:
            reservation, first = self._scan
        n = self._q_len
        free = self.free
        if n == 0:
            self._scan = None
            return started
        smallest = self.smallest_waiting()
        if free <= 0 or n <= first or smallest is None or smallest > free:
            self._scan = (reservation, n)
            return started
        picked: list[int] = []
        h = self._q_head
        candidates: Iterable[int]
        if n - first <= 8:
            # A short stretch to scan: scalar checks beat array dispatch.
            candidates = range(first, n)
        else:
            # One vector pass finds every task that could start with the units free now; the
            # loop below re-checks each against the units left by the starts before it.
            if reservation is None:
                reservation = self._reservation()
            shadow, extra = reservation
            a, b = h + first, h + n
            d = self._q_demand[a:b]
            ok = (d <= free) & (((self._q_req[a:b] + now) <= shadow) | (d <= extra))
            candidates = (ok.nonzero()[0] + first).tolist()
        ld, lr = self._ld, self._lr
        for j in candidates:
            d_j = ld[h + j]
            if d_j > free:
                continue
            if reservation is None:
                reservation = self._reservation()
            shadow, extra = reservation
            ends_by_shadow = now + lr[h + j] <= shadow
            if ends_by_shadow or d_j <= extra:
                free -= d_j
                if not ends_by_shadow:
                    reservation = (shadow, extra - d_j)
                picked.append(j)
                if free <= 0:
                    break
        # Backfills leave holes, so positions stay valid; without holes the line closes up.
        self._scan = (reservation, n if self.leaves_holes else n - len(picked))
        if reservation is not None:
            self._held = (self._lt[self._q_head], reservation[0], reservation[1])
        if not picked:
            return started
        backfilled = self._start(picked, now)
        if started.shape[0] == 0:
            return backfilled
        return np.concatenate((started, backfilled))
