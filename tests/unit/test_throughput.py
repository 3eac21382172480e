"""Specification of the measured throughput table: what a job type achieves on each device."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from computility.domain.devices import DeviceType, default_catalogue
from computility.domain.errors import BadInput, FieldError
from computility.domain.throughput import (
    ThroughputRow,
    ThroughputTable,
    default_throughput_table,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "src" / "computility" / "data" / "throughput" / "gavel_osdi20.csv"
SHARED_LONG = Path("gpu_throughput_tables") / "gavel_osdi20" / "isolated_throughputs_long.csv"
RESNET50 = "ResNet-50 (batch size 64)"
HEADER = "profile,scale_factor,device,steps_per_s\n"


def device(name: str) -> DeviceType:
    return default_catalogue().get(name)


def gavel_long_rates(path: Path) -> dict[tuple[str, int, str], float]:
    """Gavel's isolated rates keyed by (job type, scale factor, Gavel worker type)."""
    with path.open(encoding="utf-8") as f:
        return {
            (r["job_type"], int(r["scale_factor_gpus"]), r["gpu_type"]): float(r["steps_per_sec"])
            for r in csv.DictReader(f)
        }


def test_the_packaged_table_holds_gavels_26_job_types() -> None:
    table = default_throughput_table()
    assert len(table.profiles) == 26
    assert list(table.profiles) == sorted(table.profiles)
    assert RESNET50 in table.profiles
    assert len(table) == 249


def test_distributed_job_types_are_measured_at_1_2_4_8_gpus_the_others_at_1() -> None:
    table = default_throughput_table()
    single = {p for p in table.profiles if table.scale_factors(p) == (1,)}
    assert single == {"A3C", "CycleGAN"} | {
        f"Recommendation (batch size {b})" for b in (512, 1024, 2048, 4096, 8192)
    }
    for profile in set(table.profiles) - single:
        assert table.scale_factors(profile) == (1, 2, 4, 8)
    assert table.scale_factors("no such job") == ()


def test_resnet50_on_one_gpu_runs_at_gavels_measured_rates() -> None:
    table = default_throughput_table()
    assert table.steps_per_s(RESNET50, 1, device("K80")) == pytest.approx(0.6190282202246573)
    assert table.steps_per_s(RESNET50, 1, device("P100-16GB")) == pytest.approx(2.6194694075770055)
    assert table.steps_per_s(RESNET50, 1, device("V100-16GB")) == pytest.approx(4.394774823323071)


def test_a_family_row_counts_for_every_variant_of_the_family() -> None:
    table = default_throughput_table()
    both = {table.steps_per_s(RESNET50, 8, device(v)) for v in ("V100-16GB", "V100-32GB")}
    assert len(both) == 1 and None not in both
    assert {d.id for d in default_catalogue().match("V100")} == {"V100-16GB", "V100-32GB"}


def test_a_row_for_the_exact_part_beats_a_row_for_its_family() -> None:
    table = ThroughputTable(
        (ThroughputRow("job", 1, "V100", 1.0), ThroughputRow("job", 1, "v100-32gb", 2.0))
    )
    assert table.steps_per_s("job", 1, device("V100-32GB")) == 2.0
    assert table.steps_per_s("job", 1, device("V100-16GB")) == 1.0


def test_an_alias_names_the_device_too() -> None:
    table = ThroughputTable((ThroughputRow("job", 1, "v100m16", 3.0),))
    assert table.steps_per_s("job", 1, device("V100-16GB")) == 3.0
    assert table.steps_per_s("job", 1, device("V100-32GB")) is None


def test_recommendation_runs_slower_on_a_v100_than_on_a_k80() -> None:
    table = default_throughput_table()
    ratio = table.speed_ratio(
        "Recommendation (batch size 1024)", 1, reference=device("K80"), device=device("V100-16GB")
    )
    assert ratio is not None and ratio < 1
    resnet = table.speed_ratio(RESNET50, 1, reference=device("K80"), device=device("V100-16GB"))
    assert resnet == pytest.approx(4.394774823323071 / 0.6190282202246573)


def test_a_missing_profile_scale_or_device_has_no_rate_and_no_ratio() -> None:
    table = default_throughput_table()
    k80, v100 = device("K80"), device("V100-16GB")
    assert table.steps_per_s("no such job", 1, k80) is None
    assert table.steps_per_s("A3C", 2, k80) is None
    assert table.steps_per_s(RESNET50, 1, device("A100-80GB")) is None
    assert table.speed_ratio("no such job", 1, k80, v100) is None
    assert table.speed_ratio(RESNET50, 1, device("A100-80GB"), v100) is None


