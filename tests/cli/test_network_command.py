"""`computility network show` as a user sees it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def network(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "computility", "network", *args],
                          capture_output=True, text=True, check=False)


def test_default_network_table_lists_the_ten_clusters() -> None:
    p = network("show")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("default: 10 sites")
    for cluster in ("ZJK", "YRD", "WUHU", "SG", "TF", "CQ", "HLGE", "GA", "QY", "ZW"):
        assert f"{cluster}-1" in p.stdout


def test_a_malformed_network_file_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(
        "regions:\n  - {id: A, name: a, lat: 1, lon: 1}\n"
        "sites:\n  - id: s\n    region: A\n    owner: me\n    pue: 1.2\n"
        "    electricity_price_per_kwh: 0.5\n    carbon_kg_per_kwh: 0.5\n"
        "    pools:\n      - {id: p, device: Z100, count: 8, price_per_cu_hour: 1}\n"
        "links: []\n"
    )
    p = network("show", "--network", str(path))
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"{path}:11: ") and "got 'Z100'" in p.stderr


def test_single_needs_a_size_and_an_exact_device() -> None:
    no_size = network("show", "--network", "single")
    assert no_size.returncode == 2 and "give --cpus N" in no_size.stderr
    family = network("show", "--network", "single", "--cpus", "8", "--gpus", "A100:2")
    assert family.returncode == 2
    assert family.stderr.strip() == (
        "--gpus: 'A100' is a family (A100-40GB, A100-80GB): name one of them"
    )
