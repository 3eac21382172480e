"""The task commands against a real service: `submit`, `status`, `logs`, `cancel`, `download`,
`explain` and `quote` do what they say for a user (their bad input: test_cli_bad_input.py; their
--json shapes: test_cli_schemas.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_harness import SITE, CliResult, Service, run_all

SpecFile = Callable[..., Path]
BOTH_STREAMS = ("run: mkdir -p results && printf hello > results/x.txt && echo to-stdout && "
                "echo to-stderr >&2")


@pytest.fixture(scope="module")
def finished(service: Service, tmp_path_factory: pytest.TempPathFactory) -> int:
    """A task that wrote to both streams and left an output file, submitted with --wait."""
    path = tmp_path_factory.mktemp("specs") / "both.yaml"
    path.write_text(f"name: both\n{BOTH_STREAMS}\noutputs: [results/]\n")
    result = service.cli("submit", str(path), "--wait")
    assert result.code == 0, result.describe()
    task_id = int(result.out)
    assert service.task(task_id)["state"] == "succeeded"
    return task_id


@pytest.fixture(scope="module")
def reads(service: Service, finished: int,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, CliResult]:
    """What the read commands print about the finished task (run side by side: each is its
    own process, and starting one is most of what it costs)."""
    where = tmp_path_factory.mktemp("reads")
    (where / "priced.yaml").write_text("name: priced\nrun: echo\nresources: {cpus: 1}\n"
                                      "timeout: 10m\n")
    task = str(finished)
    return run_all(service, {
        "status": ("status", task),
        "list": ("status", "--limit", "50"),
        "succeeded": ("status", "--state", "succeeded", "--json"),
        "logs": ("logs", task),
        "logs-json": ("logs", task, "--stream", "stderr", "--json"),
        "explain": ("explain", task),
        "quote": ("quote", "priced.yaml"),
        "download": ("download", task),
        "missing": ("status", "987654"),
    }, cwd=where)


@pytest.fixture
def signal_dir() -> Iterator[Path]:
    """A directory the task's user (not necessarily ours) can see into."""
    path = Path(tempfile.mkdtemp(prefix="cu-cli-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_submit_prints_the_new_tasks_id_and_the_task_runs(service: Service,
                                                          spec: SpecFile) -> None:
    result = service.cli("submit", str(spec("one", "run: echo one")))
    assert result.code == 0, result.describe()
    task_id = int(result.out)  # the id alone on stdout, for scripts
    assert service.wait_for(task_id, "succeeded", "failed")["state"] == "succeeded"
    assert f"task {task_id} (one)" in result.err


def test_submit_several_files_submits_them_together_in_order(service: Service,
                                                             spec: SpecFile) -> None:
    files = [str(spec(name, "run: echo ok")) for name in ("first", "second")]
    tasks = service.cli("submit", *files, "--json").json()["tasks"]
    assert [t["name"] for t in tasks] == ["first", "second"]
    assert tasks[1]["id"] == tasks[0]["id"] + 1


def test_submit_wait_exits_with_the_first_failures_code(service: Service,
                                                        spec: SpecFile) -> None:
    ok, bad = spec("fine", "run: echo ok"), spec("broken", "run: exit 5")
    result = service.cli("submit", str(ok), str(bad), "--wait")
    assert result.code == 5, result.describe()
    fine, broken = (int(line) for line in result.out.split())
    assert service.task(fine)["state"] == "succeeded"
    assert service.task(broken)["state"] == "failed"
    assert f"{broken} failed" in result.err


def test_submit_wait_shows_progress_on_a_terminal_and_only_on_stderr(service: Service,
                                                                     spec: SpecFile) -> None:
    path = spec("watched", "run: sleep 1.5")
    result, terminal = service.cli_on_a_terminal("submit", str(path), "--wait")
    assert result.code == 0, result.describe()
    assert result.out.strip().isdigit()  # stdout: the id, and nothing of the progress bar
    assert b"waiting" in terminal and b"running" in terminal
    assert b"\x1b[" in terminal  # drawn and redrawn in place


def test_status_watch_keeps_a_live_table_on_a_terminal_until_the_tasks_end(
    service: Service, spec: SpecFile, signal_dir: Path
) -> None:
    go = signal_dir / "go"
    path = spec("watched-table", f"run: for i in $(seq 300); do [ -e {go} ] && break; "
                "sleep 0.1; done")
    task_id = int(service.cli("submit", str(path)).out)
    service.wait_for(task_id, "running")

    def end_the_task_once_shown_running(shown: bytes) -> None:
        if b"running" in shown:
            go.touch()

    try:
        result, terminal = service.cli_on_a_terminal(
            "status", "--watch", "--limit", "1", shown_so_far=end_the_task_once_shown_running)
    finally:
        go.touch()
    assert result.code == 0, result.describe()
    assert b"running" in terminal  # the live table, on stderr, while the task ran
    _, row = result.out.splitlines()  # the final table, on stdout
    assert row.split()[:3] == [str(task_id), "watched-table", "succeeded"]


def test_submit_wait_without_a_terminal_draws_no_progress(service: Service,
                                                          spec: SpecFile) -> None:
    result = service.cli("submit", str(spec("unwatched", "run: sleep 0.5")), "--wait")
    assert result.code == 0, result.describe()
    assert "waiting" not in result.err and "\x1b" not in result.err


def test_status_of_one_task_shows_where_it_ran_and_how_it_ended(
    reads: dict[str, CliResult]
) -> None:
    result = reads["status"]
    assert result.code == 0, result.describe()
    lines = {line.split()[0]: line for line in result.out.splitlines() if line.strip()}
    assert "succeeded" in lines["state"]
    assert SITE in lines["site"]
    assert lines["exit"].split()[-1] == "0"  # "exit code  0"


def test_status_lists_recent_tasks_newest_first_with_whole_columns(
    reads: dict[str, CliResult], finished: int
) -> None:
    result = reads["list"]
    assert result.code == 0, result.describe()
    header, *rows = result.out.splitlines()
    assert header.split() == ["id", "name", "state", "site", "submitted", "cost", "reason"]
    ids = [int(row.split()[0]) for row in rows]
    assert ids == sorted(ids, reverse=True)
    row = next(r for r in rows if r.split()[0] == str(finished))
    # Not a terminal: nothing folded onto a second line.
    assert row.split()[1:4] == ["both", "succeeded", SITE]


def test_status_state_filter_shows_only_that_state(reads: dict[str, CliResult],
                                                   finished: int) -> None:
    tasks = reads["succeeded"].json()["tasks"]
    assert finished in [t["id"] for t in tasks]
    assert {t["state"] for t in tasks} == {"succeeded"}


def test_logs_copies_the_tasks_stdout_and_stderr_to_ours(reads: dict[str, CliResult]) -> None:
    result = reads["logs"]
    assert result.code == 0, result.describe()
    assert (result.out, result.err) == ("to-stdout\n", "to-stderr\n")


def test_logs_json_with_one_stream_holds_that_stream_only(reads: dict[str, CliResult],
                                                         finished: int) -> None:
    document = reads["logs-json"].json()
    assert document == {"task": finished, "state": "succeeded", "stderr": "to-stderr\n"}


def test_logs_follow_prints_as_the_task_writes_until_it_ends(service: Service, spec: SpecFile,
                                                             signal_dir: Path) -> None:
    go = signal_dir / "go"  # the task waits for it: no race with how long the CLI takes to start
    path = spec("slow-writer", f"run: echo first; for i in $(seq 300); do [ -e {go} ] && break; "
                "sleep 0.1; done; echo second; echo late >&2")
    task_id = int(service.cli("submit", str(path)).out)
    follower = service.popen("logs", str(task_id), "-f")
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == b"first\n"
        assert service.task(task_id)["state"] == "running"  # so this is following
        go.touch()
        out, err = follower.communicate(timeout=30)
    finally:
        go.touch()
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    assert (out, err) == (b"second\n", b"late\n")
    assert service.task(task_id)["state"] == "succeeded"


def test_cancel_stops_a_running_task(service: Service, spec: SpecFile) -> None:
    task_id = int(service.cli("submit", str(spec("sleeper", "run: sleep 60"))).out)
    try:
        service.wait_for(task_id, "running")
        result = service.cli("cancel", str(task_id))
        assert result.code == 0, result.describe()
        assert result.out.split()[0] == str(task_id)
        ended = service.wait_for(task_id, "cancelled", "succeeded", "failed", "lost")
        assert ended["state"] == "cancelled"
    finally:
        service.api.post(f"/api/v1/tasks/{task_id}/cancel")


def test_download_unpacks_the_outputs_and_refuses_a_non_empty_directory(
    service: Service, finished: int, tmp_path: Path
) -> None:
    dest = tmp_path / "outputs"
    result = service.cli("download", str(finished), "--out", str(dest))
    assert result.code == 0, result.describe()
    assert (dest / "results" / "x.txt").read_text() == "hello"
    again = service.cli("download", str(finished), "--out", str(dest))
    assert again.code == 2, again.describe()
    assert "--out" in again.err and "empty" in again.err
    assert (dest / "results" / "x.txt").read_text() == "hello"  # left as it was


def test_download_defaults_to_task_id_in_the_current_directory(
    reads: dict[str, CliResult], finished: int
) -> None:
    result = reads["download"]
    assert result.code == 0, result.describe()
    assert result.cwd is not None
    where = result.cwd
    assert (where / f"task-{finished}" / "results" / "x.txt").read_text() == "hello"


def test_explain_shows_every_candidate_and_marks_the_chosen_one(
    reads: dict[str, CliResult], finished: int
) -> None:
    result = reads["explain"]
    assert result.code == 0, result.describe()
    first, header, *rows = result.out.splitlines()
    assert first.startswith(f"task {finished}: succeeded on {SITE}")
    assert header.split()[:4] == ["site", "pool", "device", "region"]
    chosen = [r for r in rows if r.lstrip().startswith("→")]
    assert len(chosen) == 1 and SITE in chosen[0]


def test_quote_prices_a_spec_at_every_site_without_submitting(
    service: Service, reads: dict[str, CliResult]
) -> None:
    result = reads["quote"]
    assert result.code == 0, result.describe()
    assert "timeout 10.0 min" in result.out
    assert any(SITE in line and "CNY" in line for line in result.out.splitlines())
    assert "priced" not in {t["name"] for t in service.api.get("/api/v1/tasks").json()["tasks"]}


def test_a_command_for_a_task_that_does_not_exist_is_one_line_exit_1(
    reads: dict[str, CliResult]
) -> None:
    result = reads["missing"]  # a service's answer, not the CLI's own bad input: exit 1
    assert result.code == 1, result.describe()
    assert result.err.strip() == "computility: no task '987654'"
