"""What the scheduler asks its driver to do.

The driver (simulator or control plane) carries decisions out; the scheduler never performs I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class StartTasks:
    """Start these tasks now on pool `pool` of the site."""

    pool: int
    tasks: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class RejectTasks:
    """These tasks can never run here; `reason` says why in words a user understands."""

    tasks: NDArray[np.int64]
    reason: str


@dataclass(frozen=True, slots=True)
class WakeAt:
    """Call the scheduler again at `time` even if nothing else happens by then.

    Tasks held for cheaper or greener hours, or waiting for their data to arrive, join their
    pool's queue at a time no other event marks.
    """

    time: float


Decision = StartTasks | RejectTasks | WakeAt
