"""Backends for the contract suite: each one that can run on this machine, for real.

The local backend always runs. Slurm needs a running cluster (``scripts/ensure-slurm.sh`` starts a
single-node one on 127.0.0.1), Ray a running head (``scripts/ensure-ray.sh``); without them their
cases skip with the reason (and under CI=true a skip fails the run).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from computility.agent.backends import Backend, make_backend
from computility.agent.backends.base import Allocation, TaskRun
from computility.agent.rundir import make_rundir
from computility.testing.backends import ray_ready, slurm_ready

READY: dict[str, Callable[[], str | None]] = {
    "local": lambda: None,
    "slurm": slurm_ready,
    "ray": ray_ready,
}


@pytest.fixture(params=sorted(READY))
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    name: str = request.param
    why = READY[name]()
    if why is not None:
        pytest.skip(why)
    b = make_backend(name, {})
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def tasks_root() -> Iterator[Path]:
    """Run directories of this test alone, on a path every backend's workers can reach (Slurm's
    node and Ray's head are this host) and the tasks' user can enter (not under a 0700 tmp)."""
    base = Path(os.environ.get("COMPUTILITY_TEST_TASKS_ROOT", "/tmp/computility-test-tasks"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    root = base / uuid.uuid4().hex[:12]
    root.mkdir()
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


_counter = iter(range(1, 10**9))


@pytest.fixture
def new_run(tasks_root: Path) -> Callable[..., TaskRun]:
    def make(run: str, *, setup: str | None = None, envs: dict[str, str] | None = None,
             timeout_s: float = 120.0, cpus: int = 1, memory_bytes: int | None = None,
             files: dict[str, str] | None = None) -> TaskRun:
        n = next(_counter)
        key = f"c{os.getpid()}-{n}"
        rundir, workdir = make_rundir(tasks_root, "contract", key, run, setup, None)
        for name, text in (files or {}).items():
            (workdir / name).write_text(text, encoding="utf-8")
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir)}
        return TaskRun(key=key, attempt=n, task=n, rundir=rundir, workdir=workdir,
                       envs={**base, **(envs or {})},
                       allocation=Allocation(cpus=cpus, memory_bytes=memory_bytes),
                       timeout_s=timeout_s, name=f"contract-{n}")
    return make


# --- a control plane and local sites for the agent's end-to-end tests ---------------------------

from computility.agent.allocation import Pools, resolve_pools  # noqa: E402
from computility.agent.config import SiteConfig  # noqa: E402
from computility.agent.hardware import detect  # noqa: E402
from computility.agent.runner import task_user  # noqa: E402
from computility.agent.site import SiteAgent  # noqa: E402
from computility.testing.controlplane import (  # noqa: E402
    LocalControlPlane,
    local_control_plane,
    new_tenant,
)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LocalControlPlane]:
    with local_control_plane(tmp_path / "data", None, cycle_s=0.1) as server:
        yield server


@pytest.fixture
def provider_key(service: LocalControlPlane) -> str:
    with service.client() as admin:
        return new_tenant(admin, "lab", role="provider")


@pytest.fixture
def user(service: LocalControlPlane) -> Iterator[object]:
    with service.client() as admin:
        key = new_tenant(admin, "users", role="user")
    with service.client(key) as client:
        yield client


@pytest.fixture
def start_site(service: LocalControlPlane, provider_key: str, tmp_path: Path,
               tasks_root: Path) -> Iterator[Callable[..., SiteAgent]]:
    started: list[SiteAgent] = []

    def start(site_id: str = "lab-1", backend: str = "local", **site: object) -> SiteAgent:
        config = SiteConfig.model_validate({"id": site_id, "region": "ZJK", **site})
        owner, name = task_user("nobody")
        options: dict[str, object] = {"run_as": owner} if backend == "local" and owner else {}
        agent = SiteAgent(
            server=service.url, provider_key=provider_key, site=config,
            pools=Pools(resolve_pools(config, detect())), backend=make_backend(backend, options),
            state_dir=tmp_path / "agent" / site_id, tasks_root=tasks_root,
            run_as=owner if backend == "local" else None, user=name).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop(cancel_tasks=True, wait_s=5)
