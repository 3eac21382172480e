"""A machine joined as a site runs users' tasks for real: output, outputs, usage and bills.

The control plane is the real service over HTTP; the site is the real agent with the local
backend (each task under its own supervisor process).
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from typing import Any

import httpx

from computility.agent.site import SiteAgent
from computility.testing.controlplane import LocalControlPlane, wait_until
from computility.testing.processes import processes_with
from computility.testing.tasks import finished, submit
from computility.wire.archives import pack

StartSite = Callable[..., SiteAgent]


def test_tasks_run_and_their_output_outputs_and_usage_come_back(
    start_site: StartSite, user: httpx.Client
) -> None:
    start_site()
    ids = [submit(user, run=f"echo hello-{i}; echo warn-{i} >&2; mkdir -p results; "
                  f"echo {i} > results/n.txt", outputs=["results/"]) for i in range(5)]
    for i, task in zip(range(5), finished(user, ids), strict=True):
        assert task["state"] == "succeeded", task
        tid = task["id"]
        assert user.get(f"/api/v1/tasks/{tid}/logs").text == f"hello-{i}\n"
        assert user.get(f"/api/v1/tasks/{tid}/logs", params={"stream": "stderr"}).text == \
            f"warn-{i}\n"
        body = io.BytesIO(user.get(f"/api/v1/tasks/{tid}/outputs").content)
        with tarfile.open(fileobj=body) as archive:
            member = archive.extractfile("results/n.txt")
            assert member is not None and member.read() == f"{i}\n".encode()
        (attempt,) = user.get(f"/api/v1/tasks/{tid}/attempts").json()
        usage = attempt["usage"]
        assert usage["wall_s"] >= 0 and usage["cpu_s"] >= 0 and usage["max_rss_bytes"] > 0


def test_the_uploaded_workdir_is_checked_and_unpacked_before_setup(
    start_site: StartSite, user: httpx.Client, tmp_path: Any
) -> None:
    start_site()
    src = tmp_path / "project"
    src.mkdir()
    (src / "data.txt").write_text("from the workdir\n")
    digest = user.post("/api/v1/uploads", content=pack(src)).json()["digest"]
    tid = submit(user, run="cat data.txt prepared.txt", setup="echo prepared > prepared.txt",
                 workdir=digest)
    (task,) = finished(user, [tid])
    assert task["state"] == "succeeded"
    assert user.get(f"/api/v1/tasks/{tid}/logs").text == "from the workdir\nprepared\n"
    (attempt,) = user.get(f"/api/v1/tasks/{tid}/attempts").json()
    assert attempt["usage"]["staged_bytes"] == len(pack(src))


def test_a_failing_task_and_a_timed_out_task_say_how_they_ended(
    start_site: StartSite, user: httpx.Client
) -> None:
    start_site()
    failing = submit(user, run="echo bad >&2; exit 3")
    slow = submit(user, run="sleep 60", timeout="2s")
    by_id = {t["id"]: t for t in finished(user, [failing, slow])}
    assert (by_id[failing]["state"], by_id[failing]["exit_code"]) == ("failed", 3)
    assert (by_id[slow]["state"], by_id[slow]["exit_code"]) == ("failed", 124)
    assert "timed out" in by_id[slow]["reason"]
    (attempt,) = user.get(f"/api/v1/tasks/{slow}/attempts").json()
    assert attempt["usage"]["timed_out"] is True


def test_bills_match_the_ledger(
    start_site: StartSite, user: httpx.Client, service: LocalControlPlane
) -> None:
    start_site()
    ids = [submit(user, run="sleep 0.2") for _ in range(4)]
    tasks = finished(user, ids)
    assert {t["state"] for t in tasks} == {"succeeded"}
    usage = user.get("/api/v1/usage").json()
    billed = sum(t["cost"] for t in tasks)
    assert usage["attempts"] == 4
    assert abs(usage["total"] - billed) < 1e-6 and usage["total"] > 0


def test_cancel_stops_the_whole_process_tree_within_two_seconds(
    start_site: StartSite, user: httpx.Client
) -> None:
    start_site()
    marker = f"cu-cancel-{time.monotonic_ns()}"
    sleeper = "python3 -c 'import time; time.sleep(300)'"
    task = submit(user, run=f"{sleeper} {marker}-c & setsid {sleeper} {marker}-g & "
                  f"exec {sleeper} {marker}-m")
    wait_until(lambda: len(processes_with(marker)) == 3, timeout=30)
    t0 = time.monotonic()
    assert user.post(f"/api/v1/tasks/{task}/cancel").status_code == 200
    while processes_with(marker):
        assert time.monotonic() - t0 < 2.0, "the task's processes outlived the cancel by 2 s"
        time.sleep(0.05)
    (done,) = finished(user, [task])
    assert done["state"] == "cancelled"
    assert user.get("/api/v1/usage").json()["attempts"] == 1  # billed for what it ran, once
