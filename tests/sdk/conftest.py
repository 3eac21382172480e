"""Fixtures of the SDK's tests: one demo network for the whole run (it takes seconds to start,
and the tests share it, each with task names of its own), its users' clients, and a control
plane without sites whose tasks stay pending (for pagination)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from computility.demo.network import DemoNetwork
from computility.sdk import Client
from computility.testing.controlplane import LocalControlPlane, local_control_plane


@pytest.fixture(scope="session")
def demo() -> Iterator[DemoNetwork]:
    """The demo network, started once for every SDK test."""
    with DemoNetwork() as net:
        yield net


@pytest.fixture(scope="session")
def client(demo: DemoNetwork) -> Iterator[Client]:
    """A user of the demo network (tenant ``climate-lab``)."""
    with demo.client("climate-lab") as c:
        yield c


PAGINATED_TASKS = 1100
"""More than the API's largest page (1,000) and than the SDK's page (500)."""


@pytest.fixture(scope="session")
def paginated_tasks() -> int:
    """How many pending tasks named ``page`` `idle_plane` holds."""
    return PAGINATED_TASKS


@pytest.fixture(scope="session")
def idle_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """A control plane with no sites, holding `PAGINATED_TASKS` pending tasks named ``page``
    (nothing runs them, so they cost nothing but rows)."""
    with local_control_plane(tmp_path_factory.mktemp("idle-plane")) as plane:
        with Client(plane.url, plane.admin_key) as admin:
            for first in range(0, PAGINATED_TASKS, 550):
                admin.submit_many([{"name": "page", "run": f"echo {i}"}
                                   for i in range(first, first + 550)])
        yield plane
