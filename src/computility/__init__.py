"""Computility: compute offered as a utility across heterogeneous, differently-owned sites.

``from computility import Client`` is the SDK's entry point; it is imported on first use, so
the core (``computility.domain``, ``computility.scheduler``) stays free of HTTP libraries.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_SDK_NAMES = frozenset({
    "AsyncClient", "Client", "NetworkExecutor", "Task", "TaskFailed", "VersionMismatchError",
    "RemoteError", "ApiError",
})
__all__ = ["__version__", *sorted(_SDK_NAMES)]


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        from computility import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'computility' has no attribute '{name}'")
