"""The Python SDK: the whole service from Python (`Client`, `AsyncClient`), task handles, and
an `Executor` that runs Python callables on the network.

It speaks only the REST API (``computility.wire``), so it works against any service, local or
remote, and never imports the service's own code. `BadInput` (a spec or argument the caller can
fix, whether caught here or by the service) and `ComputilityError` (everything the SDK raises on
purpose) are re-exported so that callers need no other import to handle errors.
"""

from computility.domain.errors import BadInput, ComputilityError
from computility.sdk.aio import AsyncClient, AsyncTask
from computility.sdk.client import Client
from computility.sdk.errors import (
    ApiError,
    InvalidRequest,
    NotFound,
    Refused,
    RemoteError,
    TaskFailed,
    Unauthorized,
    Unreachable,
    VersionMismatchError,
)
from computility.sdk.executor import NetworkExecutor
from computility.sdk.task import Task

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncTask",
    "BadInput",
    "Client",
    "ComputilityError",
    "InvalidRequest",
    "NetworkExecutor",
    "NotFound",
    "Refused",
    "RemoteError",
    "Task",
    "TaskFailed",
    "Unauthorized",
    "Unreachable",
    "VersionMismatchError",
]
