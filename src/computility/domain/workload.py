"""A workload: many tasks held as parallel numpy arrays.

Traces of hundreds of thousands of tasks are replayed in seconds only if per-task state is kept as
columns rather than objects. Every trace reader produces a `Workload`; the simulator consumes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

ANY_GPU = -1
"""`gpu_types` value of a task that accepts any accelerator."""

NO_INDEX = -1
"""`location` / `dataset` value of a task with no user location / no input dataset."""


@dataclass(frozen=True, slots=True)
class Workload:
    """Tasks in (submit time, id) order, the order the queue disciplines rely on.

    Attributes:
        name: where the tasks came from (a path, or ``synthetic:N``).
        ids: the trace's own job ids.
        submit: submit time, seconds after simulated time 0.
        run: actual run time in seconds (> 0).
        requested: requested run time (the user's estimate), never below `run`.
        cpus: processor cores needed (for GPU tasks, the host cores the trace asked for).
        gpu_milli: thousandths of an accelerator; 0 for a CPU task, 1000 per whole device,
            below 1000 for a fractional share of one device.
        gpu_types: index into `gpu_type_sets` of the accelerator ids allowed, or `ANY_GPU`.
        gpu_type_sets: each a tuple of catalogue ids.
        tenant: index into `tenants`.
        tenants: tenant names (one entry, ``default``, when the input has none).
        deadline: absolute deadline in seconds of simulated time; NaN where there is none.
        lines: 1-based physical line of each task's record in its file (0 when generated).
        skipped: records read but not simulated (zero run time or size, never scheduled).
        censored: tasks whose run time the trace truncated (still running at its end).
        header: facts from the file header, e.g. SWF ``MaxProcs``.
        location: index into `locations` of the user location each task is submitted from, or
            `NO_INDEX`.
        locations: user location ids (the network's demand locations; empty when none).
        dataset: index into `datasets` of the dataset each task reads, or `NO_INDEX`.
        datasets: dataset ids; the workload only names them, a network says where they are.
        data_gb: GB (10^9 bytes) of input data each task reads; 0 where none.
        data_local: True where the input's residency is ``local`` (the data may not move, so
            the task runs only where a copy is); False for ``residency: any``.
        ref_device: index into `ref_devices` of the device `run` was measured on, or
            `NO_INDEX` where the run time holds on any device (a trace of one machine).
        ref_devices: catalogue ids.
        profile: index into `profiles` of the task's job type in a measured throughput table
            (``resources.profile``), or `NO_INDEX`.
        profiles: job type names.

    The columns filled with defaults by `from_columns` are empty arrays when a `Workload` is
    built directly without them; every per-task column built by `from_columns` has one entry
    per task.
    """

    name: str
    ids: NDArray[np.int64]
    submit: NDArray[np.float64]
    run: NDArray[np.float64]
    requested: NDArray[np.float64]
    cpus: NDArray[np.int64]
    gpu_milli: NDArray[np.int64]
    gpu_types: NDArray[np.int32]
    gpu_type_sets: tuple[tuple[str, ...], ...] = ()
    tenant: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    tenants: tuple[str, ...] = ("default",)
    deadline: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    lines: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    skipped: int = 0
    censored: int = 0
    header: dict[str, str] = field(default_factory=dict)
    location: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    locations: tuple[str, ...] = ()
    dataset: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    datasets: tuple[str, ...] = ()
    data_gb: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    data_local: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    ref_device: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    ref_devices: tuple[str, ...] = ()
    profile: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    profiles: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def is_gpu(self) -> NDArray[np.bool_]:
        """Tasks that need an accelerator."""
        return self.gpu_milli > 0

    @classmethod
    def from_columns(
        cls,
        name: str,
        *,
        ids: NDArray[np.int64] | list[int],
        submit: NDArray[np.float64] | list[float],
        run: NDArray[np.float64] | list[float],
        requested: NDArray[np.float64] | list[float] | None = None,
        cpus: NDArray[np.int64] | list[int] | None = None,
        gpu_milli: NDArray[np.int64] | list[int] | None = None,
        gpu_types: NDArray[np.int32] | list[int] | None = None,
        gpu_type_sets: tuple[tuple[str, ...], ...] = (),
        tenant: NDArray[np.int32] | list[int] | None = None,
        tenants: tuple[str, ...] = ("default",),
        deadline: NDArray[np.float64] | list[float] | None = None,
        lines: NDArray[np.int64] | list[int] | None = None,
        skipped: int = 0,
        censored: int = 0,
        header: dict[str, str] | None = None,
        location: NDArray[np.int32] | list[int] | None = None,
        locations: tuple[str, ...] = (),
        dataset: NDArray[np.int32] | list[int] | None = None,
        datasets: tuple[str, ...] = (),
        data_gb: NDArray[np.float64] | list[float] | None = None,
        data_local: NDArray[np.bool_] | list[bool] | None = None,
        ref_device: NDArray[np.int32] | list[int] | None = None,
        ref_devices: tuple[str, ...] = (),
        profile: NDArray[np.int32] | list[int] | None = None,
        profiles: tuple[str, ...] = (),
    ) -> Workload:
        """Build a workload from columns, filling defaults and sorting by (submit, id).

        The sort is stable, so records with equal (submit, id) keep file order.
        """
        ids_a = np.asarray(ids, dtype=np.int64)
        n = ids_a.shape[0]
        submit_a = np.asarray(submit, dtype=np.float64)
        run_a = np.asarray(run, dtype=np.float64)
        req_a = run_a.copy() if requested is None else np.asarray(requested, dtype=np.float64)
        req_a = np.maximum(req_a, run_a)
        cpus_a = np.ones(n, np.int64) if cpus is None else np.asarray(cpus, dtype=np.int64)
        gm_a = np.zeros(n, np.int64) if gpu_milli is None else np.asarray(gpu_milli, np.int64)
        gt_a = (
            np.full(n, ANY_GPU, np.int32)
            if gpu_types is None
            else np.asarray(gpu_types, dtype=np.int32)
        )
        ten_a = np.zeros(n, np.int32) if tenant is None else np.asarray(tenant, dtype=np.int32)
        dl_a = np.full(n, np.nan) if deadline is None else np.asarray(deadline, np.float64)
        ln_a = np.zeros(n, np.int64) if lines is None else np.asarray(lines, dtype=np.int64)
        loc_a = (
            np.full(n, NO_INDEX, np.int32) if location is None else np.asarray(location, np.int32)
        )
        ds_a = np.full(n, NO_INDEX, np.int32) if dataset is None else np.asarray(dataset, np.int32)
        gb_a = np.zeros(n) if data_gb is None else np.asarray(data_gb, dtype=np.float64)
        local_a = np.zeros(n, np.bool_) if data_local is None else np.asarray(data_local, np.bool_)
        no_index = np.full(n, NO_INDEX, np.int32)
        ref_a = no_index if ref_device is None else np.asarray(ref_device, np.int32)
        prof_a = no_index if profile is None else np.asarray(profile, np.int32)
        order = np.lexsort((ids_a, submit_a))
        return cls(
            name=name,
            ids=ids_a[order],
            submit=submit_a[order],
            run=run_a[order],
            requested=req_a[order],
            cpus=cpus_a[order],
            gpu_milli=gm_a[order],
            gpu_types=gt_a[order],
            gpu_type_sets=gpu_type_sets,
            tenant=ten_a[order],
            tenants=tenants,
            deadline=dl_a[order],
            lines=ln_a[order],
            skipped=skipped,
            censored=censored,
            header=dict(header or {}),
            location=loc_a[order],
            locations=locations,
            dataset=ds_a[order],
            datasets=datasets,
            data_gb=gb_a[order],
            data_local=local_a[order],
            ref_device=ref_a[order],
            ref_devices=ref_devices,
            profile=prof_a[order],
            profiles=profiles,
        )
