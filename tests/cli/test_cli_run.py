"""`computility run -- ARGV...` behaves as if the command ran here: its stdout and stderr byte for
byte, its exit code (128+N for a signal, 124 for a timeout); the CLI's own lines on stderr; its
own bad input is one line and exit 2 (test_cli_bad_input.py)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_harness import Service


def test_run_right_after_up_prints_42_and_exits_0(service: Service) -> None:
    first = service.right_after_up  # started as soon as `up` answered (see conftest)
    assert first is not None
    out, err = first.communicate(timeout=60)
    assert (first.returncode, out) == (0, b"42\n"), err
    assert b"Traceback" not in err
    # The CLI's own lines (where it ran, what it cost) are on stderr only.
    assert b"computility: task" in err and b"succeeded" in err


def test_run_prints_42_and_exits_0(service: Service) -> None:
    result = service.cli("run", "--", "python3", "-c", "print(6*7)")
    assert (result.code, result.stdout) == (0, b"42\n"), result.describe()
    assert result.err.splitlines()[-1].startswith("computility: task ")


def test_run_exits_with_the_tasks_exit_code(service: Service) -> None:
    result = service.cli("run", "--", "sh", "-c", "exit 3")
    assert result.code == 3, result.describe()
    assert result.stdout == b""


def test_run_copies_both_streams_byte_for_byte(service: Service) -> None:
    # Bytes that are not UTF-8, a NUL, a carriage return and no final newline.
    program = ("import sys; sys.stdout.buffer.write(b'out\\xff\\x00\\r\\n1'); "
               "sys.stderr.buffer.write(b'err\\xfe\\n2')")
    result = service.cli("run", "--quiet", "--", "python3", "-c", program)
    assert result.code == 0, result.describe()
    assert result.stdout == b"out\xff\x00\r\n1"
    assert result.stderr == b"err\xfe\n2"  # --quiet: nothing of ours in between


def test_a_task_killed_by_a_signal_exits_128_plus_n(service: Service) -> None:
    result = service.cli("run", "--", "python3", "-c",
                         "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert result.code == 128 + 9, result.describe()


def test_a_task_over_its_timeout_exits_124(service: Service) -> None:
    started = time.monotonic()
    result = service.cli("run", "--timeout", "1s", "--", "sleep", "30")
    assert result.code == 124, result.describe()
    assert time.monotonic() - started < 20
    assert "timed out" in result.err


def test_run_shows_output_while_the_task_is_still_running(service: Service) -> None:
    # Lines written over several seconds arrive as they are written, not all at the end.
    p = service.popen("run", "-q", "--", "sh", "-c",
                      "for i in 1 2 3 4 5 6; do echo line $i; sleep 1; done")
    assert p.stdout is not None
    started = time.monotonic()
    arrivals = []
    for raw in iter(p.stdout.readline, b""):
        arrivals.append((raw.strip().decode(), time.monotonic() - started))
    assert p.wait(timeout=30) == 0
    assert [line for line, _ in arrivals] == [f"line {i}" for i in range(1, 7)]
    # The run lasts about 6 s; the third line must be shown well before its end.
    assert arrivals[2][1] < arrivals[-1][1] - 1.5, arrivals


def test_arguments_after_the_double_dash_are_the_commands_own(service: Service) -> None:
    result = service.cli("run", "-q", "--", "echo", "--gpus", "A100:1", "B:2", "--json")
    assert (result.code, result.out) == (0, "--gpus A100:1 B:2 --json\n"), result.describe()


def _submitted_id(p: subprocess.Popen[bytes]) -> int:
    assert p.stderr is not None
    for raw in iter(p.stderr.readline, b""):
        found = re.search(rb"task (\d+) submitted", raw)
        if found:
            return int(found.group(1))
    raise AssertionError("run never said which task it submitted")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                              (signal.SIGHUP, 129)])
def test_a_signal_to_run_cancels_its_task(service: Service, signum: int, code: int) -> None:
    p = service.popen("run", "--", "sleep", "60")
    task = _submitted_id(p)
    service.wait_for(task, "running")
    p.send_signal(signum)
    assert p.wait(timeout=30) == code
    assert service.wait_for(task, "cancelled")["state"] == "cancelled"


def test_run_whose_stderr_reader_goes_away_cancels_its_task(service: Service) -> None:
    p = service.popen("run", "--", "sh", "-c", "sleep 2; echo out; echo err >&2; sleep 60")
    task = _submitted_id(p)
    assert p.stderr is not None
    p.stderr.close()  # nobody reads our stderr any more
    assert p.wait(timeout=30) != 0
    assert service.wait_for(task, "cancelled")["state"] == "cancelled"


def test_logs_follow_starts_over_when_a_retry_replaces_the_log(
    service: Service, spec: Callable[..., Path],
) -> None:
    path = spec("retried-log", "retries: 1", "run: |",
                "  if [ \"$COMPUTILITY_ATTEMPT_NUMBER\" = 1 ]; then",
                "    echo first-attempt-with-a-long-line; sleep 2; exit 1",
                "  fi",
                "  sleep 2; echo second")
    task = int(service.cli("submit", str(path)).out.strip())
    service.wait_for(task, "running")
    result = service.cli("logs", "-f", "--stream", "stdout", str(task), timeout=60)
    assert result.code == 0, result.describe()
    assert result.out.endswith("second\n"), result.describe()
    assert "started over" in result.err
