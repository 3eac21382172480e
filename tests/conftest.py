"""Fixtures shared by every test, and the CI rule that no test may be skipped.

Under CI (environment variable ``CI=true``) a skipped test counts as a failure: a skip there means a
missing data set or dependency, which would otherwise let an untested change pass unnoticed. Tests
that need hardware CI lacks are marked ``gpu`` or ``kubernetes`` and deselected, not skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from computility.testing.data import SHARED_DATA_ENV, find_shared_data_dir


def running_in_ci() -> bool:
    """Whether CI rules apply: the environment variable ``CI`` is ``true``, as CI systems set it."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared data folder; the test is skipped (a failure under CI) when it cannot be found."""
    found = find_shared_data_dir()
    if found is None:
        pytest.skip(f"shared data not found: set {SHARED_DATA_ENV}")
    return found


# Every test that takes `db_url` runs twice, on SQLite and on the real PostgreSQL at
# 127.0.0.1:5432 (a fresh database per test, dropped afterwards). Set ``COMPUTILITY_TEST_PG`` to
# another server's URL (without the database name). Without a reachable PostgreSQL the
# PostgreSQL half is skipped with the reason (a failure under CI).
PG_SERVER = os.environ.get("COMPUTILITY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _pg_admin() -> object:
    import psycopg

    return psycopg.connect(PG_SERVER.replace("postgresql+psycopg", "postgresql") + "/postgres",
                           autocommit=True, connect_timeout=3)


def _fresh_pg_database() -> Iterator[str]:
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


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None (SQLite under the test's data directory) or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        yield None
        return
    yield from _fresh_pg_database()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database's URL, for what exists only there (replicas, leadership, row
    locks and deadlocks: SQLite serialises every writer)."""
    yield from _fresh_pg_database()


def _describe(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, lineno, reason = longrepr
        return f"{report.nodeid} ({path}:{lineno}): {reason.removeprefix('Skipped: ')}"
    return f"{report.nodeid}: {longrepr}"


class _SkipsFailUnderCI:
    """Collects skipped tests and, at the end, lists them and makes pytest exit 1."""

    def __init__(self) -> None:
        self.skipped: list[pytest.TestReport | pytest.CollectReport] = []

    def _note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        # An xfail is reported with outcome "skipped" too; it carries `wasxfail` and is no skip.
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        no_failure_yet = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.skipped and session.exitstatus in no_failure_yet:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.skipped:
            return
        terminalreporter.write_sep(
            "=", f"CI=true: {len(self.skipped)} skipped test(s) fail this run", red=True, bold=True
        )
        for report in self.skipped:
            terminalreporter.write_line(f"SKIPPED {_describe(report)}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    if running_in_ci():
        config.pluginmanager.register(_SkipsFailUnderCI(), "computility-skips-fail-under-ci")
