"""A task on a local site gets what it was allocated and nothing of the agent's.

Its CPU affinity is exactly its cores; ``CUDA_VISIBLE_DEVICES`` lists only its devices; over its
memory limit it is killed and reported as such; it runs as an unprivileged user (the agent is root
in CI) and cannot read the agent's key; and an agent's key serves its own site only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from computility.agent.site import KEY_FILE, SiteAgent
from computility.server.api.deps import CACHE_S
from computility.testing.controlplane import LocalControlPlane, new_tenant, wait_until
from computility.testing.tasks import finished, logs, submit

StartSite = Callable[..., SiteAgent]
AFFINITY = "grep Cpus_allowed_list /proc/self/status | cut -f2"


def test_cpu_affinity_is_the_allocation(start_site: StartSite, user: httpx.Client) -> None:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs at least two cores to tell allocations apart")
    start_site()
    # Two one-core tasks at once get different cores; a task of every core gets them all.
    pair = [submit(user, run=f"{AFFINITY}; sleep 1", resources={"cpus": 1}) for _ in range(2)]
    whole = submit(user, run=AFFINITY, resources={"cpus": len(cores)})
    tasks = finished(user, [*pair, whole])
    assert {t["state"] for t in tasks} == {"succeeded"}
    seen = sorted(logs(user, t).strip() for t in pair)
    assert seen == sorted(str(c) for c in cores[:2])
    assert logs(user, whole).strip() == f"{cores[0]}-{cores[-1]}"


def test_cuda_visible_devices_lists_only_the_tasks_devices(
    start_site: StartSite, user: httpx.Client
) -> None:
    # Declared devices (no GPU here): the agent hands out ids exactly as it would real ones.
    start_site(emulated=True, pools=[
        {"id": "cpu", "device": "XEON-8380", "count": 4},
        {"id": "l40s", "device": "L40S", "count": 4, "devices": ["0", "1", "2", "3"]}])
    show = 'echo "[$CUDA_VISIBLE_DEVICES]"; sleep 1'
    gpu = [submit(user, run=show, resources={"accelerators": "L40S:2"}) for _ in range(2)]
    cpu = submit(user, run=show)
    tasks = finished(user, [*gpu, cpu])
    assert {t["state"] for t in tasks} == {"succeeded"}
    assert sorted(logs(user, t).strip() for t in gpu) == ["[0,1]", "[2,3]"]
    assert logs(user, cpu).strip() == "[]"


def test_a_task_over_its_memory_limit_is_killed_and_reported(
    start_site: StartSite, user: httpx.Client
) -> None:
    start_site()
    hog = ("python3 -c 'import time\nblocks = []\nwhile True:\n"
           "    blocks.append(bytearray(16 << 20))\n    time.sleep(0.05)'")
    task = submit(user, run=hog, resources={"memory": "200MB"})
    (done,) = finished(user, [task], timeout=120)
    assert done["state"] == "failed"
    (attempt,) = user.get(f"/api/v1/tasks/{task}/attempts").json()
    assert attempt["usage"]["out_of_memory"] is True
    assert "memory limit" in done["reason"]


@pytest.mark.skipif(os.geteuid() != 0, reason="tasks run as another user only when the agent "
                    "is root; as a plain user the task is that user (documented)")
def test_a_task_cannot_read_the_agents_key(start_site: StartSite, user: httpx.Client) -> None:
    agent = start_site()
    key_file = agent.state_dir / KEY_FILE
    assert key_file.read_text().startswith("cu_")
    task = submit(user, run=f"id -un; cat {key_file} && echo READ-THE-KEY; "
                  f"cat /proc/{os.getpid()}/environ >/dev/null && echo READ-THE-ENV; "
                  "env | grep -c cu_ || true")
    (done,) = finished(user, [task])
    assert done["state"] == "succeeded"
    out = logs(user, task)
    assert out.splitlines()[0] == "nobody"
    assert "READ-THE-KEY" not in out and "READ-THE-ENV" not in out
    assert out.splitlines()[-1] == "0"


def test_an_agent_key_serves_its_own_site_only(
    start_site: StartSite, user: httpx.Client, service: LocalControlPlane, tmp_path: Path
) -> None:
    mine = start_site("lab-mine")
    theirs = start_site("lab-theirs")
    task = submit(user, run="sleep 5", placement={"sites": ["lab-theirs"]})
    wait_until(lambda: user.get(f"/api/v1/tasks/{task}").json()["state"] == "running")
    (attempt,) = user.get(f"/api/v1/tasks/{task}/attempts").json()
    held = next(h for h in theirs.held() if h.attempt == attempt["id"])
    my_key = (mine.state_dir / KEY_FILE).read_text()
    with httpx.Client(base_url=service.url, timeout=30,
                      headers={"Authorization": f"Bearer {my_key}"}) as as_mine:
        r = as_mine.post(f"/api/v1/agent/attempts/{attempt['id']}/report",
                         json={"token": held.token, "state": "exited", "exit_code": 0})
        assert r.status_code == 404
        r = as_mine.put(f"/api/v1/agent/attempts/{attempt['id']}/files/stdout", content=b"x",
                        headers={"X-Attempt-Token": str(held.token)})
        assert r.status_code == 404
        r = as_mine.post("/api/v1/agent/heartbeat", json={"free": {"cpu": 1}, "running": [
            {"attempt": attempt["id"], "token": held.token}]})
        assert r.status_code == 200 and attempt["id"] in r.json()["unknown"]
        r = as_mine.post("/api/v1/agent/lease", json={"free": {"cpu": 2}, "wait_s": 0})
        assert r.status_code == 200 and r.json()["leases"] == []
    with service.client() as admin:
        provider = new_tenant(admin, "other-provider", role="provider")
    with httpx.Client(base_url=service.url, timeout=30,
                      headers={"Authorization": f"Bearer {provider}"}) as other:
        r = other.post("/api/v1/sites", json={"id": "lab-theirs", "region": "ZJK", "pools": [
            {"id": "cpu", "device": "XEON-8380", "count": 1, "price_per_cu_hour": 0}]})
        assert r.status_code == 409
    assert finished(user, [task])[0]["state"] == "succeeded"


def test_a_restarted_agent_revokes_the_key_of_the_one_before(
    start_site: StartSite, service: LocalControlPlane
) -> None:
    agent = start_site("lab-restarts")
    old = (agent.state_dir / KEY_FILE).read_text()
    agent.register()  # what a restarted agent does first
    new = (agent.state_dir / KEY_FILE).read_text()
    assert new != old
    time.sleep(CACHE_S + 0.5)  # keys are cached by the service for a few seconds
    for key, status in ((old, 401), (new, 200)):
        with httpx.Client(base_url=service.url, timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as as_agent:
            r = as_agent.post("/api/v1/agent/heartbeat", json={"free": {}})
            assert r.status_code == status, r.text
