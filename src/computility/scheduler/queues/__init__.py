"""Site queue disciplines, by the names the CLI and the contract use."""

from __future__ import annotations

from computility.scheduler.queues.base import PoolQueue
from computility.scheduler.queues.conservative import ConservativeQueue
from computility.scheduler.queues.easy import EasyQueue
from computility.scheduler.queues.fcfs import FcfsQueue

QUEUE_DISCIPLINES: dict[str, type[PoolQueue]] = {
    "fcfs": FcfsQueue,
    "easy": EasyQueue,
    "conservative": ConservativeQueue,
}


def make_queue(discipline: str, capacity: int) -> PoolQueue:
    """A fresh queue of the named discipline; unknown names raise KeyError with the choices."""
    try:
        cls = QUEUE_DISCIPLINES[discipline]
    except KeyError:
        raise KeyError(
            f"unknown queue discipline '{discipline}' (choose from {', '.join(QUEUE_DISCIPLINES)})"
        ) from None
    return cls(capacity)


__all__ = ["QUEUE_DISCIPLINES", "ConservativeQueue", "EasyQueue", "FcfsQueue", "PoolQueue",
           "make_queue"]
