"""The sans-I/O scheduler core: events in, decisions out.

The simulator and the control plane both drive this package, so what an operator validates in
simulation is the code that places live tasks.
"""

from computility.scheduler.core import Scheduler
from computility.scheduler.decisions import Decision, RejectTasks, StartTasks, WakeAt
from computility.scheduler.events import Event, TasksArrived, TasksFinished
from computility.scheduler.queues import QUEUE_DISCIPLINES, PoolQueue, make_queue

__all__ = [
    "QUEUE_DISCIPLINES",
    "Decision",
    "Event",
    "PoolQueue",
    "RejectTasks",
    "Scheduler",
    "StartTasks",
    "TasksArrived",
    "TasksFinished",
    "WakeAt",
    "make_queue",
]
