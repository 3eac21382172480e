"""What this machine has to offer: its cores (psutil) and NVIDIA GPUs (NVML, when present).

The catalogue has no entry for every CPU model; a core is counted as the catalogue's core type of
the same vendor (Intel → XEON-8380, AMD → EPYC-7763, ARM → KUNPENG-920), which a site config can
override. GPUs are matched to catalogue ids by their NVML names (``NVIDIA A100-SXM4-80GB`` →
``A100-80GB``), else by a family with one catalogue variant (``NVIDIA H200`` → ``H200-SXM``);
one the catalogue does not know is left out with a note, never guessed.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field

import psutil

from computility.domain.devices import default_catalogue


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    device: str | None  # catalogue id, None when unknown
    memory_bytes: int


@dataclass(frozen=True)
class Hardware:
    cores: tuple[int, ...]  # the CPU ids this process may run on
    cpu_device: str
    memory_bytes: int
    gpus: tuple[Gpu, ...] = ()
    notes: tuple[str, ...] = field(default=())


def cpu_device() -> str:
    machine = platform.machine().lower()
    if machine.startswith(("arm", "aarch64")):
        return "KUNPENG-920"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read(20_000)
    except OSError:
        text = ""
    return "EPYC-7763" if "AuthenticAMD" in text else "XEON-8380"


def catalogue_gpu(name: str) -> str | None:
    """The catalogue id for an NVML device name, or None."""
    catalogue = default_catalogue()
    compact = re.sub(r"[^A-Z0-9]", "", name.upper().removeprefix("NVIDIA "))
    best: tuple[int, str] | None = None
    for device in catalogue:
        if device.kind == "cpu":
            continue
        parts = [p for p in re.split(r"[^A-Z0-9]", device.id.upper()) if p]
        if parts and all(p in compact for p in parts):
            score = sum(len(p) for p in parts)
            if best is None or score > best[0]:
                best = (score, device.id)
    if best is not None:
        return best[1]
    # No variant matches in full: a family with a single catalogue variant (H200 -> H200-SXM).
    family = [d.id for d in catalogue if d.kind != "cpu"
              and re.split(r"[^A-Z0-9]", d.id.upper())[0] in compact
              and len(re.split(r"[^A-Z0-9]", d.id.upper())[0]) >= 3]
    return family[0] if len(family) == 1 else None


def nvidia_gpus() -> tuple[tuple[Gpu, ...], tuple[str, ...]]:
    try:
        import pynvml
    except ImportError:
        return (), ("nvidia-ml-py is not installed: no GPUs detected",)
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return (), ()
    gpus: list[Gpu] = []
    notes: list[str] = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            raw = pynvml.nvmlDeviceGetName(handle)
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            memory = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            device = catalogue_gpu(name)
            if device is None:
                notes.append(f"GPU {i} ({name}) is not in the device catalogue: left out")
            gpus.append(Gpu(i, name, device, memory))
    finally:
        pynvml.nvmlShutdown()
    return tuple(gpus), tuple(notes)


def detect() -> Hardware:
    cores = tuple(sorted(os.sched_getaffinity(0)))
    gpus, notes = nvidia_gpus()
    return Hardware(cores=cores, cpu_device=cpu_device(),
                    memory_bytes=int(psutil.virtual_memory().total), gpus=gpus, notes=notes)
