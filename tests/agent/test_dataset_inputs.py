"""Datasets from the site's side: declared in the site config, registered without their paths,
and handed to the tasks that read them as ``COMPUTILITY_INPUT_<ID>``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from computility.agent.config import load_config
from computility.agent.site import SiteAgent
from computility.agent.staging import input_variable, task_environment
from computility.domain.errors import BadInput
from computility.server.db import schema as db
from computility.testing.controlplane import LocalControlPlane
from computility.testing.tasks import finished, logs, submit
from computility.wire.spec import task_spec_from_mapping

CONFIG = """\
sites:
  - id: lab
    region: ZJK
    datasets:
      - {id: imagenet-mini, size: 150GB, path: /data/imagenet}
      - {id: weights, size: 1.5TiB}
"""


def test_a_site_config_declares_datasets_with_sizes_as_specs_write_them(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, CONFIG))
    (site,) = config.sites
    assert [(d.id, d.size, d.path) for d in site.datasets] == [
        ("imagenet-mini", 150.0, Path("/data/imagenet")), ("weights", 1.5 * 2**40 / 1e9, None)]
    # Registration carries names and sizes; the path stays on this machine.
    assert [d.wire() for d in site.datasets] == [
        {"id": "imagenet-mini", "size_gb": 150.0}, {"id": "weights", "size_gb": 1.5 * 2**40 / 1e9}]
    assert site.dataset_paths() == {"imagenet-mini": "/data/imagenet"}


@pytest.mark.parametrize(("entry", "message"), [
    ("{id: d, size: 150XB}", "site.yaml:6: field sites[0].datasets[1].size: expected a size "
     "unit of KB, MB, GB, TB, KiB, MiB, GiB or TiB, got '150XB'"),
    ("{id: d, size: lots}", "site.yaml:6: field sites[0].datasets[1].size: expected a size such "
     "as 500GB"),
    ("{id: d, size: 0GB}", "site.yaml:6: field sites[0].datasets[1].size: expected a size "
     "greater than 0, such as 150GB, got '0GB'"),
    ("{id: d, size: 1GB, path: data/d}", "site.yaml:6: field sites[0].datasets[1].path: "
     "expected an absolute path"),
    ("{id: d}", "site.yaml:6: field sites[0].datasets[1].size: required"),
    ("{id: a, size: 2GB}", "site.yaml:4: field sites[0].datasets: expected dataset ids used "
     "once each, got 'a' twice"),
])
def test_a_bad_dataset_in_the_site_config_names_its_line_and_field(
    tmp_path: Path, entry: str, message: str,
) -> None:
    text = ("sites:\n  - id: lab\n    region: ZJK\n    datasets:\n"
            f"      - {{id: a, size: 1GB}}\n      - {entry}\n")
    with pytest.raises(BadInput) as raised:
        load_config(_write(tmp_path, text))
    assert message in str(raised.value).replace(str(tmp_path) + "/", "")


def test_the_input_variable_is_set_only_for_data_held_here_and_cannot_be_overridden() -> None:
    spec = task_spec_from_mapping({
        "run": "true", "envs": {"COMPUTILITY_INPUT_IMAGENET_MINI": "/elsewhere"},
        "inputs": [{"dataset": "imagenet-mini"}, {"dataset": "coco.2017", "residency": "local"},
                   {"dataset": "not-here"}]})
    env = task_environment(spec, task=1, attempt=1, site="lab", pool="cpu", device="EPYC-7763",
                           cpus=1, workdir=Path("/tmp/w"), device_ids=(), accelerator=False,
                           user=None, datasets={"imagenet-mini": "/data/imagenet",
                                                "coco.2017": "/data/coco", "other": "/data/o"})
    inputs = {k: v for k, v in env.items() if k.startswith("COMPUTILITY_INPUT_")}
    assert inputs == {"COMPUTILITY_INPUT_IMAGENET_MINI": "/data/imagenet",
                      "COMPUTILITY_INPUT_COCO_2017": "/data/coco"}
    assert input_variable("imagenet-mini") == "COMPUTILITY_INPUT_IMAGENET_MINI"


def test_tasks_find_the_data_their_site_holds_and_pay_for_the_move_elsewhere(
    service: LocalControlPlane, user: httpx.Client, start_site: Callable[..., SiteAgent],
    tmp_path: Path,
) -> None:
    data = tmp_path / "imagenet"
    data.mkdir()
    start_site("holder", datasets=[{"id": "imagenet-mini", "size": "2GB", "path": str(data)}])
    start_site("other", region="YRD")
    sites = {s["id"]: s for s in user.get("/api/v1/sites").json()}
    assert sites["holder"]["datasets"] == [{"id": "imagenet-mini", "size_gb": 2.0}]
    assert sites["other"]["datasets"] == []
    with service.plane.engine.connect() as conn:  # the path never left the agent
        stored = conn.execute(select(db.sites.c.datasets).where(db.sites.c.id == "holder"))
        assert stored.scalar_one() == [{"id": "imagenet-mini", "size_gb": 2.0}]

    show = 'echo "${COMPUTILITY_INPUT_IMAGENET_MINI-absent}"'
    local = submit(user, run=show, inputs=[{"dataset": "imagenet-mini", "residency": "local"}])
    moved = submit(user, run=show, inputs=[{"dataset": "imagenet-mini"}],
                   placement={"sites": ["other"]})
    tasks = finished(user, [local, moved])
    assert [(t["state"], t["site"]) for t in tasks] == [("succeeded", "holder"),
                                                          ("succeeded", "other")]
    assert logs(user, local).strip() == str(data)
    # At a site without the data nothing was fetched: no variable, but the move was billed.
    assert logs(user, moved).strip() == "absent"
    link = next(lk for lk in service.plane.base.links if (lk.src, lk.dst) == ("ZJK", "YRD"))
    usage = user.get("/api/v1/usage").json()
    assert usage["gb_moved"] == 2.0
    assert round(usage["network"] * 1e6) == round(2.0 * link.egress_per_gb) > 0


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path
