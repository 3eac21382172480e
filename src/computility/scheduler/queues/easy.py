"""EASY backfilling (Lifka 1995), exactly as CONTRACT.md defines it.

The head task gets one reservation at its shadow time; any later task may jump ahead if it fits
now and either ends by the shadow time or uses only the processors that will still be spare then.
"""

from __future__ import annotations

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

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._scan: tuple[float, int, int] | None = None  # (shadow, extra, scanned count)

    def _on_release(self) -> None:
        self._scan = None

    def shadow(self, need: int) -> tuple[float, int]:
        """Shadow time and extra units for a head task needing `need` units.

        The shadow time is the earliest expected end of a running task at which enough units are
        free, assuming running tasks end at start + requested time. Extra counts every unit free
        then (every task whose expected end is at or before the shadow time included) beyond
        `need`.
        """
        ends, sizes = self.expected_releases()
        cum = self.free + np.cumsum(sizes)
        k = int(np.searchsorted(cum, need, side="left"))
        shadow = float(ends[k])
        upto = int(np.searchsorted(ends, shadow, side="right"))
        extra = self.free + int(sizes[:upto].sum()) - need
        return shadow, extra

    def schedule(self, now: float) -> NDArray[np.int64]:
        scan = self._scan
        started = _EMPTY
        if scan is None:
            started = self._start_head_run(now)
            n = self._q_len
            if n == 0:
                return started
            if self.free <= 0:
                # Nothing can start until units come back, and that resets the scan.
                self._scan = (0.0, 0, n)
                return started
            shadow, extra = self.shadow(int(self._qd[0]))
            first = 1
            if n == 1:
                self._scan = (shadow, extra, n)
                return started
        else:
            shadow, extra, first = scan
            n = self._q_len
            if self.free <= 0 or n <= first:
                self._scan = (shadow, extra, n)
                return started
        free = self.free
        picked: list[int] = []
        if n - first <= 8:
            # A few new arrivals: scalar checks beat array dispatch.
            qd, qr = self._qd, self._qr
            for j in range(first, n):
                d = int(qd[j])
                if d <= free:
                    ends_by_shadow = now + float(qr[j]) <= shadow
                    if ends_by_shadow or d <= extra:
                        free -= d
                        if not ends_by_shadow:
                            extra -= d
                        picked.append(j)
                        if free <= 0:
                            break
        else:
            demand = self._qd[first:]
            ends_by_shadow_all = (now + self._qr[first:]) <= shadow
            fits = (demand <= free) & (ends_by_shadow_all | (demand <= extra))
            # Free and extra only shrink as tasks start, so later checks are on this subset.
            for j in np.flatnonzero(fits).tolist():
                d = int(demand[j])
                if d > free:
                    continue
                ends_by_shadow = bool(ends_by_shadow_all[j])
                if not ends_by_shadow:
                    if d > extra:
                        continue
                    extra -= d
                free -= d
                picked.append(first + j)
                if free <= 0:
                    break
        self._scan = (shadow, extra, n - len(picked))
        if not picked:
            return started
        backfilled = self._start(np.asarray(picked, np.int64), now)
        if started.shape[0] == 0:
            return backfilled
        return np.concatenate((started, backfilled))