def test_a_zero_rate_is_kept_as_measured_but_gives_no_ratio() -> None:
    table = default_throughput_table()
    profile = "ResNet-50 (batch size 128)"
    assert table.steps_per_s(profile, 2, device("K80")) == 0.0
    assert table.speed_ratio(profile, 2, device("K80"), device("V100-16GB")) is None
    assert table.speed_ratio(profile, 2, device("V100-16GB"), device("K80")) is None


def test_the_packaged_file_is_what_the_generator_makes_from_the_shared_table(
    shared_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gavel.csv"
    script = REPO / "scripts" / "build_throughput_table.py"
    args = [sys.executable, str(script), "--data", str(shared_data_dir), "--out", str(out)]
    subprocess.run(args, check=True, capture_output=True)
    assert out.read_text(encoding="utf-8") == PACKAGED.read_text(encoding="utf-8")

    gavel = gavel_long_rates(shared_data_dir / SHARED_LONG)
    table = default_throughput_table()
    names = {"k80": "K80", "p100": "P100-16GB", "v100": "V100-16GB"}
    for (profile, scale, worker), rate in gavel.items():
        if worker in names:
            assert table.steps_per_s(profile, scale, device(names[worker])) == rate


def test_a_profile_with_a_comma_survives_quoting() -> None:
    text = HEADER + '"Model (batch size 64, fp16)",1,K80,1.5\n'
    table = ThroughputTable.from_csv_text(text, "t.csv")
    assert table.profiles == ("Model (batch size 64, fp16)",)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "ResNet,x,K80,1.0",
            "t.csv:3: field 2 (scale_factor): expected a positive integer, got 'x'",
        ),
        (
            "ResNet,0,K80,1.0",
            "t.csv:3: field 2 (scale_factor): expected a positive integer, got '0'",
        ),
        ("ResNet,1,K 80,1.0", "t.csv:3: field 3 (device): expected a device id"),
        ("ResNet,1,K80,fast", "t.csv:3: field 4 (steps_per_s): expected a number, got 'fast'"),
        ("ResNet,1,K80,-1", "t.csv:3: field 4 (steps_per_s): expected a finite number >= 0"),
        ("ResNet,1,K80,nan", "t.csv:3: field 4 (steps_per_s): expected a finite number >= 0"),
        ("ResNet,1,K80", "t.csv:3: field 4 (steps_per_s): expected 4 comma-separated fields"),
        ("ResNet,1,K80,1,2", "t.csv:3: field 5 (extra field): expected 4 comma-separated fields"),
        (",1,K80,1.0", "t.csv:3: field 1 (profile): expected a job type name, got ''"),
        ("A3C,1,k80,2.0", "t.csv:3: field 3 (device): expected one row per (profile, scale_factor"),
    ],
)
def test_a_malformed_line_gives_one_located_line_naming_line_and_field(
    row: str, message: str
) -> None:
    text = HEADER + "A3C,1,K80,3.4\n" + row + "\n"
    with pytest.raises(FieldError) as raised:
        ThroughputTable.from_csv_text(text, "t.csv")
    shown = str(raised.value)
    assert shown.startswith(message)
    assert "\n" not in shown


def test_a_wrong_or_missing_header_is_reported_at_its_line() -> None:
    with pytest.raises(FieldError, match=r"^t\.csv:1: field 4 \(steps_per_s\): expected the hea"):
        ThroughputTable.from_csv_text("profile,scale_factor,device,rate\n", "t.csv")
    with pytest.raises(FieldError, match=r"^t\.csv:1: field 1 \(profile\): expected the header"):
        ThroughputTable.from_csv_text("", "t.csv")


def test_an_unclosed_quote_is_refused_with_its_location() -> None:
    with pytest.raises(BadInput, match=r"^t\.csv:2: malformed CSV"):
        ThroughputTable.from_csv_text(HEADER + '"A3C,1,K80,1.0\n', "t.csv")


def test_rows_built_in_code_are_checked_like_rows_read_from_a_file() -> None:
    with pytest.raises(BadInput, match="scale factor must be a positive integer"):
        ThroughputTable((ThroughputRow("job", 0, "K80", 1.0),))
    with pytest.raises(BadInput, match="two rows for 'job'"):
        ThroughputTable((ThroughputRow("job", 1, "K80", 1.0), ThroughputRow("job", 1, "k80", 2.0)))


def test_the_table_is_immutable_and_loaded_once() -> None:
    table = default_throughput_table()
    assert default_throughput_table() is table
    with pytest.raises(AttributeError):
        table.source = "elsewhere"  # type: ignore[misc]
