"""The service as a user starts it, for every CLI test of this directory.

`service` runs ``computility up --port PORT`` as a subprocess with fresh ``XDG_CONFIG_HOME`` and
``XDG_DATA_HOME`` directories (once for the session) and waits until ``/healthz`` answers and
``computility sites --json`` shows the local site online. ``service.cli(...)`` runs
``python -m computility ...`` in that environment, as a separate process, and checks what every
command must do whatever it is asked: never print a traceback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cli_harness import SITE, Service, clean_environment

from computility.testing.controlplane import answers, free_port, wait_until

UP_TIMEOUT_S = 60


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("cli-home")
    env = clean_environment(home)
    port = free_port()
    log_path = home / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "computility", "up", "--port", str(port)],
            env={**env, "COMPUTILITY_LOCAL_SITE": SITE}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=url, timeout=30)
    running: Service | None = None
    try:
        wait_until(lambda: answers(api) or up.poll() is not None, timeout=UP_TIMEOUT_S)
        assert up.poll() is None, log_path.read_text()
        profile = tomllib.loads((home / "config" / "computility" / "config.toml").read_text())
        key = profile["default"]["api_key"]
        api.headers["Authorization"] = f"Bearer {key}"
        running = Service(url, key, env, home, api)
        # The first example, as a user would type it right after `up` answers: the
        # local site may not have joined yet (the task then waits as pending).
        running.right_after_up = running.popen("run", "--", "python3", "-c", "print(6*7)")

        def site_online() -> bool:
            sites = running.cli("sites", "--json").json()["sites"]
            return any(s["id"] == SITE and s["online"] for s in sites)

        wait_until(site_online, timeout=UP_TIMEOUT_S, every=0.2)
        yield running
    finally:
        api.close()
        first = running.right_after_up if running is not None else None
        if first is not None and first.poll() is None:
            first.kill()
            first.wait()
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


@pytest.fixture
def spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a task spec YAML file: ``spec("name", "run: ...", ...)`` → its path."""

    def write(name: str, *lines: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\n" + "".join(f"{line}\n" for line in lines))
        return path

    return write
