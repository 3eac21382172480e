"""Gavel's job mix and cluster (OSDI'20), so its experiments can be rerun on this simulator.

Gavel (``stanford-futuredata/gavel``, ``scheduler/utils.py``, ``generate_job``) draws DNN-training
jobs whose run time depends on the device, and evaluates on 36 V100 + 36 P100 + 36 K80. Rerunning
that setting here tests heterogeneity-aware placement against published numbers: each task
carries its job type (``profile``) and the device its run time holds on (``ref_device``), and a
`ThroughputTable` says how fast the type runs elsewhere.

`gavel_workload(n, jobs_per_hour, seed)` draws every random choice from one
``numpy.random.default_rng(seed)``, one column at a time, in this order:

1. **Job type**: ``rng.integers(P, size=n)``, uniform over the table's P profiles (Gavel's 26
   job types for the packaged table).
2. **Long or short**: ``rng.random(n) >= 0.8`` marks the long jobs (p = 0.2), as Gavel's
   ``_generate_duration`` does.
3. **Duration exponent**: ``u = rng.random(n)``; duration = 60 x 10^(1.5 + 1.5 u) s for a short
   job (10^U(1.5, 3) minutes, about 32 min to 17 h) and 60 x 10^(3 + u) s for a long one
   (10^U(3, 4) minutes, about 17 h to 7 days). It is the run time on a V100, Gavel's reference
   worker type.
4. **Scale factor**: ``r = rng.random(n)`` -> 1 (r < 0.7), 2 (r < 0.8), 4 (r < 0.95), else 8:
   the "Philly distribution" p = .70/.10/.15/.05. It is drawn for every job, so the draws (and
   every other column) do not depend on which types are distributed or on `multi_gpu`.
5. **Inter-arrival gaps**: ``rng.exponential(3600 / jobs_per_hour, n - 1)``; the first job
   arrives at 0 and each later one a gap after the previous, as Gavel's
   ``scripts/utils/generate_trace.py`` does, so arrivals are a Poisson process of rate
   `jobs_per_hour` started by a job at time 0.

Choices Gavel leaves open, or makes differently, and how they are made here:

- **Type first, then size.** Gavel's simulator by default (``always_generate_scale_factor``)
  draws the scale factor first and then redraws the job type until it is one that can run
  distributed, which makes distributed types more frequent than the single-GPU ones. Here the
  type is drawn first, uniformly, and only then sized, as Gavel's trace generator and its
  ``always_generate_scale_factor=False`` path do: every job type is equally frequent, and the
  .70/.10/.15/.05 split holds among distributed types.
- **Sizes the table lacks.** A job gets the largest scale factor its type was measured at that
  is not above the drawn one (else the type's smallest): a type measured only on 1 GPU (A3C,
  CycleGAN, Recommendation) always gets 1, and a type measured at 1/2/8 whose draw is 4 gets 2.
  In the packaged table every distributed type has all of 1, 2, 4 and 8, so draws are kept.
- **Single-GPU experiments.** ``multi_gpu=False`` gives every job its type's smallest measured
  scale factor (1 for Gavel's types), matching Gavel runs without ``generate_multi_gpu_jobs``;
  the other columns are unchanged for the same seed.
- **Columns.** Task ids are 1..n in arrival order; ``run`` = ``requested`` = the V100 duration;
  one host core (``cpus`` = 1: host cores are not modelled); ``gpu_milli`` = 1000 per GPU; any
  accelerator type (`ANY_GPU`), since a throughput-aware scheduler chooses the type;
  ``ref_devices`` = (``V100-16GB``,), the 16 GB SXM2 V100s of the AWS p3 instances Gavel
  measured on; ``profiles`` = the table's profiles.

`gavel_site` and `gavel_network` build the cluster of Gavel's main results (``-c 36:36:36``).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from numpy.typing import NDArray

from computility.domain.devices import Catalogue, default_catalogue
from computility.domain.money import to_micro
from computility.domain.network import Network, Region
from computility.domain.site import MILLI, Pool, Site
from computility.domain.throughput import ThroughputTable, default_throughput_table
from computility.domain.workload import ANY_GPU, Workload
from computility.sim.single import lone_site

REFERENCE_DEVICE: Final = "V100-16GB"
"""The device every Gavel run time is measured on: its reference worker type, a p3 V100."""

LONG_JOB_P: Final = 0.2
SHORT_EXPONENT: Final = (1.5, 3.0)
LONG_EXPONENT: Final = (3.0, 4.0)
SCALE_FACTORS: Final = (1, 2, 4, 8)
SCALE_FACTOR_P: Final = (0.70, 0.10, 0.15, 0.05)

# Gavel's on-demand prices per GPU-hour (its cost figure,
# notebooks/figures/motivation/normalized_throughput_per_cost.ipynb), by pool: (pool, device, USD).
GAVEL_POOLS: Final = (
    ("v100", "V100-16GB", 2.85),
    ("p100", "P100-16GB", 1.68),
    ("k80", "K80", 0.52),
)
CNY_PER_USD: Final = 7.2
"""Exchange rate for Gavel's dollar prices; an estimate of the 2023-2024 rate, not a quote."""

GAVEL_DEVICES_PER_TYPE: Final = 36


