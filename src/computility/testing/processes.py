"""Finding a task's processes on this machine by a marker in their command lines."""

from __future__ import annotations

import psutil


def processes_with(marker: str) -> list[psutil.Process]:
    """Live processes (not zombies) with `marker` in an argument of their command line."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in part for part in (p.info["cmdline"] or [])):
                found.append(p)
        except psutil.Error:
            continue
    return found
