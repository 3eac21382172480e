"""A site's config, its detected hardware and the ids each task gets, without a service."""

from __future__ import annotations

from pathlib import Path

import pytest

from computility.agent.allocation import Pools, resolve_pools
from computility.agent.config import SiteConfig, load_config
from computility.agent.hardware import Gpu, Hardware, catalogue_gpu
from computility.domain.errors import BadInput

MACHINE = Hardware(cores=(0, 1, 2, 3), cpu_device="EPYC-7763", memory_bytes=64 << 30,
                   gpus=(Gpu(0, "NVIDIA A100-SXM4-80GB", "A100-80GB", 80 << 30),
                         Gpu(1, "NVIDIA A100-SXM4-80GB", "A100-80GB", 80 << 30)))


@pytest.mark.parametrize(("name", "device"), [
    ("NVIDIA A100-SXM4-80GB", "A100-80GB"), ("NVIDIA A100-PCIE-40GB", "A100-40GB"),
    ("NVIDIA H100 80GB HBM3", "H100-SXM"), ("NVIDIA H200", "H200-SXM"),
    ("Tesla V100-SXM2-32GB", "V100-32GB"), ("NVIDIA GeForce RTX 4090", "RTX-4090"),
    ("NVIDIA L40S", "L40S"), ("Tesla T4", "T4"), ("NVIDIA B200", None),
])
def test_gpu_names_map_to_catalogue_ids_or_to_nothing(name: str, device: str | None) -> None:
    assert catalogue_gpu(name) == device


def test_a_site_without_pools_offers_what_the_machine_has() -> None:
    pools = resolve_pools(SiteConfig(id="ws", region="ZJK"), MACHINE)
    assert [(p.id, p.device, p.count, p.ids) for p in pools] == [
        ("cpu", "EPYC-7763", 4, ("0", "1", "2", "3")),
        ("a100-80gb", "A100-80GB", 2, ("0", "1"))]


def test_cores_and_devices_are_handed_out_lowest_first_and_given_back() -> None:
    pools = Pools(resolve_pools(SiteConfig(id="ws", region="ZJK"), MACHINE))
    assert pools.take(1, "cpu", 2) == ("0", "1")
    assert pools.take(2, "cpu", 1) == ("2",)
    assert pools.take(3, "a100-80gb", 1000) == ("0",)
    assert pools.free() == {"cpu": 1.0, "a100-80gb": 1.0}
    pools.give_back(1, "cpu", 2)
    assert pools.take(4, "cpu", 2) == ("0", "1")
    # A fractional share takes a device without holding it whole.
    assert pools.take(5, "a100-80gb", 500) == ("1",)
    assert pools.free()["a100-80gb"] == 0.5


def test_an_emulated_site_is_not_pinned_and_may_declare_more_than_exists() -> None:
    site = SiteConfig.model_validate({"id": "big", "region": "YRD", "emulated": True, "pools": [
        {"id": "cpu", "device": "XEON-8380", "count": 512}]})
    (pool,) = resolve_pools(site, MACHINE)
    assert (pool.count, pool.ids) == (512, ())


def test_a_pool_of_an_unknown_device_is_refused_by_name() -> None:
    site = SiteConfig.model_validate({"id": "x", "region": "ZJK", "pools": [
        {"id": "gpu", "device": "B200", "count": 8}]})
    with pytest.raises(BadInput, match=r"pools\[0\].device"):
        resolve_pools(site, MACHINE)


@pytest.mark.parametrize(("text", "message"), [
    ("sites:\n  - id: a\n    region: ZJK\n    pools:\n      - {id: cpu, device: X, count: 0}\n",
     "site.yaml:5: field sites[0].pools[0].count: expected greater than or equal to 1, got 0"),
    ("sites:\n  - id: a\n    regoin: ZJK\n", "site.yaml:2: field sites[0].region: required"),
    ("sites:\n  - id: a\n    region: ZJK\n    color: red\n",
     "site.yaml:4: field sites[0].color: unknown field"),
    ("backend: pbs\n", "site.yaml:1: field backend: expected 'local', 'slurm', 'ray' or "
     "'kubernetes', got 'pbs'"),
    ("sites: [{id: a, region: ZJK}, {id: a, region: ZJK}]\n", "used once each"),
])
def test_a_bad_config_names_the_line_and_the_field(tmp_path: Path, text: str,
                                                   message: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(BadInput) as raised:
        load_config(path)
    assert message in str(raised.value).replace(str(tmp_path) + "/", "")
