"""The Python SDK: the whole service from Python (`Client`, `AsyncClient`), task handles, and
an `Executor` that runs Python callables on the network.

It speaks only the REST API (``computility.wire``), so it works against any service, local or
remote, and never imports the service's own code.
"""

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
    "Client",
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
