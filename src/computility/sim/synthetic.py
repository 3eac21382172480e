"""`--synthetic N`: a seeded workload drawn against a network, exactly as the contract defines it.

`synthetic_workload(n, network, seed)` draws every random choice from one
``numpy.random.default_rng(seed)`` in a fixed order, so the same (n, network, seed) always gives
the same tasks. The choices the contract leaves open, and how they are made here:

- **Mix.** Exactly ``round(0.6 n)`` CPU tasks, ``round(0.3 n)`` GPU tasks and the rest (about
  ``0.1 n``) data-heavy tasks, in random order. On a network without accelerators the GPU share
  becomes CPU tasks; a network without a CPU pool is refused (`ValueError`).
- **Run time.** Every task's run time is log-uniform on [1 min, 4 h]; ``requested`` equals it
  (users' estimates are exact). It is defined on a *reference device*: for a GPU task its own
  device type (the only one it may use); for a CPU or data-heavy task the fastest CPU core type
  (highest CU per core) among the CPU pools whose node holds its cores, i.e. its fastest
  feasible device. ``ref_device`` names that device, so a task placed on a slower CPU type
  runs longer there, by the ratio of CU per core (`computility.domain.speed`).
- **CPU tasks**: cores log-uniform on the integers 1..64 (``floor(exp(U(0, ln(cap + 1))))``),
  with ``cap`` = min(64, the largest node of any CPU pool), so every CPU task fits one node.
- **Nodes.** One node of a pool holds ``devices_per_node`` devices (cores for a CPU pool). A pool
  with ``devices_per_node == 1`` is taken as *not node-shaped*: one machine of interchangeable
  processors holding the whole pool, as ``--network single`` defines its site (see
  `node_capacity`). Every pool of the embedded and generated networks has nodes of 4 or more.
- **GPU tasks**: 1/2/4/8 devices with p = .70/.10/.15/.05 of one device type the network has,
  chosen with probability proportional to that type's total CU in the network (so each type is
  offered about the same share of its capacity); a count above the largest node of that type
  is cut to that node's size. ``gpu_types`` names exactly that one type; ``gpu_milli`` is
  1000 per device and ``cpus`` is 1 (host cores are not modelled).
- **Data-heavy tasks** are CPU-shaped tasks (cores and run time drawn as for CPU tasks) that
  read one dataset with ``residency: any`` (``data_local`` False, ``data_gb`` its size). There
  are ``ceil(n_data / 4)`` datasets named ``syn-ds-K`` (K from 0), each of a size log-uniform
  on [10, 500] GB with its one copy at a site chosen uniformly; each dataset is read by about
  four tasks (the task-to-dataset assignment is a shuffled round robin, so every dataset is
  read). The `Workload` only names datasets; `SyntheticWorkload.datasets` says where each one
  is (`SyntheticWorkload.dataset_sites` as a mapping) and
  `SyntheticWorkload.network_with_datasets` adds them to a network for placement.
- **Deadlines**: exactly ``round(0.3 n)`` tasks, chosen uniformly, get the absolute deadline
  ``submit + f * run`` with ``f`` uniform on [1.5, 4]; since ``run`` is on the task's fastest
  feasible device, that is 1.5-4x its fastest run time. The others have NaN.
- **Users**: each task's ``location`` is uniform over the network's demand locations
  (``locations`` = their ids); on a network without any it is `NO_INDEX` (-1).
- **Arrivals**: a Poisson process conditioned on n arrivals in [0, W] (n sorted uniform times),
  with the window ``W = offered CU-seconds / (0.8 x network CU)``. Offered CU-seconds are
  ``sum(cores x reference CU per core x run)`` over CPU and data tasks plus
  ``sum(devices x device CU x run)`` over GPU tasks; network CU is the sum of every pool's
  ``count x CU``. So the offered load over the window is 80 % of capacity by construction.
  Task ids are 1..n in arrival order; there is one tenant.
- **Header**: ``synthetic`` (n), ``seed``, ``network`` (its name), ``window_s`` and
  ``offered_load`` (as text), for reports and tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from computility.domain.network import Dataset, Network
from computility.domain.site import MILLI, Pool
from computility.domain.workload import ANY_GPU, NO_INDEX, Workload

CPU_SHARE = 0.60
GPU_SHARE = 0.30
DATA_SHARE = 0.10
TARGET_LOAD = 0.80
MAX_CORES = 64
RUN_MIN_S = 60.0
RUN_MAX_S = 4 * 3600.0
GPU_COUNTS = (1, 2, 4, 8)
GPU_COUNT_P = (0.70, 0.10, 0.15, 0.05)
DEADLINE_SHARE = 0.30
DEADLINE_MIN = 1.5
DEADLINE_MAX = 4.0
DATASET_MIN_GB = 10.0
DATASET_MAX_GB = 500.0
TASKS_PER_DATASET = 4
DATASET_PREFIX = "syn-ds-"

_CPU, _GPU, _DATA = 0, 1, 2


@dataclass(frozen=True, slots=True)
class SyntheticWorkload:
    """A synthetic workload and the datasets its data-heavy tasks read.

    Attributes:
        workload: the tasks; ``workload.datasets`` are the ids of `datasets`, in order.
        datasets: each ``syn-ds-K`` with its size and the one site holding it.
    """

    workload: Workload
    datasets: tuple[Dataset, ...]

    @property
    def dataset_sites(self) -> dict[str, str]:
        """Dataset id -> the id of the site that holds it."""
        return {d.id: d.sites[0] for d in self.datasets}

    def network_with_datasets(self, network: Network) -> Network:
        """`network` with these datasets added to its own (ids must not clash)."""
        return replace(network, datasets=network.datasets + self.datasets)


def node_capacity(pool: Pool) -> int:
    """Devices (cores for a CPU pool) one task needing one node may use in `pool`.

    ``devices_per_node`` where the pool is node-shaped; a pool with ``devices_per_node == 1`` is
    one machine of interchangeable processors (``--network single``), so the whole pool.
    """
    return pool.count if pool.devices_per_node == 1 else pool.devices_per_node


def synthetic_workload(n: int, network: Network, seed: int) -> SyntheticWorkload:
    """Draw `n` tasks against `network` with ``default_rng(seed)`` (see the module docstring).

    Raises:
        ValueError: `n` is not positive, or the network has no CPU pool.
    """
    if n <= 0:
        raise ValueError(f"a synthetic workload needs a positive number of tasks, got {n}")
    cpu_pools = [p for _, p in network.pools if p.is_cpu]
    if not cpu_pools:
        raise ValueError(f"network '{network.name}' has no CPU pool for synthetic CPU tasks")
    cap = min(MAX_CORES, max(node_capacity(p) for p in cpu_pools))
    # ref_cu[c]: CU per core of the fastest CPU type whose node holds c cores (c = 1..cap), and
    # ref_cpu[c] that type's row in `ref_devices` (the first such pool's type at equal speed).
    ref_cu = np.zeros(cap + 1)
    ref_cpu = np.zeros(cap + 1, np.int32)
    cpu_ids: list[str] = []
    for pool in cpu_pools:
        if pool.device.id not in cpu_ids:
            cpu_ids.append(pool.device.id)
        fits = min(cap, node_capacity(pool))
        faster = ref_cu[1 : fits + 1] < pool.device.cu
        ref_cu[1 : fits + 1] = np.where(faster, pool.device.cu, ref_cu[1 : fits + 1])
        ref_cpu[1 : fits + 1] = np.where(
            faster, cpu_ids.index(pool.device.id), ref_cpu[1 : fits + 1]
        )

    type_ids, type_cu, type_total, type_cap = _gpu_types(network)
    rng = np.random.default_rng(seed)

    n_gpu = round(GPU_SHARE * n) if type_ids else 0
    n_data = round(DATA_SHARE * n)
    n_cpu = n - n_gpu - n_data
    kind = rng.permutation(
        np.repeat(np.array([_CPU, _GPU, _DATA], np.int8), [n_cpu, n_gpu, n_data])
    )
    is_gpu = kind == _GPU
    is_data = kind == _DATA

    run = np.exp(rng.uniform(math.log(RUN_MIN_S), math.log(RUN_MAX_S), n))
    cores = np.floor(np.exp(rng.uniform(0.0, math.log(cap + 1), n))).astype(np.int64)
    cores = np.clip(cores, 1, cap)

    gpu_types = np.full(n, ANY_GPU, np.int32)
    gpu_count = np.zeros(n, np.int64)
    if type_ids:
        weights = np.array(type_total) / sum(type_total)
        chosen = rng.choice(len(type_ids), size=n, p=weights).astype(np.int32)
        count = rng.choice(np.array(GPU_COUNTS, np.int64), size=n, p=np.array(GPU_COUNT_P))
        count = np.minimum(count, np.array(type_cap, np.int64)[chosen])
        gpu_types = np.where(is_gpu, chosen, ANY_GPU).astype(np.int32)
        gpu_count = np.where(is_gpu, count, 0)
    cpus = np.where(is_gpu, 1, cores)

    datasets: tuple[Dataset, ...] = ()
    dataset = np.full(n, NO_INDEX, np.int32)
    data_gb = np.zeros(n)
    if n_data:
        n_ds = math.ceil(n_data / TASKS_PER_DATASET)
        sizes = np.exp(rng.uniform(math.log(DATASET_MIN_GB), math.log(DATASET_MAX_GB), n_ds))
        sizes = np.round(sizes, 3)
        holders = rng.integers(len(network.sites), size=n_ds)
        datasets = tuple(
            Dataset(f"{DATASET_PREFIX}{k}", float(sizes[k]), (network.sites[int(h)].id,))
            for k, h in enumerate(holders)
        )
        reads = rng.permutation(np.arange(n_data) % n_ds).astype(np.int32)
        dataset[is_data] = reads
        data_gb[is_data] = sizes[reads]

    with_deadline = np.zeros(n, np.bool_)
    with_deadline[rng.permutation(n)[: round(DEADLINE_SHARE * n)]] = True
    factor = rng.uniform(DEADLINE_MIN, DEADLINE_MAX, n)

    if network.demand:
        location = rng.integers(len(network.demand), size=n).astype(np.int32)
    else:
        location = np.full(n, NO_INDEX, np.int32)

    cu_rate = np.where(
        is_gpu, gpu_count * np.array([*type_cu, 0.0])[gpu_types], cores * ref_cu[cores]
    )
    offered = float(np.sum(cu_rate * run))
    capacity = sum(p.total_cu for _, p in network.pools)
    window = offered / (TARGET_LOAD * capacity)
    submit = np.sort(rng.uniform(0.0, window, n))
    deadline = np.where(with_deadline, submit + factor * run, np.nan)

    workload = Workload.from_columns(
        f"synthetic:{n}",
        ids=np.arange(1, n + 1, dtype=np.int64),
        submit=submit,
        run=run,
        cpus=cpus,
        gpu_milli=gpu_count * MILLI,
        gpu_types=gpu_types,
        gpu_type_sets=tuple((t,) for t in type_ids),
        deadline=deadline,
        header={
            "synthetic": str(n),
            "seed": str(seed),
            "network": network.name,
            "window_s": repr(window),
            "offered_load": repr(offered / (capacity * window)),
        },
        location=location,
        locations=tuple(d.id for d in network.demand),
        dataset=dataset,
        datasets=tuple(d.id for d in datasets),
        data_gb=data_gb,
        data_local=np.zeros(n, np.bool_),
        ref_device=np.where(is_gpu, len(cpu_ids) + gpu_types, ref_cpu[cores]).astype(np.int32),
        ref_devices=(*cpu_ids, *type_ids),
    )
    return SyntheticWorkload(workload, datasets)


def _gpu_types(network: Network) -> tuple[list[str], list[float], list[float], list[int]]:
    """Accelerator types in order of first pool: id, CU per device, total CU, largest node."""
    ids: list[str] = []
    cu: list[float] = []
    total: list[float] = []
    largest: list[int] = []
    for _, pool in network.pools:
        if pool.is_cpu:
            continue
        if pool.device.id not in ids:
            ids.append(pool.device.id)
            cu.append(pool.device.cu)
            total.append(0.0)
            largest.append(0)
        k = ids.index(pool.device.id)
        total[k] += pool.total_cu
        largest[k] = max(largest[k], node_capacity(pool))
    return ids, cu, total, largest


def reference_cu(workload: Workload, network: Network) -> NDArray[np.float64]:
    """CU per device (per core for CPU tasks) of each task's reference device, as drawn above.

    For a GPU task its one device type; for a CPU task the fastest CPU core type whose node
    holds its cores (NaN if none does).
    """
    out = np.full(len(workload), np.nan)
    cpu_pools = [p for _, p in network.pools if p.is_cpu]
    by_id = {p.device.id: p.device.cu for _, p in network.pools}
    for i in range(len(workload)):
        if workload.gpu_milli[i] > 0:
            out[i] = by_id[workload.gpu_type_sets[int(workload.gpu_types[i])][0]]
        else:
            fits = [p.device.cu for p in cpu_pools if node_capacity(p) >= workload.cpus[i]]
            if fits:
                out[i] = max(fits)
    return out
