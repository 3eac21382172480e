"""`computility demo`, as a new user runs it: a fresh home, no configuration, one command.

It must reach its summary with every sample task succeeded, each where the network's reasons
put it, bill each tenant exactly what its tasks cost, leave the user's profile alone, and stay
well inside its two minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "cli" / "demo.schema.json"


def fresh_home(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPUTILITY_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    (tmp_path / "home").mkdir()
    return env


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("demo")
    env = fresh_home(tmp)
    started = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "computility", "demo", "--json"], env=env,
                       cwd=tmp, capture_output=True, text=True, timeout=180, check=False)
    wall = time.monotonic() - started
    assert p.returncode == 0, p.stderr[-3000:]
    out: dict[str, Any] = json.loads(p.stdout)
    out["_wall_s"], out["_stderr"], out["_tmp"] = wall, p.stderr, tmp
    return out


def by_name(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in summary["tasks"]}


def test_every_sample_task_succeeds_within_two_minutes(summary: dict[str, Any]) -> None:
    assert summary["_wall_s"] < 120
    assert len(summary["tasks"]) >= 8
    assert {t["state"] for t in summary["tasks"]} == {"succeeded"}
    assert "Traceback" not in summary["_stderr"]


def test_the_summary_matches_its_schema(summary: dict[str, Any]) -> None:
    import jsonschema

    public = {k: v for k, v in summary.items() if not k.startswith("_")}
    jsonschema.validate(public, json.loads(SCHEMA.read_text()),
                        cls=jsonschema.Draft202012Validator)


def test_the_data_heavy_task_runs_where_its_dataset_is(summary: dict[str, Any]) -> None:
    task = by_name(summary)["era5-monthly-means"]
    assert task["site"] == "qy-data"
    assert "holds era5-china-2023" in task["why"]
    elsewhere = [c for c in task["explain"]["candidates"] if c["site"] != "qy-data"]
    chosen = next(c for c in task["explain"]["candidates"] if c["chosen"])
    # Moving 350 GB would cost more than running where the data is, at every other site.
    assert elsewhere and all(c["price"] > chosen["price"] for c in elsewhere)


def test_each_task_ran_on_the_best_candidate_of_its_policy(summary: dict[str, Any]) -> None:
    for task in summary["tasks"]:
        candidates = task["explain"]["candidates"]
        chosen = [c for c in candidates if c["chosen"]]
        assert len(chosen) == 1 and chosen[0]["site"] == task["site"], task["name"]
        scored = [c["score"] for c in candidates if c["score"] is not None]
        assert chosen[0]["score"] == min(scored), task["name"]


def test_the_gpu_task_got_an_a100_and_the_flaky_task_was_retried(
    summary: dict[str, Any],
) -> None:
    tasks = by_name(summary)
    gpu = next(c for c in tasks["resnet-finetune"]["explain"]["candidates"] if c["chosen"])
    assert gpu["device"].startswith("A100")
    flaky = tasks["flaky-preprocess"]
    assert [a["state"] for a in flaky["attempt_records"]] == ["failed", "succeeded"]
    assert "retried" in flaky["why"]


def test_each_tenant_is_billed_exactly_what_its_tasks_cost(summary: dict[str, Any]) -> None:
    for bill in summary["bills"]:
        mine = [t for t in summary["tasks"] if t["tenant"] == bill["tenant"]]
        # Attempts that ran and exited are billed; one the infrastructure lost is not.
        exited = [a for t in mine for a in t["attempt_records"]
                  if a["state"] in ("succeeded", "failed")]
        assert bill["attempts"] == len(exited)
        assert bill["total"] == pytest.approx(sum(t["cost"] for t in mine), abs=1e-6)
        assert bill["total"] > 0 and bill["kwh"] > 0 and bill["carbon_kg"] > 0


def test_the_users_profile_and_data_are_left_alone(summary: dict[str, Any]) -> None:
    for place in ("config", "data", "home"):
        left = list((summary["_tmp"] / place).rglob("*")) if (summary["_tmp"] / place).exists() \
            else []
        assert left == [], place


def test_keep_leaves_the_network_running_for_the_cli_until_ctrl_c(tmp_path: Path) -> None:
    env = fresh_home(tmp_path)
    demo = subprocess.Popen([sys.executable, "-m", "computility", "demo", "--keep"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    profile = tmp_path / "config" / "computility" / "config.toml"
    try:
        deadline = time.monotonic() + 120
        while not profile.exists():
            assert demo.poll() is None, demo.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no profile written"
            time.sleep(0.2)
        assert profile.stat().st_mode & 0o777 == 0o600
        assert "[demo]" in profile.read_text() and "[default]" not in profile.read_text()
        p = subprocess.run([sys.executable, "-m", "computility", "run", "-q", "--", "sh", "-c",
                            "echo $COMPUTILITY_SITE"], env={**env, "COMPUTILITY_PROFILE": "demo"},
                           capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() in {"zjk-wind", "yrd-ai", "tf-hydro", "ga-cloud", "qy-data"}
    finally:
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err[-2000:]
    assert "stopping the demo network" in err
    # The profile went with the network: nothing points at a service that is gone.
    assert "[demo]" not in profile.read_text()
