"""Stimuli that change the scheduler's state.

Events carry arrays of task indices rather than one object per task, so a burst of ten thousand
arrivals is one event and one scheduling pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class TasksArrived:
    """Tasks were submitted and are now waiting for a place."""

    tasks: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class TasksFinished:
    """Running tasks ended (completed, failed or were killed) and released their devices."""

    tasks: NDArray[np.int64]


Event = TasksArrived | TasksFinished
