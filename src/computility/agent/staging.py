"""Turning a lease into a runnable `TaskRun`: run directory, inputs, environment.

The task's ``workdir`` (an archive its submitter uploaded, named by its SHA-256) is downloaded
from the control plane, checked against that digest and unpacked with the same safe rules the
service uses (`computility.wire.archives`). Bytes moved and seconds spent are measured, so the
attempt's report carries what staging cost.

The environment is built from nothing: a system ``PATH`` (the agent's, which holds no secret),
``HOME`` set to the work directory, the spec's ``envs``, then the documented variables below,
which the spec cannot override. The agent's key is never in it.

    COMPUTILITY_TASK_ID, COMPUTILITY_ATTEMPT (the attempt's id), COMPUTILITY_ATTEMPT_NUMBER (1 for
    the first try, 2 for the next, ...), COMPUTILITY_SITE, COMPUTILITY_POOL,
    COMPUTILITY_DEVICE, COMPUTILITY_CPUS, COMPUTILITY_WORKDIR, COMPUTILITY_PYTHON (see `runtime`),
    CUDA_VISIBLE_DEVICES

and ``COMPUTILITY_INPUT_<ID>`` for each of the task's inputs (``inputs:``) that the site's config
says it holds at a path (`input_environment`).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from computility.agent.backends.base import Allocation, TaskRun
from computility.agent.client import AgentClient
from computility.agent.rundir import chown_tree, make_rundir
from computility.agent.runtime import TaskPython, task_python
from computility.wire.archives import BadArchive, BlobTooLarge, extract
from computility.wire.spec import TaskSpec

DEFAULT_TIMEOUT_S = 24 * 3600.0
WORKDIR_LIMIT_BYTES = 1 << 30
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class StagingFailed(Exception):
    """The task cannot be made ready here; the message is the attempt's reason."""


@dataclass(frozen=True)
class Staged:
    run: TaskRun
    bytes: int
    seconds: float


def input_variable(dataset: str) -> str:
    """The variable naming where `dataset` lies: ``COMPUTILITY_INPUT_`` and its id upper-cased,
    every character other than a letter or digit turned into ``_`` (``imagenet-mini`` →
    ``COMPUTILITY_INPUT_IMAGENET_MINI``)."""
    return "COMPUTILITY_INPUT_" + re.sub(r"[^A-Za-z0-9]", "_", dataset).upper()


def input_environment(spec: TaskSpec, datasets: Mapping[str, str]) -> dict[str, str]:
    """A variable per input of the task that this site holds at a path (`datasets`: id → path).

    Data the site does not hold is not fetched: the network charged its move when it placed the
    task here, and the task finds no variable for it. Of two ids that map to one variable, the
    first input wins.
    """
    out: dict[str, str] = {}
    for item in spec.inputs:
        path = datasets.get(item.dataset)
        if path is not None:
            out.setdefault(input_variable(item.dataset), path)
    return out


def task_environment(spec: TaskSpec, *, task: int, attempt: int, number: int = 1, site: str,
                     pool: str, device: str, cpus: int, workdir: Path, device_ids: tuple[str, ...],
                     accelerator: bool, user: str | None,
                     datasets: Mapping[str, str] | None = None,
                     python: TaskPython | None = None) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", SYSTEM_PATH), "HOME": str(workdir), "LANG": "C.UTF-8"}
    if user:
        env["USER"] = env["LOGNAME"] = user
    env.update(spec.envs)
    env.update({
        "COMPUTILITY_TASK_ID": str(task), "COMPUTILITY_ATTEMPT": str(attempt),
        "COMPUTILITY_ATTEMPT_NUMBER": str(number),
        "COMPUTILITY_SITE": site, "COMPUTILITY_POOL": pool, "COMPUTILITY_DEVICE": device,
        "COMPUTILITY_CPUS": str(cpus), "COMPUTILITY_WORKDIR": str(workdir),
        # The interpreter for Python callables sent by the SDK's executor (`runtime`).
        "COMPUTILITY_PYTHON": (python or TaskPython(sys.executable)).executable,
        # A CPU task sees no GPU; a GPU task sees only its own.
        "CUDA_VISIBLE_DEVICES": ",".join(device_ids) if accelerator else "",
    })
    env.update(input_environment(spec, datasets or {}))
    if python is not None and python.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (python.pythonpath,
                                                        spec.envs.get("PYTHONPATH")) if p)
    return env


def stage(client: AgentClient, lease: Mapping[str, object], spec: TaskSpec, *, site: str,
          tasks_root: Path, allocation: Allocation, device: str, pool_ids: tuple[str, ...],
          owner: tuple[int, int] | None, user: str | None,
          datasets: Mapping[str, str] | None = None) -> Staged:
    started = time.monotonic()
    attempt = int(str(lease["attempt"]))
    number = int(str(lease.get("number", 1)))
    task = int(str(lease["task"]))
    key = f"a{attempt}"
    rundir, workdir = make_rundir(tasks_root, site, key, spec.run, spec.setup, owner)
    moved = 0
    if spec.workdir:
        want = spec.workdir.removeprefix("sha256:")
        archive = rundir / ".workdir.tar"
        status, digest, moved = client.download(f"/api/v1/agent/attempts/{attempt}/workdir",
                                                archive)
        if status != 200:
            raise StagingFailed(f"workdir: the control plane answered {status}")
        if digest != want:
            raise StagingFailed(f"workdir: SHA-256 {digest} does not match the task's {want}")
        try:
            extract(archive, workdir, WORKDIR_LIMIT_BYTES)
        except (BadArchive, BlobTooLarge) as e:
            raise StagingFailed(f"workdir: {e}") from None
        finally:
            archive.unlink(missing_ok=True)
        if owner is not None:
            chown_tree(workdir, owner)
    env = task_environment(spec, task=task, attempt=attempt, number=number, site=site,
                           pool=str(lease["pool"]), device=device, cpus=allocation.cpus,
                           workdir=workdir, device_ids=pool_ids,
                           accelerator=allocation.accelerators > 0, user=user,
                           datasets=datasets, python=task_python(owner, tasks_root))
    run = TaskRun(key=key, attempt=attempt, task=task, rundir=rundir, workdir=workdir,
                  envs=env, allocation=allocation,
                  timeout_s=spec.timeout_s or DEFAULT_TIMEOUT_S, name=spec.name or "")
    return Staged(run, moved, time.monotonic() - started)
