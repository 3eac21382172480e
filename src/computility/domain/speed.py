"""How long a task takes on a device other than the one its run time was measured on.

A user states a run time on one device (``resources.estimate`` on ``estimate_on``); a trace
records it on the machine it ran on. Placement needs it on every candidate pool, so one rule
turns the first into the second everywhere:

1. a task whose job type (``resources.profile``) a measured throughput table covers on both the
   reference device and the candidate, at the task's GPU count, scales by the measured ratio of
   steps per second (Gavel's table: a Recommendation job is *slower* on a V100 than on a K80);
2. otherwise by the ratio of spec-sheet peaks at the task's precision (per core for CPUs);
   a measured rate of zero means the job cannot run on that device (infinite factor);
3. a task with no reference device (a trace of one machine) takes its run time everywhere.

The factor depends only on (reference device, profile, device count, precision, candidate
device), so it is computed once per distinct combination and looked up per task.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from computility.domain.devices import DeviceType
from computility.domain.throughput import ThroughputTable
from computility.domain.workload import NO_INDEX, Workload

DEFAULT_PRECISION = "fp32"


def speed_factor(
    reference: DeviceType | None,
    device: DeviceType,
    *,
    profile: str | None = None,
    devices: int = 1,
    precision: str = DEFAULT_PRECISION,
    table: ThroughputTable | None = None,
) -> float:
    """Run time on `device` divided by run time on `reference` (the rules of the module)."""
    if reference is None or reference.id == device.id:
        return 1.0
    if profile is not None and table is not None:
        if table.steps_per_s(profile, devices, device) == 0.0:
            return float("inf")  # measured as unable to run there (e.g. out of memory)
        ratio = table.speed_ratio(profile, devices, reference, device)
        if ratio is not None and ratio > 0:
            return 1.0 / ratio
    return reference.peak(precision) / device.peak(precision)


class SpeedModel:
    """Per-task run-time factors on each pool of a network, shared by scoring and the replay.

    Attributes:
        task_class: per task, the row of `factors` that holds its factors.
        factors: (classes x pools) run-time multipliers.
    """

    def __init__(
        self,
        workload: Workload,
        pool_devices: Sequence[DeviceType],
        device_of: dict[str, DeviceType],
        table: ThroughputTable | None = None,
        precision: str = DEFAULT_PRECISION,
    ) -> None:
        n = len(workload)
        ref = _column(workload.ref_device, n)
        prof = _column(workload.profile, n)
        count = np.maximum(workload.gpu_milli // 1000, 1)
        keys = np.stack((ref.astype(np.int64), prof.astype(np.int64), count), axis=1)
        if n:
            uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        else:
            uniq, inverse = np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
        # The factor depends on the pool's device type only: compute it once per distinct type
        # (a few dozen) and spread it to the pools (thousands) by index.
        kinds: dict[str, int] = {}
        types: list[DeviceType] = []
        for device in pool_devices:
            if device.id not in kinds:
                kinds[device.id] = len(types)
                types.append(device)
        column = np.fromiter((kinds[d.id] for d in pool_devices), np.int64, len(pool_devices))
        per_type = np.ones((uniq.shape[0], len(types)))
        for row, (r, p, c) in enumerate(uniq.tolist()):
            if r == NO_INDEX:
                continue
            reference = device_of[workload.ref_devices[r]]
            profile = workload.profiles[p] if p != NO_INDEX else None
            for col, device in enumerate(types):
                if device.is_accelerator != reference.is_accelerator:
                    continue  # never feasible; leave 1 so no division by a CPU's peak
                per_type[row, col] = speed_factor(
                    reference, device, profile=profile, devices=c, precision=precision,
                    table=table,
                )
        factors = per_type[:, column]
        self.task_class: NDArray[np.int64] = inverse.reshape(-1).astype(np.int64)
        self.factors: NDArray[np.float64] = factors
        self.exact = bool(np.all(factors == 1.0))
        """True when every task takes its stated run time everywhere (no scaling at all)."""

    def of(self, task: int) -> NDArray[np.float64]:
        """Run-time factor of `task` on every pool."""
        row: NDArray[np.float64] = self.factors[self.task_class[task]]
        return row


def _column(values: NDArray[np.int32], n: int) -> NDArray[np.int32]:
    return values if values.shape[0] == n else np.full(n, NO_INDEX, np.int32)
