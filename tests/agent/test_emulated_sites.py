"""One agent process runs several emulated sites, each with its own virtual capacity, region,
prices and power profile, so a demo network is made of real processes (docs/examples)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx

from computility.agent.config import load_config
from computility.agent.runner import Overrides, build_sites
from computility.testing.controlplane import LocalControlPlane, wait_until
from computility.testing.tasks import finished, logs, submit

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "emulated-sites.yaml"


def test_one_agent_serves_the_example_network_of_three_emulated_sites(
    service: LocalControlPlane, provider_key: str, user: httpx.Client, tmp_path: Path,
    tasks_root: Path,
) -> None:
    agents = build_sites(service.url, provider_key, load_config(EXAMPLE),
                         Overrides(state_dir=tmp_path / "agent", tasks_root=tasks_root))
    for agent in agents:
        agent.start()
    try:
        sites = {s["id"]: s for s in user.get("/api/v1/sites").json()}
        assert set(sites) == {"zjk-green", "yrd-fast", "gz-edge"}
        assert sites["yrd-fast"]["region"] == "YRD"
        assert {p["id"]: p["count"] for p in sites["yrd-fast"]["pools"]} == {"cpu": 128,
                                                                           "a100": 16}
        # Each site gets work when a task may only run there; a GPU task sees its device ids.
        ids = [submit(user, run="echo $COMPUTILITY_SITE", placement={"sites": [site]})
               for site in sorted(sites) for _ in range(3)]
        gpu = submit(user, run='echo "$COMPUTILITY_SITE $CUDA_VISIBLE_DEVICES"',
                     resources={"accelerators": "A100:2"})
        tasks = finished(user, [*ids, gpu])
        assert Counter(t["state"] for t in tasks) == {"succeeded": 10}
        for task in tasks[:-1]:
            assert logs(user, task["id"]).strip() == task["site"]
        assert logs(user, gpu).strip() == "yrd-fast 0,1"
        wait_until(lambda: all(s["online"] for s in user.get("/api/v1/sites").json()))
    finally:
        for agent in agents:
            agent.stop()
