"""Names of the placement policies: how a task's site and pool are chosen among feasible ones.

On a one-site network every policy places a task on the same site; policies differ once there
are several sites to choose from.
"""

from __future__ import annotations

from typing import Final

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

POLICIES: Final = PLACEMENT_POLICIES
DEADLINE_POLICIES: Final = frozenset({"cheapest", "greenest", "balanced"})
"""Policies that value money or carbon, and so rule out a candidate that would miss a deadline
while another meets it (the others ignore deadlines, or, for ``fastest``, already finish first)."""

SHIFTING_POLICIES: Final = frozenset({"cheapest", "greenest"})
"""Policies that may hold a task with a deadline for cheaper or greener hours. ``balanced`` does
not: it weighs finish time at 0.4, so a hold must save more than 0.4 x the delay's share of the
run in money and carbon together, which the hourly curves' swings seldom give; measured while it
could (docs/placement.md), it held no task of the policy table's 1,500 deadline tasks."""

BALANCED_WEIGHTS: Final = {"finish": 0.4, "money": 0.3, "carbon": 0.3}
"""Weights of `balanced`, fixed before any policy was measured: time first, money and carbon
equal. Each term is a candidate's figure over the best candidate's, so 1.0 is best."""

HOLD_MARGIN_S: Final = 900.0
HOLD_MARGIN_RUN_SHARE: Final = 0.5
"""A task is held only while its estimated finish stays this far before its deadline: the larger
of 15 minutes and half its run time, room for a queue that has grown in the meantime."""

MAX_HOLD_HOURS: Final = 24

FAST_PATH_MIN_POOLS: Final = 64
"""From this many pools on, placement walks a cached best-first ranking (see
`Placement.static_order`) instead of scoring every candidate: on 1,000 sites scoring all of them
for every task would cost a millisecond each. Smaller networks are always scored in full."""

PRUNED_CANDIDATES: Final = 16
"""On a large network, a task scored in full (deadline under a shifting policy, data to move, no
room anywhere) is scored among the first this many pools of its ranking plus the first this many
with room now."""


REFERENCE_RUN_S: Final = 3600.0
WEIGH_BUSY: Final = 1
"""How many better-ranked busy pools the large-network path weighs, with their waits, against the
first pool with room."""
PLACEMENT_MODES: Final = ("auto", "full")
"""How placement decides: ``auto`` takes the large-network path from `FAST_PATH_MIN_POOLS` pools
on; ``full`` scores every candidate of every task whatever the network's size (slower on a large
network; what the large-network path is validated against)."""

STATIC_POLICIES: Final = frozenset({"cheapest", "fastest", "greenest", "balanced", "nearest"})
"""Policies whose ranking of idle candidates does not depend on load or on earlier choices."""
"""Temporal shifting looks at most a day ahead: curves repeat daily in shape."""
