"""The dashboard's tests: a real control plane on 127.0.0.1 (SQLite and PostgreSQL through the
root `db_url`), and sessions signed in with real keys of three tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web_harness import Dashboard

from computility.testing.controlplane import local_control_plane, new_tenant


@pytest.fixture
def dashboard(db_url: str | None, tmp_path: Path) -> Iterator[Dashboard]:
    with (local_control_plane(tmp_path / "data", db_url, cycle_s=0.1) as server,
          server.client() as admin):
        yield Dashboard(server, server.admin_key,
                        new_tenant(admin, "alice-lab"), new_tenant(admin, "bob-corp"),
                        new_tenant(admin, "hubs", role="provider"))
