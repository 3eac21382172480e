"""``computility db backup`` and ``db restore`` as an operator runs them: separate processes,
around a real ``computility up`` on the default SQLite database.

Every refusal is exit 2 with one line on stderr that names what is wrong, and writes nothing:
no backup file, no target database, no row changed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_harness import CliResult, bad_input, clean_environment
from sqlalchemy import JSON, Text, cast, select

from computility.server.db import schema as db
from computility.server.db.engine import make_engine
from computility.testing.controlplane import answers, free_port, wait_until

COMPUTILITY = str(Path(sys.executable).with_name("computility"))


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, by primary key, JSON as its text."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: [tuple(r) for r in conn.execute(
                select(*[cast(c, Text) if isinstance(c.type, JSON) else c for c in t.columns])
                .order_by(*t.primary_key.columns))] for t in db.metadata.sorted_tables}
    finally:
        engine.dispose()


class Up:
    """``computility up`` on the default database of `env`'s data directory."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.port = free_port()
        with (home / "up.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [COMPUTILITY, "up", "--port", str(self.port), "--no-local-site"],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        wait_until(lambda: answers(self.api) or self.proc.poll() is not None, timeout=60)
        assert self.proc.poll() is None, (home / "up.log").read_text()

    def stop(self) -> None:
        self.api.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Operator:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = clean_environment(home)
        self.default_db = f"sqlite:///{home / 'data' / 'computility' / 'computility.db'}"

    def cli(self, *args: str) -> CliResult:
        p = subprocess.run([COMPUTILITY, *args], env=self.env, cwd=self.home,
                           capture_output=True, timeout=120, check=False)
        result = CliResult(args, p.returncode, p.stdout, p.stderr, self.home)
        assert b"Traceback" not in p.stdout + p.stderr, result.describe()
        return result

    def key(self) -> str:
        profile = tomllib.loads((self.home / "config" / "computility" / "config.toml")
                                .read_text())
        key: str = profile["default"]["api_key"]
        return key


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """A network whose `up` ran, took three tasks and an upload, and stopped."""
    op = Operator(tmp_path_factory.mktemp("db-cli"))
    up = Up(op.env, op.home)
    try:
        up.api.headers["Authorization"] = f"Bearer {op.key()}"
        for i in range(3):
            r = up.api.post("/api/v1/tasks", json={"name": f"t{i}", "run": "true"})
            assert r.status_code == 201, r.text
        assert up.api.post("/api/v1/uploads", content=b"workdir").status_code == 201
    finally:
        up.stop()
    yield op


def test_backup_then_restore_into_a_fresh_database_copies_every_row(
    operator: Operator, db_url: str | None, tmp_path: Path,
) -> None:
    file = tmp_path / "net.backup"
    made = operator.cli("db", "backup", str(file))
    assert made.code == 0, made.describe()
    source = dump(operator.default_db)
    assert f"tasks{' ' * (len('validation_runs') - len('tasks'))}  3" in made.out
    assert made.err.strip().startswith("backed up ") and str(file) in made.err
    target = db_url or f"sqlite:///{tmp_path / 'restored.db'}"
    restored = operator.cli("db", "restore", str(file), "--db", target)
    assert restored.code == 0, restored.describe()
    assert "tasks" in restored.out and restored.err.strip().startswith("restored ")
    assert dump(target) == source
    # And back out of the restored database: the same rows again.
    again = operator.cli("db", "backup", str(tmp_path / "again.backup"), "--db", target)
    assert again.code == 0, again.describe()
    assert again.out == made.out


def test_bad_input_is_refused_with_one_line_and_nothing_written(
    operator: Operator, tmp_path: Path,
) -> None:
    file = tmp_path / "net.backup"
    assert operator.cli("db", "backup", str(file)).code == 0
    kept = file.read_bytes()
    (tmp_path / "garbage").write_bytes(b"not a database at all" * 50)
    fresh = tmp_path / "fresh.db"
    fresh_url = f"sqlite:///{fresh}"

    cases: dict[tuple[str, ...], tuple[str, ...]] = {
        ("backup", str(file)): ("PATH", str(file), "exists", "--force"),
        ("backup", str(tmp_path / "x.backup"), "--db", f"sqlite:///{tmp_path / 'absent.db'}"):
            ("--db", "no database at"),
        ("backup", str(tmp_path / "none" / "x.backup")): ("PATH", "does not exist"),
        ("backup", str(tmp_path / "y.backup"), "--db", "mysql://x"):
            ("--db", "expected sqlite:///PATH"),
        ("restore", str(tmp_path / "missing.backup"), "--db", fresh_url):
            ("PATH", "missing.backup", "does not exist"),
        ("restore", str(tmp_path / "garbage"), "--db", fresh_url):
            ("PATH", "not a computility backup", "not an SQLite database"),
        ("restore", operator.default_db.removeprefix("sqlite:///"), "--db", fresh_url):
            ("PATH", "computility_backup"),
        ("restore", str(file), "--db", operator.default_db):
            ("--db", "not empty", "tasks 3", "--force"),
        ("restore", str(file), "--db", f"sqlite:///{file}", "--force"):
            ("--db", "is the backup file itself"),
        ("restore", str(file), "--db", f"sqlite:///{tmp_path / 'none' / 'x.db'}"):
            ("--db", "directory", "does not exist"),
    }
    # Each call is its own process and start-up dominates: run them side by side.
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(cases, pool.map(lambda args: operator.cli("db", *args), cases),
                           strict=True))
    for args, names in cases.items():
        bad_input(results[args], *names)
    assert file.read_bytes() == kept
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage", "net.backup"]


def test_an_unreachable_database_is_one_line_and_exit_1(tmp_path: Path,
                                                         operator: Operator) -> None:
    result = operator.cli("db", "backup", str(tmp_path / "x.backup"), "--db",
                          "postgresql+psycopg://postgres@127.0.0.1:1/none")
    assert result.code == 1, result.describe()
    assert result.err.startswith("computility: cannot use the database")
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "x.backup").exists()


def test_restore_is_refused_while_up_runs_on_the_target_even_forced_and_proceeds_once_stopped(
    operator: Operator, tmp_path: Path,
) -> None:
    file = tmp_path / "net.backup"
    assert operator.cli("db", "backup", str(file)).code == 0
    home = tmp_path / "other"
    home.mkdir()
    target = Operator(home)
    up = Up(target.env, home)
    try:
        before = dump(target.default_db)["tenants"]
        for force in ((), ("--force",)):
            bad_input(target.cli("db", "restore", str(file), *force),
                      "--db", "a control plane is running on this database",
                      "stop every replica first")
        assert dump(target.default_db)["tenants"] == before
    finally:
        up.stop()
    # Stopped: its process is gone, so its recent lease no longer counts.
    forced = target.cli("db", "restore", str(file), "--force")
    assert forced.code == 0, forced.describe()
    assert dump(target.default_db) == dump(operator.default_db)
