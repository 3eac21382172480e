"""On a machine with NVIDIA GPUs: they are detected through NVML, offered as catalogue devices,
and a task sees exactly the GPUs it was given (``nvidia-smi -L`` inside the task).

Marked ``gpu``: CI machines have none, so `.ci/run` deselects it.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from computility.agent.hardware import detect
from computility.agent.site import SiteAgent
from computility.testing.tasks import finished, logs, submit

pytestmark = pytest.mark.gpu


def test_detected_gpus_run_tasks_that_see_only_their_own(
    start_site: Callable[..., SiteAgent], user: httpx.Client
) -> None:
    machine = detect()
    gpus = [g for g in machine.gpus if g.device is not None]
    assert gpus, f"no catalogued NVIDIA GPU detected ({machine.notes})"
    agent = start_site()
    pools = [p for p in agent.pools.by_id.values() if p.accelerator]
    assert {p.device for p in pools} == {g.device for g in gpus}
    device = gpus[0].device
    task = submit(user, run='echo "[$CUDA_VISIBLE_DEVICES]"; nvidia-smi -L | wc -l',
                  resources={"accelerators": f"{device}:1"})
    (done,) = finished(user, [task], timeout=120)
    assert done["state"] == "succeeded"
    shown, count = logs(user, task).split()
    assert shown == "[0]" and count == "1"
