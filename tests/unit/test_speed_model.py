"""How long a task takes on a device other than the one its run time was measured on.

The measured rates quoted here are Gavel's (OSDI'20) isolated throughputs, the rows of the
packaged table; the peaks are the spec-sheet figures of the device catalogue.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from computility.domain.devices import DeviceType, default_catalogue
from computility.domain.speed import SpeedModel, speed_factor
from computility.domain.throughput import ThroughputRow, ThroughputTable, default_throughput_table
from computility.domain.workload import Workload

RECOMMENDATION = "Recommendation (batch size 2048)"
K80_RECOMMENDATION = 10.441219687328084  # steps/s, one K80
V100_RECOMMENDATION = 7.469632060833725  # steps/s, one V100
RESNET_128 = "ResNet-50 (batch size 128)"  # Gavel: 0 steps/s on two K80s (does not fit)

FAST_CORE = DeviceType(
    id="FAST-CORE",
    name="fast core",
    kind="cpu",
    vendor="test",
    family="FASTCORE",
    unit="core",
    memory_gb=4.0,
    fp64=None,
    fp32=0.2,
    fp16=None,
    int8=None,
    tdp_w=5.0,
)
SLOW_CORE = DeviceType(
    id="SLOW-CORE",
    name="slow core",
    kind="cpu",
    vendor="test",
    family="SLOWCORE",
    unit="core",
    memory_gb=4.0,
    fp64=None,
    fp32=0.05,
    fp16=None,
    int8=None,
    tdp_w=5.0,
)


def device(name: str) -> DeviceType:
    return default_catalogue().get(name)


# ------------------------------------------------------------------ speed_factor


def test_a_task_without_a_reference_device_keeps_its_run_time_everywhere() -> None:
    table = default_throughput_table()
    for name in ("K80", "V100-32GB", "A100-80GB", "XEON-8380"):
        assert speed_factor(None, device(name), profile=RECOMMENDATION, table=table) == 1.0


def test_a_task_on_its_own_reference_device_keeps_its_run_time() -> None:
    assert speed_factor(device("K80"), device("K80"), profile=RECOMMENDATION) == 1.0


def test_cpu_run_time_scales_by_the_ratio_of_per_core_compute_units() -> None:
    # 0.2 CU per core against 0.05: four times as long on the slow core, a quarter on the fast.
    assert speed_factor(FAST_CORE, SLOW_CORE) == pytest.approx(4.0)
    assert speed_factor(SLOW_CORE, FAST_CORE) == pytest.approx(0.25)


def test_catalogue_cpus_compare_by_their_per_core_fp32_peaks() -> None:
    # Spec sheets: Xeon 8380 0.1472 TFLOPS FP32 per core, Kunpeng 920 0.0416.
    assert speed_factor(device("XEON-8380"), device("KUNPENG-920")) == pytest.approx(
        0.1472 / 0.0416
    )


def test_a_profiled_gpu_job_scales_by_measured_throughput_not_peak() -> None:
    table = default_throughput_table()
    factor = speed_factor(device("K80"), device("V100-32GB"), profile=RECOMMENDATION, table=table)
    # Gavel: the recommendation model is slower on a V100 than on a K80.
    assert factor == pytest.approx(K80_RECOMMENDATION / V100_RECOMMENDATION)
    assert factor > 1.0
    # The peaks alone (4.37 against 15.7 TFLOPS) would have called it 3.6x faster.
    assert speed_factor(device("K80"), device("V100-32GB")) == pytest.approx(4.37 / 15.7)


def test_a_measured_rate_of_zero_means_the_job_cannot_run_there() -> None:
    table = default_throughput_table()
    factor = speed_factor(
        device("V100-32GB"), device("K80"), profile=RESNET_128, devices=2, table=table
    )
    assert math.isinf(factor)


def test_without_a_profile_gpus_compare_by_their_peaks_at_the_tasks_precision() -> None:
    v100, a100 = device("V100-32GB"), device("A100-80GB")
    assert speed_factor(v100, a100) == pytest.approx(15.7 / 19.5)  # fp32 by default
    assert speed_factor(v100, a100, precision="fp16") == pytest.approx(125.0 / 312.0)


def test_a_profile_the_table_lacks_falls_back_to_the_peak_ratio() -> None:
    table = default_throughput_table()
    factor = speed_factor(device("K80"), device("V100-32GB"), profile="no such job", table=table)
    assert factor == pytest.approx(4.37 / 15.7)


def test_a_profile_measured_on_only_one_of_the_two_devices_falls_back_to_peaks() -> None:
    table = ThroughputTable((ThroughputRow("job", 1, "K80", 10.0),))
    assert speed_factor(
        device("K80"), device("A100-80GB"), profile="job", table=table
    ) == pytest.approx(4.37 / 19.5)


# ------------------------------------------------------------------ SpeedModel


def test_the_speed_model_gives_one_factor_per_task_and_pool() -> None:
    pools = [device("XEON-8380"), device("K80"), device("V100-32GB"), device("KUNPENG-920")]
    device_of = {d.id: d for d in default_catalogue()}
    w = Workload.from_columns(
        "mixed",
        ids=[1, 2, 3, 4, 5],
        submit=[0.0] * 5,
        run=[100.0] * 5,
        cpus=[1, 1, 1, 1, 4],
        gpu_milli=[1000, 1000, 2000, 1000, 0],
        ref_device=[0, 0, 1, -1, 2],
        ref_devices=("K80", "V100-32GB", "XEON-8380"),
        profile=[0, -1, 1, 0, -1],
        profiles=(RECOMMENDATION, RESNET_128),
    )
    model = SpeedModel(w, pools, device_of, default_throughput_table())
    inf = float("inf")
    # CPU pools never take a GPU task (and vice versa): their entry stays 1.
    assert model.of(0).tolist() == pytest.approx(
        [1.0, 1.0, K80_RECOMMENDATION / V100_RECOMMENDATION, 1.0]
    )
    assert model.of(1).tolist() == pytest.approx([1.0, 1.0, 4.37 / 15.7, 1.0])
    assert model.of(2).tolist()[1] == inf  # two-GPU ResNet measured at 0 on K80
    assert model.of(2).tolist()[2] == 1.0
    assert model.of(3).tolist() == [1.0, 1.0, 1.0, 1.0]  # no reference device
    assert model.of(4).tolist() == pytest.approx([1.0, 1.0, 1.0, 0.1472 / 0.0416])
    assert not model.exact


def test_tasks_of_one_kind_share_one_row_of_factors() -> None:
    pools = [FAST_CORE, SLOW_CORE]
    w = Workload.from_columns(
        "same",
        ids=list(range(6)),
        submit=[0.0] * 6,
        run=[10.0] * 6,
        ref_device=[0, 0, 1, 0, 1, -1],
        ref_devices=("FAST-CORE", "SLOW-CORE"),
    )
    model = SpeedModel(w, pools, {d.id: d for d in pools})
    assert model.factors.shape == (3, 2)
    rows = [model.of(t).tolist() for t in range(6)]
    assert rows == [[1.0, 4.0], [1.0, 4.0], [0.25, 1.0], [1.0, 4.0], [0.25, 1.0], [1.0, 1.0]]


def test_a_workload_with_no_reference_devices_is_exact() -> None:
    w = Workload.from_columns("plain", ids=[1, 2], submit=[0.0, 1.0], run=[5.0, 6.0])
    model = SpeedModel(w, [FAST_CORE, SLOW_CORE], {})
    assert model.exact
    assert np.array_equal(model.of(1), [1.0, 1.0])
