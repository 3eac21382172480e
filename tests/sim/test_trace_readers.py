"""Trace readers: what each format means, and how bad input is reported.

Fixtures live in tests/data/traces (see PROVENANCE.md there); the real traces under
/work/shared/data are read too when present.
"""

from __future__ import annotations

import gzip
import io
import math
from pathlib import Path

import numpy as np
import pytest

from computility.domain.errors import BadInput, FieldError, UnknownDeviceType, UsageError
from computility.domain.workload import ANY_GPU, Workload
from computility.sim.traces import detect_format, read_trace, write_computility_csv
from computility.testing.data import find_shared_data_dir

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"
SHARED = find_shared_data_dir() or Path("/nonexistent-shared-data")

CATALOGUE = {
    "V100M32": ("V100-SXM2-32GB",),
    "V100M16": ("V100-SXM2-16GB",),
    "V100": ("V100-SXM2-16GB", "V100-SXM2-32GB"),
    "T4": ("T4",),
    "A10": ("A10",),
    "A100": ("A100-40GB", "A100-80GB"),
    "A100-80GB": ("A100-80GB",),
    "A100-40GB": ("A100-40GB",),
    "V100-SXM2-32GB": ("V100-SXM2-32GB",),
    "V100-SXM2-16GB": ("V100-SXM2-16GB",),
}


