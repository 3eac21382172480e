"""Every read command's --json output validates against the schema committed in schemas/cli/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas" / "cli"
TRACES = ROOT / "tests" / "data" / "traces"


def run_json(*args: str) -> object:
    p = subprocess.run([sys.executable, "-m", "computility", *args], capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def validate(document: object, schema_name: str) -> None:
    schema = json.loads((SCHEMAS / schema_name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)


def test_sim_report_matches_its_schema() -> None:
    report = run_json("sim", "--trace", str(TRACES / "lublin_256_head.swf"), "--queue",
                      "fcfs,easy,conservative", "--policy", "balanced,cheapest", "--json")
    validate(report, "sim-report.schema.json")


def test_sim_report_on_the_default_network_with_explain_matches_its_schema() -> None:
    report = run_json("sim", "--synthetic", "200", "--seed", "3", "--policy",
                      "greenest,balanced", "--explain", "7", "--json")
    validate(report, "sim-report.schema.json")


def test_sim_report_with_rejections_and_nulls_matches_its_schema(tmp_path: Path) -> None:
    trace = tmp_path / "wide.swf"
    trace.write_text("; MaxProcs: 4\n1 0 -1 10 8 -1 -1 8 10 -1 1 1 1 -1 -1 -1 -1 -1\n")
    validate(run_json("sim", "--trace", str(trace), "--json"), "sim-report.schema.json")


@pytest.mark.parametrize(
    "args",
    [
        ["--network", "default"],
        ["--network", "generated:40", "--seed", "3"],
        ["--network", "single", "--cpus", "64", "--gpus", "T4:4"],
    ],
)
def test_network_show_matches_its_schema(args: list[str]) -> None:
    validate(run_json("network", "show", *args, "--json"), "network-show.schema.json")


def test_a_report_that_breaks_the_schema_is_caught() -> None:
    schema = json.loads((SCHEMAS / "sim-report.schema.json").read_text())
    broken = {"trace": "t", "network": "single", "jobs": 1, "skipped": 0, "censored": 0,
              "results": [{"policy": "balanced", "queue": "easy"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)
