"""Every command refuses its own bad input the same way: exit 2, nothing on stdout, and one line
on stderr that names the option, argument or spec field and what was expected (never a
traceback: `Service.cli` checks that for every call of every test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_harness import CliResult, Service, bad_input, run_all

# name: (arguments, what the one line must name)
CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "run --memory": (("run", "--memory", "lots", "--", "true"),
                     ("--memory", "expected a size", "GB", "'lots'")),
    "run --gpus": (("run", "--gpus", "XX:1", "--", "true"),
                   ("--gpus", "expected a device type", "XX")),
    "run --policy": (("run", "--policy", "best", "--", "true"),
                     ("--policy", "balanced", "cheapest", "fastest", "greenest", "best")),
    "run without a command": (("run",), ("expected a command after '--'",)),
    # A digit to str.isdigit() but not to int(): still the option's own one line.
    "run --cpus": (("run", "--cpus", "²", "--", "true"), ("--cpus", "integer", "'²'")),
    # Well formed, but no pool could ever hold it: the service refuses it, still exit 2.
    "run too big": (("run", "--gpus", "H100:4096", "--", "true"), ("resources",)),
    "submit bad field": (("submit", "bad.yaml"),
                         ("bad.yaml:4", "memory", "expected a size", "'lots'")),
    "submit missing file": (("submit", "nope.yaml"), ("nope.yaml", "cannot read")),
    "status --state": (("status", "--state", "bogus"),
                       ("--state", "pending", "running", "succeeded", "'bogus'")),
    "status ID": (("status", "abc"), ("task_id", "integer")),
    "logs --stream": (("logs", "1", "--stream", "both2"),
                      ("--stream", "stdout, stderr or both", "'both2'")),
    "logs --follow --json": (("logs", "1", "-f", "--json"), ("--json", "--follow")),
    "cancel ID": (("cancel", "one"), ("task_ids", "integer")),
    "download --out": (("download", "1", "--out", "full"), ("--out", "empty", "'full'")),
    "explain ID": (("explain", "-3"), ("-3",)),
    "quote bad field": (("quote", "bad.yaml"), ("bad.yaml:4", "memory")),
    "usage --period": (("usage", "--period", "yesterday"),
                       ("--period", "month", "day", "week", "YYYY-MM", "'yesterday'")),
    "usage --period month 13": (("usage", "--period", "2026-13"), ("--period", "'2026-13'")),
    "sites option": (("sites", "--bogus"), ("--bogus",)),
    "login --server": (("login", "--server", "ftp://example.org", "--key", "cu_a_b"),
                       ("--server", "http://", "https://", "'ftp://example.org'")),
    "login --key": (("login", "--server", "http://127.0.0.1:1", "--key", "hunter2"),
                    ("--key", "cu_<id>_<secret>")),
    "unknown command": (("frobnicate",), ("frobnicate",)),
}


def newest_task_id(service: Service) -> int | None:
    tasks = service.api.get("/api/v1/tasks").json()["tasks"]
    return int(tasks[0]["id"]) if tasks else None


@pytest.fixture(scope="module")
def results(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CliResult]:
    where = tmp_path_factory.mktemp("bad-input")
    (where / "bad.yaml").write_text("name: bad\nrun: echo\nresources:\n  memory: lots\n")
    (where / "full").mkdir()
    (where / "full" / "keep.txt").write_text("mine")
    before = newest_task_id(service)
    found = run_all(service, {name: args for name, (args, _) in CASES.items()}, cwd=where,
                    workers=4)
    # Refused means refused: not one task was created by any of them ...
    assert newest_task_id(service) == before
    # ... and nothing of the user's was touched.
    assert (where / "full" / "keep.txt").read_text() == "mine"
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_naming_the_field_and_exit_2(results: dict[str, CliResult],
                                                           case: str) -> None:
    bad_input(results[case], *CASES[case][1])


def test_the_line_says_what_was_expected(results: dict[str, CliResult]) -> None:
    for case in ("run --memory", "status --state", "usage --period", "submit bad field"):
        line = bad_input(results[case])
        assert "expected" in line, (case, line)


def test_a_bad_spec_line_has_the_contracts_format(results: dict[str, CliResult]) -> None:
    line = bad_input(results["submit bad field"])
    assert line.startswith("bad.yaml:4: field resources (memory): expected ")
    assert Path(line.split(":")[0]).name == "bad.yaml"
