"""First come, first served: strict order, and a head that does not fit blocks everyone."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from computility.scheduler.queues.base import PoolQueue


class FcfsQueue(PoolQueue):
    """Strict arrival order; the head task that does not fit blocks all tasks behind it."""

    name = "fcfs"

    def schedule(self, now: float) -> NDArray[np.int64]:
        return self._start_head_run(now)
