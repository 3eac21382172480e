"""`computility run -- ARGV...` behaves as if the command ran here: its stdout and stderr byte for
byte, its exit code (128+N for a signal, 124 for a timeout); the CLI's own lines on stderr; its
own bad input is one line and exit 2 (test_cli_bad_input.py)."""

from __future__ import annotations

import time

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
