"""Fixtures of the control plane's tests (`db_url`, on SQLite and PostgreSQL, is in the root
conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from computility.testing.controlplane import LocalControlPlane, local_control_plane


@pytest.fixture
def service(db_url: str | None, tmp_path: Path) -> Iterator[LocalControlPlane]:
    """The control plane on 127.0.0.1 with a fast scheduling loop."""
    with local_control_plane(tmp_path / "data", db_url, cycle_s=0.1) as server:
        yield server
