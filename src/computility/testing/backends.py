"""Whether a real execution backend answers on this machine; else the reason, for a skip."""

from __future__ import annotations

import os
import shutil
import subprocess


def slurm_ready() -> str | None:
    if shutil.which("sbatch") is None:
        return "Slurm is not installed (scripts/ensure-slurm.sh installs and starts it)"
    probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                           timeout=20, check=False)
    if probe.returncode != 0 or not probe.stdout.strip():
        return f"no Slurm cluster answers sinfo: {probe.stderr.strip()[:200]}"
    return None


def ray_ready() -> str | None:
    import httpx

    address = os.environ.get("COMPUTILITY_RAY_ADDRESS", "http://127.0.0.1:8265")
    try:
        httpx.get(f"{address}/api/version", timeout=5).raise_for_status()
    except httpx.HTTPError as e:
        return f"no Ray head answers at {address} (scripts/ensure-ray.sh starts one): {e}"
    return None
