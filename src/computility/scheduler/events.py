"""Stimuli that change the scheduler's state.

Events carry many task indices at once rather than one object per task, so a burst of ten
thousand arrivals is one event and one scheduling pass. Indices may be a numpy array (bulk
events) or any sequence of ints (a list or range: the cheap form for the common single task).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

TaskIds = NDArray[np.int64] | Sequence[int]


@dataclass(frozen=True, slots=True)
class TasksArrived:
    """Tasks were submitted and are now waiting for a place."""

    tasks: TaskIds


@dataclass(frozen=True, slots=True)
class TasksFinished:
    """Running tasks ended (completed, failed or were killed) and released their devices."""

    tasks: TaskIds


Event = TasksArrived | TasksFinished
