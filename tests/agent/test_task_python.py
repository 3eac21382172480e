"""Which Python the tasks get: the agent's own when their user can reach it, else the system's
with the agent's cloudpickle beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from computility.agent.rundir import blocked_at
from computility.agent.runtime import TaskPython, task_python


def test_a_directory_without_search_permission_blocks_the_way(tasks_root: Path) -> None:
    inner = tasks_root / "closed" / "bin"
    inner.mkdir(parents=True)
    exe = inner / "python"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (tasks_root / "closed").chmod(0o700)
    stranger = (os.getuid() + 12345, os.getgid() + 12345)
    assert blocked_at(exe, *stranger) == tasks_root / "closed"
    assert blocked_at(exe, os.getuid(), os.getgid()) is None  # its owner passes
    (tasks_root / "closed").chmod(0o711)
    assert blocked_at(exe, *stranger) is None


def test_an_unreadable_file_blocks_but_a_readable_one_does_not(tasks_root: Path) -> None:
    secret = tasks_root / "secret"
    secret.write_text("x")
    secret.chmod(0o600)
    stranger = (os.getuid() + 12345, os.getgid() + 12345)
    assert blocked_at(secret, *stranger) == secret
    secret.chmod(0o644)
    assert blocked_at(secret, *stranger) is None


def test_tasks_run_as_the_agent_get_the_agents_interpreter(tasks_root: Path) -> None:
    assert task_python(None, tasks_root) == TaskPython(sys.executable)


def test_a_user_who_cannot_reach_the_agents_python_gets_one_with_cloudpickle(
    tasks_root: Path,
) -> None:
    stranger = (os.getuid() + 12345, os.getgid() + 12345)
    tasks_root.chmod(0o755)
    import cloudpickle

    # A copy someone else could have written is not trusted: it is replaced, not imported.
    planted = tasks_root / ".computility-python" / f"cloudpickle-{cloudpickle.__version__}"
    (planted / "cloudpickle").mkdir(parents=True)
    (planted / "cloudpickle" / "__init__.py").write_text("__version__ = 'planted'\n")
    for place in (planted.parent, planted, planted / "cloudpickle"):
        place.chmod(0o777)
    chosen = task_python(stranger, tasks_root)
    if blocked_at(Path(sys.executable), *stranger) is None:
        assert chosen == TaskPython(sys.executable)  # reachable by everyone: kept
        return
    assert chosen.executable != sys.executable and chosen.pythonpath is not None
    assert blocked_at(Path(chosen.pythonpath) / "cloudpickle" / "__init__.py", *stranger) is None
    probe = subprocess.run(
        [chosen.executable, "-c", "import cloudpickle; print(cloudpickle.__version__)"],
        env={"PYTHONPATH": chosen.pythonpath, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == cloudpickle.__version__


def test_tasks_staged_side_by_side_all_get_the_same_python(tasks_root: Path) -> None:
    # Several tasks of a site are staged at once; the first choice must not fail the others.
    from concurrent.futures import ThreadPoolExecutor

    stranger = (os.getuid() + 23456, os.getgid() + 23456)
    tasks_root.chmod(0o755)
    with ThreadPoolExecutor(max_workers=8) as pool:
        chosen = list(pool.map(lambda _: task_python(stranger, tasks_root), range(16)))
    assert len(set(chosen)) == 1
