"""`computility sim` across a network: choosing it, the time curves start at, and --explain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TWO_SITES = """\
format: computility-network/1
name: two-sites
regions:
  - {id: EAST, lat: 31.2, lon: 121.5}
  - {id: WEST, lat: 30.6, lon: 104.1}
sites:
  - id: east-1
    region: EAST
    owner: acme
    pue: 1.3
    electricity_price_per_kwh: 0.6
    carbon_kg_per_kwh: 0.55
    pools:
      - {id: cpu, device: XEON-8380, count: 8, devices_per_node: 8, price_per_cu_hour: 5.0}
  - id: west-1
    region: WEST
    owner: acme
    pue: 1.2
    electricity_price_per_kwh: 0.35
    carbon_kg_per_kwh: 0.15
    pools:
      - {id: cpu, device: XEON-8380, count: 4, devices_per_node: 4, price_per_cu_hour: 1.0}
links:
  - {from: EAST, to: WEST, latency_ms: 20, bandwidth_gbps: 100, egress_per_gb: 0.2}
demand:
  - {id: SH, lat: 31.23, lon: 121.47, latency_ms: {EAST: 5.5, WEST: 23}}
"""

# Computility CSV: three 4-core tasks of an hour at time 0, and one 8-core task.
TASKS = """\
id,submit_s,run_s,cpus
1,0,3600,4
2,0,3600,4
3,0,3600,4
4,0,3600,8
"""


def sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "computility", "sim", *args],
        capture_output=True, text=True, check=False,
    )


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    net = tmp_path / "two.yaml"
    net.write_text(TWO_SITES)
    trace = tmp_path / "tasks.csv"
    trace.write_text(TASKS)
    return net, trace


def report(*args: str) -> dict[str, object]:
    p = sim(*args, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert isinstance(out, dict)
    return out


def test_a_network_file_is_placed_on_and_named_in_the_report(files: tuple[Path, Path]) -> None:
    net, trace = files
    r = report("--trace", str(trace), "--network", str(net), "--policy", "cheapest")
    assert r["network"] == str(net)
    (result,) = r["results"]  # type: ignore[misc]
    assert result["completed"] == 4 and result["rejected"] == 0


def test_explain_shows_every_candidate_and_why_the_task_waits(files: tuple[Path, Path]) -> None:
    net, trace = files
    r = report("--trace", str(trace), "--network", str(net), "--policy", "cheapest",
               "--explain", "3")
    (result,) = r["results"]  # type: ignore[misc]
    placing, waiting = result["explain"]
    assert placing["state"] == "placing" and placing["task"] == 3
    sites = [c["site"] for c in placing["candidates"]]
    assert sorted(sites) == ["east-1", "west-1"]
    assert [c["chosen"] for c in placing["candidates"]].count(True) == 1
    # Tasks 1 and 2 went to the cheap west site (4 cores: one runs, one waits); for task 3 the
    # estimate shows west-1 two hours away and east-1 free, and cheapest still takes west-1.
    by_site = {c["site"]: c for c in placing["candidates"]}
    assert by_site["east-1"]["wait_s"] == 0.0
    assert by_site["west-1"]["wait_s"] == 7200.0
    assert by_site["west-1"]["chosen"] and by_site["west-1"]["money"] < by_site["east-1"]["money"]
    assert placing["rejected"] == {}
    assert waiting["state"] == "queued"
    assert waiting["blocker"].startswith("behind 1 task(s) in west-1/cpu (XEON-8380)'s queue")
    assert waiting["estimated_start_s"] == 7200.0


def test_explain_of_a_task_too_wide_names_each_site_ruled_out(files: tuple[Path, Path]) -> None:
    net, trace = files
    r = report("--trace", str(trace), "--network", str(net), "--explain", "4")
    (result,) = r["results"]  # type: ignore[misc]
    (placing, *_) = result["explain"]
    assert placing["rejected"] == {"west-1": "largest node holds 4 cores; the task needs 8"}
    assert [c["site"] for c in placing["candidates"]] == ["east-1"]


def test_explain_of_a_queued_task_names_its_blocker_and_estimated_start(tmp_path: Path) -> None:
    trace = tmp_path / "two.csv"
    trace.write_text("id,submit_s,run_s,cpus\n1,0,100,4\n2,10,50,4\n")
    r = report("--trace", str(trace), "--cpus", "4", "--explain", "2")
    (result,) = r["results"]  # type: ignore[misc]
    (waiting,) = [e for e in result["explain"] if e["state"] != "placing"]
    assert waiting["state"] == "queued"
    assert "first in line" in waiting["blocker"] and "needs 4 cores, 0 free" in waiting["blocker"]
    assert waiting["estimated_start_s"] == 100.0


def test_explain_in_the_table_output_prints_the_candidates(files: tuple[Path, Path]) -> None:
    net, trace = files
    p = sim("--trace", str(trace), "--network", str(net), "--explain", "4")
    assert p.returncode == 0, p.stderr
    assert "task 4 placed at 0 s" in p.stdout.replace("0.000", "0")
    assert "west-1: ruled out: largest node holds 4 cores; the task needs 8" in p.stdout


def test_explain_of_an_unknown_task_is_a_one_line_usage_error(files: tuple[Path, Path]) -> None:
    net, trace = files
    p = sim("--trace", str(trace), "--network", str(net), "--explain", "99")
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "no task with id 99" in p.stderr


def test_cpus_with_a_network_of_its_own_is_refused(files: tuple[Path, Path]) -> None:
    net, trace = files
    p = sim("--trace", str(trace), "--network", str(net), "--cpus", "4")
    assert p.returncode == 2
    assert "--cpus and --gpus size the single site" in p.stderr


def test_a_bad_network_file_is_one_located_line(tmp_path: Path) -> None:
    net = tmp_path / "bad.yaml"
    net.write_text(TWO_SITES.replace("pue: 1.2", "pue: high"))
    trace = tmp_path / "t.csv"
    trace.write_text(TASKS)
    p = sim("--trace", str(trace), "--network", str(net))
    assert p.returncode == 2
    line = p.stderr.strip()
    assert line.count("\n") == 0 and line.startswith(f"{net}:") and "pue" in line


def test_the_start_time_moves_runs_along_the_carbon_and_price_curves() -> None:
    # The default network's curves vary by hour: the same work started at local midnight and at
    # local noon is billed and emits differently, and the same start gives the same figures.
    def figures(start: str) -> tuple[float, float]:
        r = report("--synthetic", "300", "--seed", "1", "--start", start)
        (result,) = r["results"]  # type: ignore[misc]
        return float(result["cost"]), float(result["carbon_kg"])

    midnight = figures("2024-01-01T00:00:00+08:00")
    noon = figures("2024-01-01T12:00:00+08:00")
    assert midnight != noon
    assert figures("2024-01-01T04:00:00+00:00") == noon


def test_explaining_a_task_changes_no_decision_even_under_the_random_policy(
    files: tuple[Path, Path],
) -> None:
    net, trace = files
    plain = report("--trace", str(trace), "--network", str(net), "--policy", "random")
    explained = report("--trace", str(trace), "--network", str(net), "--policy", "random",
                       "--explain", "2")
    drop = {"wall_s", "events_per_s", "explain"}
    strip = [{k: v for k, v in r.items() if k not in drop} for r in plain["results"]]  # type: ignore[union-attr]
    assert strip == [{k: v for k, v in r.items() if k not in drop}
                     for r in explained["results"]]  # type: ignore[union-attr]


def test_placement_full_scores_every_candidate_and_an_unknown_mode_is_refused() -> None:
    full = report("--synthetic", "300", "--network", "generated:40", "--seed", "2",
                  "--placement", "full")
    auto = report("--synthetic", "300", "--network", "generated:40", "--seed", "2")
    (f,) = full["results"]  # type: ignore[misc]
    (a,) = auto["results"]  # type: ignore[misc]
    assert f["completed"] == a["completed"] == 300
    p = sim("--synthetic", "10", "--placement", "fastest")
    assert p.returncode == 2 and "--placement: expected one of auto, full" in p.stderr
