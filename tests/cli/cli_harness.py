"""What the CLI tests share: the CLI run as a user runs it, and the service it talks to.

`Service.cli(...)` runs ``python -m computility ...`` as its own process in the service's
environment and fails the test if a command prints a traceback, whatever it was asked.
`bad_input` is what every refusal of the CLI's own input must look like.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from computility.testing.controlplane import wait_until

SITE = "cli-test-site"


@dataclass(frozen=True)
class CliResult:
    args: tuple[str, ...]
    code: int
    stdout: bytes
    stderr: bytes
    cwd: Path | None = None

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    def json(self) -> Any:
        assert self.code == 0, self.describe()
        return json.loads(self.stdout)

    def describe(self) -> str:
        return f"computility {' '.join(self.args)} -> {self.code}\n{self.out}\n{self.err}"


@dataclass
class Service:
    """A running ``computility up`` and the environment its CLI runs in."""

    url: str
    key: str
    env: dict[str, str]
    home: Path
    api: httpx.Client = field(repr=False)
    right_after_up: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def cli(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            stdin: bytes | None = None, timeout: float = 60) -> CliResult:
        """Run ``computility ARGS`` as its own process; fails the test on a traceback."""
        p = subprocess.run([sys.executable, "-m", "computility", *args],
                           env={**self.env, **(env or {})}, cwd=cwd, input=stdin,
                           capture_output=True, timeout=timeout, check=False)
        result = CliResult(args, p.returncode, p.stdout, p.stderr, cwd)
        assert b"Traceback" not in p.stderr + p.stdout, result.describe()
        return result

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "computility", *args], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def cli_on_a_terminal(self, *args: str, timeout: float = 60,
                          shown_so_far: Callable[[bytes], None] | None = None
                          ) -> tuple[CliResult, bytes]:
        """Run ``computility ARGS`` with stderr on a pseudo-terminal (stdout still a pipe), as
        when a person watches; the result and what the terminal showed (also passed to
        `shown_so_far` as it grows)."""
        controller, terminal = pty.openpty()
        p = subprocess.Popen([sys.executable, "-m", "computility", *args],
                             env={**self.env, "TERM": "xterm-256color"}, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=terminal)
        os.close(terminal)
        shown = bytearray()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([controller], [], [], 0.1)
                if not ready:
                    continue
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: every writer has gone
                    break
                if not chunk:
                    break
                shown += chunk
                if shown_so_far is not None:
                    shown_so_far(bytes(shown))
            assert p.stdout is not None
            stdout = p.stdout.read()
            code = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            os.close(controller)
            if p.poll() is None:
                p.kill()
                p.wait()
        result = CliResult(args, code, stdout, bytes(shown))
        assert b"Traceback" not in result.stderr, result.describe()
        return result, bytes(shown)

    def task(self, task_id: int) -> dict[str, Any]:
        """A task's record over the REST API (for waiting; the CLI is what is under test)."""
        record: dict[str, Any] = self.api.get(f"/api/v1/tasks/{task_id}").json()
        return record

    def wait_for(self, task_id: int, *states: str, timeout: float = 30) -> dict[str, Any]:
        wait_until(lambda: self.task(task_id)["state"] in states, timeout=timeout, every=0.05)
        return self.task(task_id)


def bad_input(result: CliResult, *names: str) -> str:
    """Assert the CLI refused its own input: exit 2, nothing on stdout, one line on stderr
    naming each of `names`; that line."""
    assert result.code == 2, result.describe()
    assert result.stdout == b"", result.describe()
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.describe()
    for name in names:
        assert name in lines[0], result.describe()
    return lines[0]


def clean_environment(home: Path) -> dict[str, str]:
    """Ours, without any Computility setting, with `home`'s own config and data directories."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPUTILITY_", "_COMPUTILITY_")) and k != "COLUMNS"}
    env.update(XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
               PYTHONUNBUFFERED="1")
    return env


@dataclass(frozen=True)
class Call:
    """One invocation for `run_all` that needs more than arguments."""

    args: tuple[str, ...]
    env: dict[str, str] | None = None


def run_all(service: Service, calls: dict[str, tuple[str, ...] | Call], cwd: Path | None = None,
            workers: int = 3) -> dict[str, CliResult]:
    """Run independent CLI invocations side by side (each is its own process either way);
    their results by name. Start-up dominates a CLI call, so this keeps a table of cases fast."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {}
        for name, call in calls.items():
            one = call if isinstance(call, Call) else Call(call)
            futures[name] = pool.submit(service.cli, *one.args, env=one.env, cwd=cwd)
        return {name: future.result() for name, future in futures.items()}
