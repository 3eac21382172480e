"""The one table of legal state changes for tasks and attempts, enforced in one place.

Every write that changes a task's state goes through `check_task` (and is conditional on the
task's version in the same statement), so an illegal change is a bug caught here, never a row
silently moved from ``succeeded`` back to ``running``.

Task states: ``pending`` (waiting for a place), ``held`` (over a quota, or held for a cheaper or
greener hour until its ``not_before``; with the reason), ``queued`` (placed on a site's pool,
waiting for its agent to lease it), ``leased`` (an agent holds it), ``running``, and the terminal
``succeeded``, ``failed``, ``cancelled``, ``lost``. A task goes back to ``pending`` when an attempt
fails and a retry is left, when infrastructure fails under it (free re-placement), when its site
goes offline before leasing it, or when its hold for an hour ends with no room for it.
"""

from __future__ import annotations

from computility.domain.errors import ComputilityError

PENDING, HELD, QUEUED, LEASED, RUNNING = "pending", "held", "queued", "leased", "running"
SUCCEEDED, FAILED, CANCELLED, LOST = "succeeded", "failed", "cancelled", "lost"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, LOST})
ACTIVE = frozenset({LEASED, RUNNING})
"""Task states in which an attempt holds devices on a site."""

TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({HELD, QUEUED, CANCELLED, FAILED}),
    HELD: frozenset({PENDING, QUEUED, CANCELLED}),
    QUEUED: frozenset({PENDING, LEASED, CANCELLED}),
    LEASED: frozenset({RUNNING, PENDING, SUCCEEDED, FAILED, CANCELLED, LOST}),
    RUNNING: frozenset({PENDING, SUCCEEDED, FAILED, CANCELLED, LOST}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    LOST: frozenset(),
}

ATTEMPT_TRANSITIONS: dict[str, frozenset[str]] = {
    LEASED: frozenset({RUNNING, SUCCEEDED, FAILED, CANCELLED, LOST}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, LOST}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    LOST: frozenset(),
}
ATTEMPT_TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, LOST})

MAX_INFRA_FAILURES = 5
"""Free re-placements after infrastructure failures; one more and the task ends ``lost``."""


class IllegalTransition(ComputilityError):
    """A state change the tables above do not allow."""

    def __init__(self, what: str, old: str, new: str) -> None:
        super().__init__(f"illegal {what} transition {old} -> {new}")
        self.old, self.new = old, new


def check_task(old: str, new: str) -> None:
    if new not in TASK_TRANSITIONS.get(old, frozenset()):
        raise IllegalTransition("task", old, new)


def check_attempt(old: str, new: str) -> None:
    if new not in ATTEMPT_TRANSITIONS.get(old, frozenset()):
        raise IllegalTransition("attempt", old, new)


def sources(new: str) -> tuple[str, ...]:
    """Every task state that may legally change to `new` (for set-based conditional updates)."""
    return tuple(sorted(s for s, to in TASK_TRANSITIONS.items() if new in to))
