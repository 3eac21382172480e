"""The sans-I/O scheduler core: events in, decisions out.

The simulator and the control plane both drive this package, so what an operator validates in
simulation is the code that places live tasks.
"""

from computility.scheduler.decisions import Decision, RejectTasks, StartTasks
from computility.scheduler.events import Event, TasksArrived, TasksFinished
from computility.scheduler.queues import QUEUE_DISCIPLINES, PoolQueue, make_queue
from computility.scheduler.site import SiteScheduler

__all__ = [
    "QUEUE_DISCIPLINES",
    "Decision",
    "Event",
    "PoolQueue",
    "RejectTasks",
    "SiteScheduler",
    "StartTasks",
    "TasksArrived",
    "TasksFinished",
    "make_queue",
]
