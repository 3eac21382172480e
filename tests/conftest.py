"""Fixtures shared by every test, and the CI rule that no test may be skipped.

Under CI (environment variable ``CI=true``) a skipped test counts as a failure: a skip there means a
missing data set or dependency, which would otherwise let an untested change pass unnoticed. Tests
that need hardware CI lacks are marked ``gpu`` or ``kubernetes`` and deselected, not skipped.
"""

from __future__ import annotations

import os
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