def gavel_workload(
    n: int,
    jobs_per_hour: float,
    seed: int,
    table: ThroughputTable | None = None,
    *,
    multi_gpu: bool = True,
) -> Workload:
    """Draw `n` Gavel jobs arriving at `jobs_per_hour` with ``default_rng(seed)``.

    See the module docstring for the draws, their order and the choices made.

    Args:
        n: how many jobs.
        jobs_per_hour: the Poisson arrival rate (Gavel's lambda, in jobs per hour).
        seed: the one seed of every draw.
        table: the job types and the scale factors each was measured at; the packaged Gavel
            table if None.
        multi_gpu: size distributed jobs by the Philly distribution; False for one GPU each.

    Raises:
        ValueError: `n` not positive, a rate that is not a positive finite number, an empty
            table, or a (job type, scale factor) the workload may use that has no positive
            V100 rate (its V100 run time could not be carried to any other device).
    """
    if n <= 0:
        raise ValueError(f"a Gavel workload needs a positive number of jobs, got {n}")
    if not math.isfinite(jobs_per_hour) or jobs_per_hour <= 0:
        raise ValueError(f"jobs_per_hour must be a positive number, got {jobs_per_hour}")
    table = default_throughput_table() if table is None else table
    profiles = table.profiles
    if not profiles:
        raise ValueError(f"throughput table {table.source} has no job types")
    sizes = _size_of_draw(table, multi_gpu)

    rng = np.random.default_rng(seed)
    profile = rng.integers(len(profiles), size=n).astype(np.int32)
    is_long = rng.random(n) >= 1.0 - LONG_JOB_P
    u = rng.random(n)
    short_lo, short_hi = SHORT_EXPONENT
    long_lo, long_hi = LONG_EXPONENT
    exponent = np.where(
        is_long, long_lo + (long_hi - long_lo) * u, short_lo + (short_hi - short_lo) * u
    )
    run = 60.0 * np.power(10.0, exponent)
    drawn = np.searchsorted(np.cumsum(SCALE_FACTOR_P)[:-1], rng.random(n), side="right")
    count = sizes[profile, drawn]
    gaps = rng.exponential(3600.0 / jobs_per_hour, n - 1)
    submit = np.concatenate(([0.0], np.cumsum(gaps)))

    return Workload.from_columns(
        f"gavel:{n}",
        ids=np.arange(1, n + 1, dtype=np.int64),
        submit=submit,
        run=run,
        requested=run,
        cpus=np.ones(n, np.int64),
        gpu_milli=count * MILLI,
        gpu_types=np.full(n, ANY_GPU, np.int32),
        header={"generator": "gavel", "jobs_per_hour": repr(jobs_per_hour), "seed": str(seed)},
        ref_device=np.zeros(n, np.int32),
        ref_devices=(REFERENCE_DEVICE,),
        profile=profile,
        profiles=profiles,
    )


def _size_of_draw(table: ThroughputTable, multi_gpu: bool) -> NDArray[np.int64]:
    """GPUs a job of profile ``p`` gets for the scale-factor draw ``j``, as a (P, 4) array.

    Checked against the V100 rate once here, per table, rather than per job.
    """
    reference = default_catalogue().get(REFERENCE_DEVICE)
    sizes = np.zeros((len(table.profiles), len(SCALE_FACTORS)), np.int64)
    for p, name in enumerate(table.profiles):
        measured = table.scale_factors(name)
        for j, want in enumerate(SCALE_FACTORS if multi_gpu else (1,) * len(SCALE_FACTORS)):
            fitting = [s for s in measured if s <= want]
            size = max(fitting) if fitting else min(measured)
            if not table.steps_per_s(name, size, reference):
                raise ValueError(
                    f"throughput table {table.source} has no positive {REFERENCE_DEVICE} rate "
                    f"for '{name}' at {size} GPUs"
                )
            sizes[p, j] = size
    return sizes


def gavel_site(per_type: int = GAVEL_DEVICES_PER_TYPE, catalogue: Catalogue | None = None) -> Site:
    """Gavel's simulated cluster: `per_type` V100s, P100s and K80s in one site.

    Each pool is one machine of interchangeable devices (``devices_per_node`` 1, so an 8-GPU
    job fits any pool of 8 or more), as Gavel's simulator treats a worker type. Prices are
    Gavel's on-demand dollars per GPU-hour at `CNY_PER_USD`, divided by each device's CU so the
    site bills on the network's CU-hour scale and a device-hour costs what Gavel paid. PUE,
    electricity price and carbon intensity are the lone-site estimates of `sim.single`.

    Raises:
        ValueError: `per_type` is not positive.
    """
    catalogue = default_catalogue() if catalogue is None else catalogue
    pools = []
    for pool_id, device_id, usd_per_hour in GAVEL_POOLS:
        device = catalogue.get(device_id)
        price = to_micro(usd_per_hour * CNY_PER_USD / device.cu)
        pools.append(Pool(pool_id, device, per_type, price, devices_per_node=1))
    return lone_site("gavel", pools)


def gavel_network(site: Site) -> Network:
    """The one-site `Network` around `site`, named after its pool sizes (``gavel-36x3``).

    Pools of one size n give ``gavel-NxK`` for K pools; unequal pools are listed as Gavel's
    ``-c`` flag lists them (``gavel-36:36:12``).
    """
    counts = [pool.count for pool in site.pools]
    if len(set(counts)) == 1:
        name = f"gavel-{counts[0]}x{len(counts)}"
    else:
        name = "gavel-" + ":".join(str(c) for c in counts)
    region = Region(site.region, site.region, 0.0, 0.0)
    return Network(name=name, regions=(region,), sites=(site,), links=())
