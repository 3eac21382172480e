"""`computility up` as a child process, the way operators run it: for tests that kill it.

A test that SIGKILLs the service mid-work (crash safety, the chaos suite) needs the real command
in its own process, restartable on the same port and database, with its own data and config
directories; `ServiceProcess` is that, and `service_env` / `operator_key` its environment and the
operator key its first start wrote.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

COMPUTILITY = str(Path(sys.executable).with_name("computility"))
"""The installed command, beside this interpreter."""


class ServiceProcess:
    """`computility up --no-local-site` as a child process, restartable on the same port."""

    def __init__(self, db_url: str, port: int, env: dict[str, str], log: Path,
                 host: str = "127.0.0.1", args: tuple[str, ...] = ()) -> None:
        self.db_url, self.port, self.env, self.log, self.host = db_url, port, env, log, host
        self.args = args
        """More options of `computility up` (``--workers 2``, say)."""
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start it and wait until /healthz answers; returns when it did (time.time())."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [COMPUTILITY, "up", "--db", self.db_url, "--host", self.host,
                 "--port", str(self.port), "--no-local-site", *self.args],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"computility up exited {self.proc.returncode}:\n"
                                     f"{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return time.time()
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"computility up did not answer within {timeout} s:\n"
                                     f"{self.tail()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, open transactions and connections just vanish."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it stopped
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a child process: this one's, less any COMPUTILITY_ setting (but the
    test database's address), with its own data and config directories."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("COMPUTILITY_") or k == "COMPUTILITY_TEST_PG"}
    env.update({
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def operator_key(env: dict[str, str]) -> str:
    """The operator key the first `computility up` wrote into the profile."""
    path = Path(env["XDG_CONFIG_HOME"]) / "computility" / "config.toml"
    with path.open("rb") as f:
        key: str = tomllib.load(f)["default"]["api_key"]
    return key
