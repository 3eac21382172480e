"""Execution backends behind one interface (`Backend`), found by name in one registry.

Each backend module is imported only when chosen, so an agent for a Slurm cluster needs neither
Ray nor the Kubernetes client installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from computility.agent.backends.base import Backend, BackendError

REGISTRY: dict[str, str] = {
    "local": "computility.agent.backends.local:LocalBackend",
    "slurm": "computility.agent.backends.slurm:SlurmBackend",
    "ray": "computility.agent.backends.ray:RayBackend",
    "kubernetes": "computility.agent.backends.kubernetes:KubernetesBackend",
}


def make_backend(name: str, options: Mapping[str, Any]) -> Backend:
    """The backend `name`, configured by `options` (the site config's ``backend_options``)."""
    if name not in REGISTRY:
        raise BackendError(f"backend: expected one of {', '.join(REGISTRY)}, got {name!r}")
    module, _, cls = REGISTRY[name].partition(":")
    backend_cls = getattr(importlib.import_module(module), cls)
    backend: Backend = backend_cls(**dict(options))
    return backend


__all__ = ["REGISTRY", "Backend", "BackendError", "make_backend"]
