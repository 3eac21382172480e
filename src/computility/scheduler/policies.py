"""Names of the placement policies: how a task's site and pool are chosen among feasible ones.

On a one-site network every policy places a task on the same site; policies differ once there
are several sites to choose from.
"""

from __future__ import annotations

PLACEMENT_POLICIES: tuple[str, ...] = (
    "cheapest",
    "fastest",
    "greenest",
    "balanced",
    "random",
    "round_robin",
    "least_loaded",
    "nearest",
)
DEFAULT_POLICY = "balanced"
