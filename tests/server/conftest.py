"""Fixtures of the control plane's tests: every test that takes `db_url` runs twice, on SQLite and
on the real PostgreSQL at 127.0.0.1:5432 (a fresh database per test, dropped afterwards).

Set ``COMPUTILITY_TEST_PG`` to another server's URL (without the database name). Without a
reachable PostgreSQL the PostgreSQL half is skipped with the reason (a failure under CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from computility.testing.controlplane import LocalControlPlane, local_control_plane

PG_SERVER = os.environ.get("COMPUTILITY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _pg_admin() -> object:
    import psycopg

    return psycopg.connect(PG_SERVER.replace("postgresql+psycopg", "postgresql") + "/postgres",
                           autocommit=True, connect_timeout=3)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None (SQLite under the test's data directory) or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        yield None
        return
    try:
        admin = _pg_admin()
    except Exception as error:
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER}: {error}")
    name = f"cu_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture
def service(db_url: str | None, tmp_path: Path) -> Iterator[LocalControlPlane]:
    """The control plane on 127.0.0.1 with a fast scheduling loop."""
    with local_control_plane(tmp_path / "data", db_url, cycle_s=0.1) as server:
        yield server