def resolve(name: str) -> tuple[str, ...]:
    """A stand-in for the device catalogue: aliases and families map to ids, ids to themselves."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownDeviceType(name) from None


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def bad_input_message(excinfo: pytest.ExceptionInfo[BadInput]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


SWF_OK = "1 0 -1 10 4 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1\n"


# --- SWF --------------------------------------------------------------------------------------


def test_swf_simulates_jobs_with_run_time_and_processors_and_counts_the_rest_as_skipped() -> None:
    w = read_trace(str(DATA / "small.swf"))
    assert w.ids.tolist() == [1, 3, 8, 5, 7]  # (submit, id) order, not file order
    assert w.submit.tolist() == [0, 20, 35, 40, 60]
    assert w.skipped == 3  # job 2 (run 0), job 4 (no processors), job 6 (run -1)
    assert w.censored == 0
    assert w.tenants == ("default",)
    assert w.tenant.tolist() == [0] * 5
    assert w.gpu_milli.tolist() == [0] * 5


def test_swf_processors_are_requested_when_positive_else_allocated() -> None:
    w = read_trace(str(DATA / "small.swf"))
    by_id = dict(zip(w.ids.tolist(), w.cpus.tolist(), strict=True))
    assert by_id[1] == 4  # requested -1: allocated
    assert by_id[3] == 8  # requested 8 wins over allocated 2
    assert by_id[8] == 1  # requested 0: allocated


def test_swf_requested_time_is_field_9_when_positive_else_run_time_and_never_below_run() -> None:
    w = read_trace(str(DATA / "small.swf"))
    by_id = dict(zip(w.ids.tolist(), w.requested.tolist(), strict=True))
    assert by_id[1] == 200  # field 9
    assert by_id[3] == 50  # field 9 is -1: the run time
    assert by_id[5] == 300  # field 9 (100) below the run time (300): raised to it
    assert by_id[8] == 30
    assert (w.requested >= w.run).all()


def test_swf_header_comments_give_key_value_pairs() -> None:
    w = read_trace(str(DATA / "small.swf"))
    assert w.header["MaxProcs"] == "128"
    assert w.header["MaxNodes"] == "64"
    assert w.header["Version"] == "2"
    assert "Jobs 2, 4 and 6 are skipped (no run time, or no processors)." not in w.header


def test_swf_lines_are_physical_lines_counting_comments_and_blank_lines() -> None:
    w = read_trace(str(DATA / "small.swf"))
    assert dict(zip(w.ids.tolist(), w.lines.tolist(), strict=True)) == {
        1: 7,
        3: 9,
        5: 13,
        8: 15,
        7: 16,
    }


def test_swf_limit_keeps_the_first_n_passing_records_in_file_order() -> None:
    w = read_trace(str(DATA / "small.swf"), limit=3)
    assert sorted(w.ids.tolist()) == [1, 3, 5]
    assert w.skipped == 2  # jobs 2 and 4 were read before the third kept job
    assert w.header["MaxProcs"] == "128"


def test_swf_limit_zero_keeps_nothing_but_still_reads_the_header() -> None:
    w = read_trace(str(DATA / "small.swf"), limit=0)
    assert len(w) == 0
    assert w.header["MaxNodes"] == "64"


def test_swf_limit_stops_reading_so_later_bad_records_are_not_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "t.swf", SWF_OK * 3 + "garbage\n")
    assert len(read_trace(path, limit=3)) == 3
    with pytest.raises(FieldError):
        read_trace(path, limit=4)


def test_swf_gzip_reads_the_same_as_plain(tmp_path: Path) -> None:
    plain = DATA / "small.swf"
    packed = tmp_path / "small.swf.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    # Compression is told by the magic bytes, not the name.
    renamed = tmp_path / "renamed.swf"
    renamed.write_bytes(packed.read_bytes())
    a = read_trace(str(plain))
    for other in (read_trace(str(packed)), read_trace(str(renamed))):
        for column in ("ids", "submit", "run", "requested", "cpus", "lines"):
            assert getattr(a, column).tolist() == getattr(other, column).tolist()
        assert other.header == a.header
        assert other.skipped == a.skipped


def test_swf_record_with_fewer_fields_names_the_first_missing_field(tmp_path: Path) -> None:
    short = "2 5 -1 10 4 -1 -1 -1 -1 -1 1 -1 -1"
    path = write(tmp_path, "t.swf", "; MaxProcs: 64\n;\n\n" + SWF_OK + short + "\n")
    with pytest.raises(FieldError) as excinfo:
        read_trace(path)
    assert bad_input_message(excinfo) == (
        f"{path}:5: field 14 (executable): expected 18 numeric fields, got '{short}'"
    )


def test_swf_record_with_a_non_numeric_field_names_that_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.swf",
        "; comment\n" + SWF_OK + "2 5 -1 1x0 4 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1\n",
    )
    with pytest.raises(FieldError) as excinfo:
        read_trace(path)
    assert (
        bad_input_message(excinfo) == f"{path}:3: field 4 (run time): expected a number, got '1x0'"
    )


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            "1 0 -1 10 4 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1 9",
            "field 19 (extra field): expected 18 numeric fields, got "
            "'1 0 -1 10 4 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1 9'",
        ),
        (
            "1 0 -1 nan 4 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1",
            "field 4 (run time): expected a finite number, got 'nan'",
        ),
        (
            "1 0 -1 10 4.5 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1",
            "field 5 (allocated processors): expected an integer, got '4.5'",
        ),
        (
            "1 0 -1 10 4 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 #",
            "field 18 (think time): expected a number, got '#'",
        ),
    ],
)
def test_swf_other_malformed_records(tmp_path: Path, record: str, expected: str) -> None:
    path = write(tmp_path, "t.swf", SWF_OK * 2 + record + "\n")
    with pytest.raises(FieldError) as excinfo:
        read_trace(path)
    assert bad_input_message(excinfo) == f"{path}:3: {expected}"


def test_swf_bad_record_in_a_gzip_file_is_located_in_the_decompressed_lines(
    tmp_path: Path,
) -> None:
    text = "; a\n; b\n" + SWF_OK * 20_000 + "1 2 3\n"
    path = tmp_path / "t.swf.gz"
    path.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(FieldError) as excinfo:
        read_trace(str(path))
    assert bad_input_message(excinfo).startswith(f"{path}:20003: field 4 (run time): ")


def test_swf_fractional_times_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "t.swf", "1 0.5 -1 10.25 4 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1\n")
    w = read_trace(path)
    assert w.submit.tolist() == [0.5]
    assert w.run.tolist() == [10.25]


# --- Alibaba GPU pod list -----------------------------------------------------------------------


def test_alibaba_pods_never_scheduled_or_without_run_time_are_skipped() -> None:
    w = read_trace(str(DATA / "openb_pod_list_tiny.csv"), resolve_gpu=resolve)
    assert len(w) == 6
    assert w.skipped == 2  # tiny-pod-2 (Pending, no scheduled_time), tiny-pod-5 (run time 0)
    assert w.ids.tolist() == [1, 7, 2, 4, 5, 8]  # 1-based data rows, in creation order
    assert w.submit.tolist() == [0, 50, 100, 300, 400, 600]  # creation_time
    assert w.run.tolist() == [1000, 90, 500, 90, 1500, 350]  # deletion - scheduled
    assert (w.requested == w.run).all()
    assert w.tenants == ("default",)


def test_alibaba_running_pods_are_simulated_with_truncated_run_time_and_counted_censored() -> None:
    w = read_trace(str(DATA / "openb_pod_list_tiny.csv"), resolve_gpu=resolve)
    assert w.censored == 3  # tiny-pod-0, -4 and -7 are Running at the snapshot


def test_alibaba_cpus_and_whole_and_fractional_gpus() -> None:
    w = read_trace(str(DATA / "openb_pod_list_tiny.csv"), resolve_gpu=resolve)
    columns = zip(w.ids.tolist(), w.cpus.tolist(), w.gpu_milli.tolist(), strict=True)
    by_id = {i: (c, g) for i, c, g in columns}
    assert by_id[1] == (12, 1000)  # 12000 milli-cores, one whole GPU
    assert by_id[2] == (6, 460)  # a fractional share of one GPU
    assert by_id[4] == (1, 0)  # 500 milli-cores: rounded up; CPU-only
    assert by_id[5] == (64, 8000)
    assert by_id[7] == (8, 2000)  # gpu_milli empty: whole devices
    assert by_id[8] == (0, 250)  # no CPU request: a GPU pod may need no cores


def test_alibaba_gpu_spec_is_resolved_to_catalogue_ids_and_empty_means_any() -> None:
    w = read_trace(str(DATA / "openb_pod_list_tiny.csv"), resolve_gpu=resolve)
    types = {
        i: (w.gpu_type_sets[t] if t != ANY_GPU else None)
        for i, t in zip(w.ids.tolist(), w.gpu_types.tolist(), strict=True)
    }
    assert types[5] == ("V100-SXM2-32GB", "V100-SXM2-16GB")
    assert types[7] == ("T4",)
    assert types[1] is None
    assert types[4] is None  # CPU-only


def test_alibaba_unknown_gpu_type_is_bad_input_at_its_line_and_field(tmp_path: Path) -> None:
    text = (
        (DATA / "openb_pod_list_tiny.csv").read_text().replace("V100M32|V100M16", "V100M32|H800X")
    )
    path = write(tmp_path, "openb_pod_list_bad.csv", text)
    with pytest.raises(FieldError) as excinfo:
        read_trace(path, resolve_gpu=resolve)
    assert bad_input_message(excinfo) == (
        f"{path}:6: field 6 (gpu_spec): expected GPU type names known to the device catalogue, "
        "separated by '|', got 'H800X'"
    )


@pytest.mark.parametrize(
    ("num_gpu", "gpu_milli", "expected"),
    [
        ("2", "500", "field 5 (gpu_milli): expected 1000 or empty when num_gpu is 2, got '500'"),
        ("0", "300", "field 5 (gpu_milli): expected 0 or empty when num_gpu is 0, got '300'"),
        ("1", "1500", "field 5 (gpu_milli): expected 1 to 1000 or empty, got '1500'"),
        ("-1", "1000", "field 4 (num_gpu): expected a non-negative integer, got '-1'"),
    ],
)
def test_alibaba_inconsistent_gpu_counts_are_bad_input(
    tmp_path: Path, num_gpu: str, gpu_milli: str, expected: str
) -> None:
    header = (DATA / "openb_pod_list_tiny.csv").read_text().splitlines()[0]
    row = f"p,1000,1,{num_gpu},{gpu_milli},,LS,Failed,0,100,10"
    path = write(tmp_path, "openb_pod_list_x.csv", f"{header}\n{row}\n")
    with pytest.raises(FieldError) as excinfo:
        read_trace(path)
    assert bad_input_message(excinfo) == f"{path}:2: {expected}"


def test_alibaba_without_creation_time_names_the_column_and_the_way_out(tmp_path: Path) -> None:
    header = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase"
    path = write(tmp_path, "openb_pod_list_notimes.csv", f"{header}\np,1000,1,1,1000,,LS,Failed\n")
    with pytest.raises(FieldError) as excinfo:
        read_trace(path)
    assert bad_input_message(excinfo) == (
        f"{path}:1: field 9 (creation_time): expected a column named creation_time "
        f"(or --arrivals poisson:RATE_PER_HOUR), got '{header}'"
    )


def _no_times_file(tmp_path: Path) -> str:
    rows = [
        f"p{i},{1000 * (i % 4)},1,{i % 2},,,LS,{'Pending' if i == 3 else 'Failed'}"
        for i in range(10)
    ]
    header = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase"
    return write(tmp_path, "openb_pod_list_notimes.csv", "\n".join([header, *rows]) + "\n")


def test_alibaba_without_times_gets_seeded_poisson_arrivals_and_log_uniform_runs(
    tmp_path: Path,
) -> None:
    path = _no_times_file(tmp_path)
    w = read_trace(path, arrivals="poisson:3600", seed=7)
    assert len(w) == 9
    assert w.skipped == 1  # the Pending pod
    assert w.censored == 0
    assert (w.submit > 0).all()
    assert np.diff(w.submit).min() >= 0
    assert w.submit.mean() < 20  # 3600 per hour: about one a second
    assert ((w.run >= 60) & (w.run <= 4 * 3600)).all()
    again = read_trace(path, arrivals="poisson:3600", seed=7)
    assert again.submit.tolist() == w.submit.tolist()
    assert again.run.tolist() == w.run.tolist()
    other = read_trace(path, arrivals="poisson:3600", seed=8)
    assert other.submit.tolist() != w.submit.tolist()


def test_alibaba_arrivals_replace_creation_time_but_keep_run_times() -> None:
    path = str(DATA / "openb_pod_list_tiny.csv")
    plain = read_trace(path)
    w = read_trace(path, arrivals="poisson:60", seed=1)
    assert len(w) == len(plain)
    assert w.censored == plain.censored
    assert sorted(w.run.tolist()) == sorted(plain.run.tolist())
    assert w.submit.tolist() != plain.submit.tolist()


@pytest.mark.parametrize("spec", ["poisson", "poisson:", "poisson:abc", "poisson:-1", "uniform:5"])
def test_malformed_arrivals_is_a_one_line_usage_error(spec: str) -> None:
    with pytest.raises(UsageError) as excinfo:
        read_trace(str(DATA / "openb_pod_list_tiny.csv"), arrivals=spec)
    assert bad_input_message(excinfo) == (
        f"--arrivals: expected poisson:RATE_PER_HOUR with a positive rate, got '{spec}'"
    )


def test_arrivals_for_a_format_with_times_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--arrivals applies to the Alibaba pod list"):
        read_trace(str(DATA / "small.swf"), arrivals="poisson:10")


def test_alibaba_missing_run_time_column_is_named(tmp_path: Path) -> None:
    header = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time"
    path = write(tmp_path, "openb_pod_list_x.csv", f"{header}\np,1000,1,1,1000,,LS,Failed,0\n")
    with pytest.raises(FieldError) as excinfo:
        read_trace(path)
    assert bad_input_message(excinfo) == (
        f"{path}:1: field 10 (deletion_time): expected a column named deletion_time "
        f"(or --arrivals poisson:RATE_PER_HOUR), got '{header}'"
    )


def test_alibaba_row_with_the_wrong_number_of_fields(tmp_path: Path) -> None:
    header = (DATA / "openb_pod_list_tiny.csv").read_text().splitlines()[0]
    path = write(tmp_path, "openb_pod_list_x.csv", f"{header}\np,1000,1,1,1000,,LS,Failed,0,100\n")
    with pytest.raises(FieldError) as excinfo:
        read_trace(path)
    assert bad_input_message(excinfo) == (
        f"{path}:2: field 11 (scheduled_time): expected 11 comma-separated fields, as in the "
        "header, got 'p,1000,1,1,1000,,LS,Failed,0,100'"
    )


def test_alibaba_limit_counts_kept_pods_only() -> None:
    w = read_trace(str(DATA / "openb_pod_list_tiny.csv"), limit=3)
    assert sorted(w.ids.tolist()) == [1, 2, 4]
    assert w.skipped == 1
    assert w.censored == 1


# --- Philly -----------------------------------------------------------------------------------


def test_philly_submit_is_seconds_since_the_earliest_timestamp_in_the_file() -> None:
    w = read_trace(str(DATA / "philly_tiny.csv"))
    # The earliest timestamp (06:00:00) belongs to a skipped row; it is still time 0.
    assert dict(zip(w.ids.tolist(), w.submit.tolist(), strict=True)) == {
        1: 3715,
        2: 783,
        5: 1800,
        6: 816,
    }
    assert w.skipped == 2  # duration 0, and num_gpus 0
    assert w.run.tolist() == [2951, 2759, 600, 66]
    assert (w.requested == w.run).all()


def test_philly_virtual_clusters_are_tenants_and_gpus_are_whole_devices_of_any_type() -> None:
    w = read_trace(str(DATA / "philly_tiny.csv"))
    assert w.tenants == ("11cb48", "6214e9", "6c71a0")  # order of first appearance
    assert [w.tenants[t] for t in w.tenant.tolist()] == ["6214e9", "6c71a0", "11cb48", "11cb48"]
    assert w.gpu_milli.tolist() == [4000, 2000, 8000, 1000]
    assert w.cpus.tolist() == [4, 2, 8, 1]
    assert (w.gpu_types == ANY_GPU).all()


def test_philly_bad_timestamp(tmp_path: Path) -> None:
    path = write(
        tmp_path, "p.csv", "timestamp,duration,num_gpus,gpu_time,cluster\nyesterday,1,1,1,a\n"
    )
    with pytest.raises(FieldError) as excinfo:
        read_trace(path)
    assert bad_input_message(excinfo) == (
        f"{path}:2: field 1 (timestamp): expected a time like 2017-10-09 07:01:55, got 'yesterday'"
    )


# --- Computility CSV --------------------------------------------------------------------------


def test_computility_csv_columns_and_defaults() -> None:
    w = read_trace(str(DATA / "tasks.csv"), resolve_gpu=resolve)
    assert w.ids.tolist() == [1, 2, 3, 5]
    assert w.skipped == 1  # run_s 0
    assert w.run.tolist() == [3600, 600, 1800, 45.5]
    assert w.requested.tolist() == [7200, 600, 1800, 45.5]  # empty or too small: the run time
    assert w.cpus.tolist() == [8, 4, 16, 1]
    assert w.gpu_milli.tolist() == [0, 500, 2000, 0]
    assert w.gpu_type_sets[w.gpu_types[1]] == ("T4", "A10")
    assert w.gpu_type_sets[w.gpu_types[2]] == ("A100-80GB",)
    assert w.tenants == ("alice", "bob", "default")
    assert w.tenant.tolist() == [0, 1, 0, 2]
    assert w.deadline[1] == 5000
    assert math.isnan(w.deadline[0])


def test_computility_csv_round_trip(tmp_path: Path) -> None:
    for original in (
        read_trace(str(DATA / "openb_pod_list_tiny.csv"), resolve_gpu=resolve),
        read_trace(str(DATA / "tasks.csv"), resolve_gpu=resolve),
        read_trace(str(DATA / "philly_tiny.csv")),
        read_trace(str(DATA / "small.swf")),
    ):
        out = tmp_path / "round.csv"
        write_computility_csv(original, out)
        back = read_trace(str(out), resolve_gpu=resolve)
        assert_same_tasks(original, back)


def test_computility_csv_writes_to_an_open_text_stream() -> None:
    buffer = io.StringIO()
    write_computility_csv(read_trace(str(DATA / "tasks.csv"), resolve_gpu=resolve), buffer)
    assert buffer.getvalue().splitlines()[:3] == [
        "id,submit_s,run_s,requested_s,cpus,gpus,gpu_types,tenant,deadline_s",
        "1,0,3600,7200,8,0,,alice,",
        "2,30,600,600,4,0.5,T4|A10,bob,5000",
    ]


def assert_same_tasks(a: Workload, b: Workload) -> None:
    assert len(a) == len(b)
    for column in ("ids", "submit", "run", "requested", "cpus", "gpu_milli"):
        assert getattr(a, column).tolist() == getattr(b, column).tolist(), column
    assert [a.tenants[t] for t in a.tenant] == [b.tenants[t] for t in b.tenant]
    assert [a.gpu_type_sets[t] if t != ANY_GPU else None for t in a.gpu_types] == [
        b.gpu_type_sets[t] if t != ANY_GPU else None for t in b.gpu_types
    ]
    assert np.array_equal(a.deadline, b.deadline, equal_nan=True)


def test_computility_csv_unknown_columns_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "id,submit_s,run_s,gpu,owner\n1,0,10,1,x\n")
    with pytest.raises(FieldError) as excinfo:
        read_trace(path, "csv")
    assert bad_input_message(excinfo) == (
        f"{path}:1: field 4 (gpu): expected only the columns id, submit_s, run_s, requested_s, "
        "cpus, gpus, gpu_types, tenant, deadline_s, got 'gpu, owner'"
    )


def test_computility_csv_missing_required_column(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "id,submit_s,cpus\n1,0,1\n")
    with pytest.raises(FieldError) as excinfo:
        read_trace(path, "csv")
    assert bad_input_message(excinfo) == (
        f"{path}:1: field 3 (run_s): expected a column named run_s, got 'id,submit_s,cpus'"
    )


@pytest.mark.parametrize(
    ("gpus", "message"),
    [
        (
            "1.5",
            "expected a number of GPUs >= 0: a share below 1 (at most 3 decimals) or whole "
            "devices, got '1.5'",
        ),
        (
            "0.0001",
            "expected a number of GPUs >= 0: a share below 1 (at most 3 decimals) or whole "
            "devices, got '0.0001'",
        ),
        ("two", "expected a number, got 'two'"),
    ],
)
def test_computility_csv_bad_gpu_counts(tmp_path: Path, gpus: str, message: str) -> None:
    path = write(tmp_path, "t.csv", f"id,submit_s,run_s,gpus\n\n1,0,10,{gpus}\n")
    with pytest.raises(FieldError) as excinfo:
        read_trace(path)
    assert bad_input_message(excinfo) == f"{path}:3: field 4 (gpus): {message}"


def test_computility_csv_unknown_gpu_type(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "id,submit_s,run_s,gpus,gpu_types\n1,0,10,1,TPUv9\n")
    with pytest.raises(FieldError, match=r":2: field 5 \(gpu_types\): .* got 'TPUv9'$"):
        read_trace(path, resolve_gpu=resolve)


# --- detection and opening ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("small.swf", "swf"),
        ("lublin_256_head.swf", "swf"),
        ("openb_pod_list_tiny.csv", "alibaba"),
        ("openb_pod_list_default_head.csv", "alibaba"),
        ("philly_tiny.csv", "philly"),
        ("philly_jobs_pollux_head.csv", "philly"),
        ("tasks.csv", "csv"),
    ],
)
def test_format_is_told_from_the_name_or_the_header(name: str, fmt: str) -> None:
    assert detect_format(str(DATA / name)) == fmt


def test_format_is_told_from_the_header_of_renamed_and_compressed_files(tmp_path: Path) -> None:
    cases = {
        "a.gz": (DATA / "small.swf").read_bytes(),
        "b.txt": (DATA / "openb_pod_list_tiny.csv").read_bytes(),
        "c": (DATA / "philly_tiny.csv").read_bytes(),
        "d.csv.gz": (DATA / "tasks.csv").read_bytes(),
        "e.swf.gz": (DATA / "small.swf").read_bytes(),
        "f.dat": SWF_OK.encode(),
    }
    expected = {
        "a.gz": "swf",
        "b.txt": "alibaba",
        "c": "philly",
        "d.csv.gz": "csv",
        "e.swf.gz": "swf",
        "f.dat": "swf",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        assert detect_format(str(path)) == expected[name], name


def test_unknown_format_is_a_usage_error_naming_the_path_and_the_formats(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "foo,bar\n1,2\n")
    with pytest.raises(UsageError) as excinfo:
        read_trace(path)
    assert bad_input_message(excinfo) == (
        f"{path}: cannot tell the trace format from its name or header; "
        "give --format swf|alibaba|philly|csv"
    )


def test_missing_file_is_one_line_of_bad_input(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.swf")
    for fmt in ("auto", "swf"):
        with pytest.raises(BadInput) as excinfo:
            read_trace(path, fmt)
        assert bad_input_message(excinfo) == f"{path}: no such file"


def test_truncated_gzip_is_one_line_of_bad_input(tmp_path: Path) -> None:
    data = gzip.compress((SWF_OK * 5000).encode())
    path = tmp_path / "t.swf.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput) as excinfo:
        read_trace(str(path))
    assert bad_input_message(excinfo).startswith(f"{path}: corrupt or truncated gzip data")


def test_bad_format_and_limit_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="--format: expected one of auto, swf"):
        read_trace(str(DATA / "small.swf"), "xml")
    with pytest.raises(UsageError, match="--limit"):
        read_trace(str(DATA / "small.swf"), limit=-1)


# --- the committed heads of the real traces ---------------------------------------------------


def test_heads_of_the_real_traces() -> None:
    lublin = read_trace(str(DATA / "lublin_256_head.swf"))
    assert len(lublin) == 20
    assert lublin.header["MaxNodes"] == "256"
    assert lublin.ids.tolist() == list(range(1, 21))
    assert (lublin.requested == lublin.run).all()  # field 9 is -1 throughout

    openb = read_trace(str(DATA / "openb_pod_list_default_head.csv"))
    assert (len(openb), openb.skipped, openb.censored) == (40, 0, 37)
    assert openb.gpu_milli[openb.ids == 2].tolist() == [460]

    philly = read_trace(str(DATA / "philly_jobs_pollux_head.csv"))
    assert len(philly) == 30
    assert philly.submit.min() == 0


# --- the real traces, when the shared data folder is present --------------------------------------


def _shared(relative: str) -> str:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    return str(path)


def test_real_lublin_256() -> None:
    w = read_trace(_shared("swf_hpc/lublin_256.swf"))
    assert (len(w), w.skipped) == (10_000, 0)
    assert w.header["MaxNodes"] == "256"
    assert int(w.cpus.max()) <= 256


@pytest.mark.parametrize(
    ("name", "jobs", "skipped", "censored"),
    [
        ("openb_pod_list_default.csv", 7255, 897, 5193),
        ("openb_pod_list_gpushare100.csv", 6943, 1209, 4301),
    ],
)
def test_real_alibaba_pod_lists(name: str, jobs: int, skipped: int, censored: int) -> None:
    w = read_trace(_shared(f"gpu_alibaba_openb2023/{name}"), resolve_gpu=resolve)
    assert (len(w), w.skipped, w.censored) == (jobs, skipped, censored)
    assert len(w) + w.skipped == 8152


def test_real_philly() -> None:
    w = read_trace(_shared("gpu_jobs_philly_helios/philly_jobs_pollux.csv"))
    assert (len(w), w.skipped) == (82_247, 0)
    assert len(w.tenants) == 15
    assert w.submit.min() == 0
