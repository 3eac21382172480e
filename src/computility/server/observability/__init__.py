"""How operators see the control plane: Prometheus metrics, structured logs, health probes.

- `metrics`: ``/metrics`` (events counted in the server's code paths, state read from the
  database at scrape time), one registry per control plane;
- `logging`: one JSON object per log line, with the request, task, site and tenant it concerns;
- `middleware`: per request, its id, its latency by route template, its access line;
- `health`: ``/healthz`` (alive) and ``/readyz`` (database, schema, scheduling loop).

`install_observability` wires all of them into an app; `create_app` calls it after its other
middleware, so that the request middleware is the outermost one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from computility.server.observability.health import install_health
from computility.server.observability.metrics import install_metrics
from computility.server.observability.middleware import RequestObservability

if TYPE_CHECKING:
    from computility.server.plane import ControlPlane

__all__ = ["install_observability"]


def install_observability(app: FastAPI, plane: ControlPlane) -> None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz``, and observe every request; call it
    after every other ``add_middleware`` (the last added is the outermost)."""
    install_metrics(app, plane)
    install_health(app, plane)
    app.add_middleware(RequestObservability, metrics=plane.metrics)
