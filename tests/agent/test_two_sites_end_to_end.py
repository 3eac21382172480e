"""The whole path on one machine: `computility up` (with its local site) plus a Slurm-backed
agent; 200 tasks through the API run on both sites, with logs, outputs, usage and bills.

Needs the single-node Slurm cluster `scripts/ensure-slurm.sh` starts (skips without it, which
fails CI).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from computility.testing.backends import slurm_ready
from computility.testing.controlplane import answers, free_port, new_tenant, wait_until
from computility.testing.tasks import finished, logs

TASKS = 200


@pytest.fixture
def network(tmp_path: Path, tasks_root: Path) -> Iterator[tuple[httpx.Client, Path]]:
    why = slurm_ready()
    if why is not None:
        pytest.skip(why)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTILITY_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
               COMPUTILITY_LOCAL_SITE="workstation")
    procs: list[subprocess.Popen[bytes]] = []
    up_log = (tmp_path / "up.log").open("wb")
    procs.append(subprocess.Popen([sys.executable, "-m", "computility", "up", "--port",
                                   str(port)], env=env, stdout=up_log, stderr=subprocess.STDOUT))
    try:
        profile = tmp_path / "config" / "computility" / "config.toml"
        wait_until(profile.exists, timeout=60)
        key = tomllib.loads(profile.read_text())["default"]["api_key"]
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"Authorization": f"Bearer {key}"})
        wait_until(lambda: answers(client), timeout=60)
        token = tmp_path / "provider.key"
        token.write_text(new_tenant(client, "cluster-owner", role="provider"))
        token.chmod(0o600)
        agent_log = (tmp_path / "agent.log").open("wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "computility", "agent", "--server", client.base_url.__str__(),
             "--token-file", str(token), "--site", "hpc-cluster", "--backend", "slurm",
             "--state-dir", str(tmp_path / "agent"), "--tasks-root", str(tasks_root)],
            env=env, stdout=agent_log, stderr=subprocess.STDOUT))
        wait_until(lambda: sorted(s["id"] for s in client.get("/api/v1/sites").json()
                                  if s["online"]) == ["hpc-cluster", "workstation"], timeout=90)
        yield client, tmp_path
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_200_tasks_run_on_a_local_and_a_slurm_site_and_are_billed_once(
    network: tuple[httpx.Client, Path],
) -> None:
    client, _ = network
    specs = [{"name": f"e2e-{i}", "run": f"echo task-{i}; mkdir -p out; echo {i} > out/i.txt",
              "outputs": ["out/"], "resources": {"cpus": 1, "estimate": "5s"}, "timeout": "10m"}
             for i in range(TASKS)]
    r = client.post("/api/v1/tasks/batch", json={"tasks": specs})
    assert r.status_code == 201, r.text
    ids = [t["id"] for t in r.json()["tasks"]]
    tasks = finished(client, ids, timeout=900)
    assert Counter(t["state"] for t in tasks) == {"succeeded": TASKS}
    per_site = Counter(t["site"] for t in tasks)
    assert set(per_site) == {"workstation", "hpc-cluster"}, per_site
    for i, task in enumerate(tasks):
        if i % 10:  # every tenth task's files are read back in full
            continue
        assert logs(client, task["id"]) == f"task-{i}\n"
        body = io.BytesIO(client.get(f"/api/v1/tasks/{task['id']}/outputs").content)
        with tarfile.open(fileobj=body) as archive:
            member = archive.extractfile("out/i.txt")
            assert member is not None and member.read() == f"{i}\n".encode()
        (attempt,) = client.get(f"/api/v1/tasks/{task['id']}/attempts").json()
        assert attempt["usage"]["wall_s"] is not None
    usage = client.get("/api/v1/usage").json()
    assert usage["attempts"] == TASKS
    assert abs(usage["total"] - sum(t["cost"] for t in tasks)) < 1e-6
