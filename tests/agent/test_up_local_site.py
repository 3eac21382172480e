"""`computility up` joins this machine as a site: right after it, a task runs here with no other
step; on SIGINT it stops the local site's tasks, reports them (re-placed at no charge), then
stops."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

from computility.testing.controlplane import answers, free_port, wait_until
from computility.testing.processes import processes_with
from computility.testing.tasks import finished, logs, submit


def test_up_runs_a_local_site_and_stops_its_tasks_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTILITY_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
               COMPUTILITY_LOCAL_SITE="this-machine")
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "computility", "up", "--port", str(port)],
                          env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        profile = tmp_path / "config" / "computility" / "config.toml"
        wait_until(profile.exists, timeout=60)
        key = tomllib.loads(profile.read_text())["default"]["api_key"]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            wait_until(lambda: answers(client), timeout=60)
            wait_until(lambda: [s["id"] for s in client.get("/api/v1/sites").json()]
                       == ["this-machine"], timeout=60)
            (done,) = finished(client, [submit(client, run="echo hi")])
            assert (done["state"], done["site"]) == ("succeeded", "this-machine")
            assert logs(client, done["id"]) == "hi\n"
            marker = f"cu-up-{time.monotonic_ns()}"
            task = submit(client, run=f"exec python3 -c 'import time; time.sleep(300)' {marker}")
            wait_until(lambda: client.get(f"/api/v1/tasks/{task}").json()["state"] == "running")
            up.send_signal(signal.SIGINT)
            assert up.wait(timeout=60) == 130  # 128 + SIGINT, as shells expect
        assert processes_with(marker) == []
        # Its agent reported the stop before the service went away: the site's doing, not the
        # task's, so it waits to be placed again, at no charge.
        db = sqlite3.connect(tmp_path / "data" / "computility" / "computility.db")
        state, infra = db.execute("SELECT state, infra_failures FROM tasks WHERE id = ?",
                                  (task,)).fetchone()
        billed = db.execute("SELECT count(*) FROM ledger").fetchone()[0]
        db.close()
        assert (state, infra, billed) == ("pending", 1, 1)
    finally:
        if up.poll() is None:
            up.kill()
    log.close()
    text = (tmp_path / "up.log").read_text()
    assert "local site 'this-machine' joined" in text
    assert "Traceback" not in text
