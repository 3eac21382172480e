"""A site agent's speed and cost: submit → first byte of output, and an idle agent's CPU.

    python -m benchmarks.agent_latency                  # 500 tasks, 10 minutes idle
    python -m benchmarks.agent_latency --ci             # 50 tasks, 1 minute idle
    python -m benchmarks.agent_latency --backend slurm  # first byte through Slurm (reference)

Targets:

- ``first_byte``: on an idle local site, submit → first byte of the task's output readable
  through ``GET /api/v1/tasks/{id}/logs``: p50 <= 200 ms, p99 <= 1 s over 500 tasks. Each task
  (``echo first-byte-N``) is submitted alone (the site idle: the previous task has ended), and
  the client polls the logs every 5 ms from the moment the submission was sent. The latency spans
  the whole path: admission, a scheduling cycle (woken by the submission), the lease (woken by
  the placement), staging, the supervisor starting the task, and the agent's upload.
- ``idle_cpu``: an agent with no work uses <= 1 % of one core over 10 minutes: the CPU time
  (user + system, its process and children) of the agent process divided by the wall time.

The control plane runs in a child process (production settings: SQLite, the scheduling loop on),
the agent is `computility agent` in a process of its own, exactly as a provider runs it, and this
process is the client; on a 2-core machine all three share the cores.

``--ci``: a tenth of each (50 tasks; 60 s idle) with a floor of half each target (p50 <= 400 ms,
p99 <= 2 s; idle CPU <= 2 %).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from benchmarks._common import machine, record

TARGET_P50_MS, TARGET_P99_MS = 200.0, 1000.0
TARGET_IDLE_CPU = 0.01
TASKS, IDLE_S = 500, 600.0
POLL_S = 0.005


def _serve(pipe: Any, data_dir: str) -> None:
    from computility.testing.controlplane import local_control_plane, new_tenant

    with local_control_plane(Path(data_dir)) as server:
        with server.client() as admin:
            provider = new_tenant(admin, "bench-provider", "provider")
            user = new_tenant(admin, "bench-users", "user")
        pipe.send((server.url, provider, user))
        pipe.recv()


@contextlib.contextmanager
def served(tmp: Path) -> Iterator[tuple[str, str, str]]:
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_serve, args=(theirs, str(tmp / "plane")), daemon=True)
    child.start()
    try:
        if not ours.poll(120):
            raise SystemExit("the control plane did not start within 120 s")
        yield ours.recv()
        ours.send("stop")
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()


@contextlib.contextmanager
def agent(url: str, provider: str, tmp: Path, backend: str) -> Iterator[subprocess.Popen[bytes]]:
    token = tmp / "provider.key"
    token.write_text(provider)
    token.chmod(0o600)
    tasks_root = Path("/tmp/computility-bench-tasks")
    command = [sys.executable, "-m", "computility", "agent", "--server", url, "--token-file",
               str(token), "--site", "bench-site", "--backend", backend,
               "--state-dir", str(tmp / "agent"), "--tasks-root", str(tasks_root)]
    log = (tmp / "agent.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_site(client: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sites = client.get("/api/v1/sites").json()
        if any(s["id"] == "bench-site" and s["online"] for s in sites):
            return
        time.sleep(0.1)
    raise SystemExit("the agent's site did not come online within 60 s")


def first_byte(client: httpx.Client, tasks: int) -> dict[str, Any]:
    latencies = []
    for n in range(tasks + 3):  # three untimed warm-up tasks
        t0 = time.perf_counter()
        r = client.post("/api/v1/tasks", json={"run": f"echo first-byte-{n}",
                                               "timeout": "1m"})
        r.raise_for_status()
        task = r.json()["id"]
        while True:
            got = client.get(f"/api/v1/tasks/{task}/logs")
            if got.status_code == 200 and got.content:
                break
            time.sleep(POLL_S)
        elapsed = time.perf_counter() - t0
        if got.text != f"first-byte-{n}\n":
            raise SystemExit(f"task {task}: unexpected output {got.text!r}")
        if n >= 3:
            latencies.append(elapsed * 1000)
        while client.get(f"/api/v1/tasks/{task}").json()["state"] not in (
                "succeeded", "failed", "cancelled", "lost"):
            time.sleep(0.01)
    ms = np.array(latencies)
    return {"tasks": tasks, "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}


def idle_cpu(proc: subprocess.Popen[bytes], seconds: float) -> dict[str, Any]:
    p = psutil.Process(proc.pid)
    time.sleep(5)  # let registration and the first polls settle

    def used() -> float:
        t = p.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    c0, w0 = used(), time.monotonic()
    time.sleep(seconds)
    c1, w1 = used(), time.monotonic()
    return {"seconds": w1 - w0, "cpu_s": c1 - c0, "cpu_fraction": (c1 - c0) / (w1 - w0)}


def measure(tasks: int, idle_s: float, backend: str = "local") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with (
            served(tmp) as (url, provider, user),
            agent(url, provider, tmp, backend) as proc,
            httpx.Client(base_url=url, timeout=60,
                         headers={"Authorization": f"Bearer {user}"}) as client,
        ):
            _wait_site(client)
            idle = idle_cpu(proc, idle_s) if idle_s > 0 else None
            latency = first_byte(client, tasks)
    return {"backend": backend, "first_byte": latency, "idle": idle, "machine": machine()}


def summary(result: dict[str, Any]) -> str:
    fb = result["first_byte"]
    line = (f"{result['backend']}: submit -> first byte over {fb['tasks']} tasks p50 "
            f"{fb['p50_ms']:.0f} ms, p99 {fb['p99_ms']:.0f} ms (max {fb['max_ms']:.0f} ms)")
    if result["idle"] is not None:
        idle = result["idle"]
        line += (f"; idle agent {idle['cpu_fraction']:.2%} of a core over "
                 f"{idle['seconds']:.0f} s")
    return line


def verdict(result: dict[str, Any], ci: bool) -> list[str]:
    scale = 2 if ci else 1
    fb, idle = result["first_byte"], result["idle"]
    missed = []
    if fb["p50_ms"] > TARGET_P50_MS * scale:
        missed.append(f"p50 {fb['p50_ms']:.0f} ms > {TARGET_P50_MS * scale:.0f} ms")
    if fb["p99_ms"] > TARGET_P99_MS * scale:
        missed.append(f"p99 {fb['p99_ms']:.0f} ms > {TARGET_P99_MS * scale:.0f} ms")
    if idle is not None and idle["cpu_fraction"] > TARGET_IDLE_CPU * scale:
        missed.append(f"idle CPU {idle['cpu_fraction']:.2%} > {TARGET_IDLE_CPU * scale:.0%}")
    return missed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ci", action="store_true")
    parser.add_argument("--backend", default="local", choices=("local", "slurm", "ray"))
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--idle-s", type=float)
    args = parser.parse_args(argv)
    tasks = args.tasks or (TASKS // 10 if args.ci else TASKS)
    idle_s = args.idle_s if args.idle_s is not None else (IDLE_S / 10 if args.ci else IDLE_S)
    if args.backend != "local":
        idle_s = 0.0 if args.idle_s is None else idle_s
    result = measure(tasks, idle_s, args.backend)
    print(summary(result))
    if not args.ci:
        record(f"agent_latency_{args.backend}", result)
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
