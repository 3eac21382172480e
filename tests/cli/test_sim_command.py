"""`computility sim` as a user and a script see it: the real command in a child process."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "traces"
VOLATILE = {"wall_s", "events_per_s"}
RESULT_KEYS = [
    "policy", "queue", "completed", "rejected", "mean_wait_s", "p50_wait_s", "p95_wait_s",
    "p99_wait_s", "mean_jct_s", "p99_jct_s", "mean_bounded_slowdown", "makespan_s",
    "utilization", "cost", "currency", "energy_kwh", "carbon_kg", "data_moved_gb",
    "deadline_misses", "wall_s", "events_per_s",
]


def sim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "computility", "sim", *args],
        capture_output=True, text=True, cwd=cwd, check=False,
    )


def stable(report: dict[str, object]) -> dict[str, object]:
    results = report["results"]
    assert isinstance(results, list)
    return {**report, "results": [{k: v for k, v in r.items() if k not in VOLATILE}
                                  for r in results]}


def test_json_report_has_the_contract_shape_one_result_per_pair_in_order() -> None:
    p = sim("--trace", str(DATA / "lublin_256_head.swf"), "--policy", "cheapest,balanced",
            "--queue", "fcfs,easy", "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert list(report) == ["trace", "network", "jobs", "skipped", "censored", "results"]
    pairs = [(r["policy"], r["queue"]) for r in report["results"]]
    assert pairs == [("cheapest", "fcfs"), ("cheapest", "easy"), ("balanced", "fcfs"),
                     ("balanced", "easy")]
    for r in report["results"]:
        # The contract's fields, in its order; additions (per-tenant figures) come after them.
        assert list(r)[: len(RESULT_KEYS)] == RESULT_KEYS
        assert list(r)[len(RESULT_KEYS) :] == ["tenants", "held"]
        assert r["completed"] + r["rejected"] == report["jobs"]
        assert r["currency"] == "CNY"
    assert p.stderr == ""


def test_each_result_has_per_tenant_waits_that_add_up() -> None:
    p = sim("--trace", str(DATA / "philly_tiny.csv"), "--cpus", "4", "--gpus", "V100-32GB:8",
            "--queue", "fcfs", "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    result = report["results"][0]
    tenants = result["tenants"]
    assert len(tenants) > 1
    assert sum(t["jobs"] for t in tenants.values()) == report["jobs"]
    assert sum(t["completed"] for t in tenants.values()) == result["completed"]
    total_wait = sum(t["mean_wait_s"] * t["completed"] for t in tenants.values())
    assert total_wait / result["completed"] == pytest.approx(result["mean_wait_s"])


def test_same_arguments_give_the_same_report_apart_from_timings() -> None:
    args = ("--trace", str(DATA / "lublin_256_head.swf"), "--queue", "conservative", "--json")
    first, second = sim(*args), sim(*args)
    assert stable(json.loads(first.stdout)) == stable(json.loads(second.stdout))


def test_gzip_trace_gives_the_same_figures_as_plain(tmp_path: Path) -> None:
    plain = DATA / "lublin_256_head.swf"
    packed = tmp_path / "head.swf.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a = stable(json.loads(sim("--trace", str(plain), "--json").stdout))
    b = stable(json.loads(sim("--trace", str(packed), "--json").stdout))
    assert a["results"] == b["results"]


def test_undefined_figures_are_null_not_nan(tmp_path: Path) -> None:
    trace = tmp_path / "wide.swf"
    trace.write_text("; MaxProcs: 4\n1 0 -1 10 8 -1 -1 8 10 -1 1 1 1 -1 -1 -1 -1 -1\n")
    p = sim("--trace", str(trace), "--json")
    assert p.returncode == 0, p.stderr
    assert "NaN" not in p.stdout
    r = json.loads(p.stdout)["results"][0]
    assert r["rejected"] == 1 and r["completed"] == 0
    assert r["mean_wait_s"] is None and r["makespan_s"] is None


def test_out_writes_report_table_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = sim("--trace", str(DATA / "lublin_256_head.swf"), "--queue", "fcfs,easy", "--out",
            str(out))
    assert p.returncode == 0, p.stderr
    names = sorted(f.name for f in out.iterdir())
    # Several results: a comparison of their cost, JCT and carbon too.
    assert names == ["policies.png", "report.json", "report.txt", "slowdown_cdf.png",
                     "utilization.png", "wait_cdf.png"]
    assert (out / "wait_cdf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "policies.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "easy" in (out / "report.txt").read_text()


def _assert_one_line_exit_2(p: subprocess.CompletedProcess[str], expected: str) -> None:
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.strip() == expected


def test_malformed_swf_record_is_one_line_with_path_line_and_field(tmp_path: Path) -> None:
    trace = tmp_path / "bad.swf"
    trace.write_text(
        "; MaxProcs: 8\n"
        "1 0 -1 10 2 -1 -1 2 10 -1 1 1 1 -1 -1 -1 -1 -1\n"
        "2 5 -1 ten 2 -1 -1 2 10 -1 1 1 1 -1 -1 -1 -1 -1\n"
    )
    out = tmp_path / "out"
    p = sim("--trace", str(trace), "--out", str(out))
    _assert_one_line_exit_2(
        p, f"{trace}:3: field 4 (run time): expected a number, got 'ten'"
    )
    assert not out.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["bad.swf"]


def test_unknown_gpu_type_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    p = sim("--trace", str(DATA / "openb_pod_list_tiny.csv"), "--cpus", "64", "--gpus",
            "NOPE-9000:8", "--out", str(tmp_path / "out"))
    assert p.returncode == 2
    assert p.stderr.startswith("unknown device type 'NOPE-9000'")
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_gpu_type_in_a_trace_names_the_line_and_field(tmp_path: Path) -> None:
    trace = tmp_path / "openb_pod_list_bad.csv"
    trace.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
        "deletion_time,scheduled_time\n"
        "p0,1000,1024,1,1000,V100M32,LS,Succeeded,0,100,0\n"
        "p1,1000,1024,1,1000,Z80,LS,Succeeded,0,100,0\n"
    )
    p = sim("--trace", str(trace), "--cpus", "8", "--gpus", "V100-32GB:4")
    assert p.returncode == 2
    assert p.stderr.startswith(f"{trace}:3: field 6 (gpu_spec): expected ")
    assert p.stderr.rstrip().endswith("got 'Z80'")
    assert p.stderr.count("\n") == 1


def test_missing_column_is_named_and_exit_2(tmp_path: Path) -> None:
    trace = tmp_path / "openb_pod_list_notimes.csv"
    trace.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase\n"
                     "p0,1000,1024,0,0,,LS,Succeeded\n")
    p = sim("--trace", str(trace), "--cpus", "8", "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert p.stderr.startswith(f"{trace}:1: field 9 (creation_time): expected ")
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()


def test_missing_column_is_fine_with_poisson_arrivals(tmp_path: Path) -> None:
    trace = tmp_path / "openb_pod_list_notimes.csv"
    trace.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase\n"
                     "p0,1000,1024,0,0,,LS,Succeeded\np1,2000,1024,0,0,,LS,Succeeded\n")
    p = sim("--trace", str(trace), "--cpus", "8", "--arrivals", "poisson:60", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["results"][0]["completed"] == 2


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--queue", "sjf"], "--queue: unknown queue 'sjf'"),
        (["--policy", "fastest,psychic"], "--policy: unknown policy 'psychic'"),
        (["--limit", "0"], "--limit: expected a positive integer"),
        (["--start", "yesterday"], "--start: expected an ISO-8601 time"),
        (["--gpus", "A100"], "--gpus: expected TYPE:N"),
        (["--limit", "many"], "Invalid value for '--limit'"),
        (["--frobnicate"], "No such option: --frobnicate"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], fragment: str) -> None:
    p = sim("--trace", str(DATA / "lublin_256_head.swf"), *args)
    assert p.returncode == 2
    assert fragment in p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_gpus_takes_several_values_after_one_flag() -> None:
    p = sim("--trace", str(DATA / "openb_pod_list_tiny.csv"), "--cpus", "16", "--gpus",
            "T4:2", "V100M32:8", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["results"][0]["rejected"] == 0


def test_single_network_without_a_size_is_a_usage_error() -> None:
    p = sim("--trace", str(DATA / "philly_tiny.csv"))
    assert p.returncode == 2
    assert "give --cpus N" in p.stderr and p.stderr.count("\n") == 1


def test_missing_trace_file_is_one_line(tmp_path: Path) -> None:
    p = sim("--trace", str(tmp_path / "nope.swf"))
    assert p.returncode == 2
    assert "no such file" in p.stderr and p.stderr.count("\n") == 1


def test_gpu_pools_take_gpu_tasks_and_cpu_pool_takes_cpu_tasks() -> None:
    p = sim("--trace", str(DATA / "openb_pod_list_tiny.csv"), "--cpus", "16", "--gpus",
            "T4:2", "--gpus", "V100M32:8", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)["results"][0]
    assert r["rejected"] == 0 and r["completed"] == json.loads(p.stdout)["jobs"]


def test_an_integer_too_large_for_the_simulator_is_bad_input_not_a_crash(tmp_path: Path) -> None:
    trace = tmp_path / "huge.swf"
    trace.write_text("; MaxProcs: 8\n"
                     "1 0 -1 10 2 -1 -1 100000000000000000000 10 -1 1 1 1 -1 -1 -1 -1 -1\n")
    _assert_one_line_exit_2(
        sim("--trace", str(trace)),
        f"{trace}:2: field 8 (requested processors): expected an integer no larger than 2^53, "
        "got '100000000000000000000'",
    )


def test_out_below_an_existing_file_is_refused_before_simulating(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    p = sim("--trace", str(DATA / "small.swf"), "--out", str(blocker / "run"))
    _assert_one_line_exit_2(p, f"--out: '{blocker}' exists and is not a folder")


def test_out_into_an_existing_folder_adds_the_files_and_keeps_others(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    p = sim("--trace", str(DATA / "small.swf"), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "report.json").exists()
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".computility-out-")]
