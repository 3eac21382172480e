"""The run directory of one attempt: where the task's files, script, logs and status live.

Layout (``<tasks root>/<site>/<key>/``)::

    task.sh      setup then run, in `workdir`; what every backend executes with /bin/sh
    work/        the task's working directory: the unpacked upload, its outputs
    stdout       what it printed
    stderr
    status.json  how it ended (written by the supervisor or the backend's wrapper)

The tasks root lives outside the agent's data directory (which holds its key) and is enterable by
the user tasks run as, as the contract says; each run directory belongs to that user.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path

from computility.agent.backends.base import SCRIPT_FILE


def default_tasks_root() -> Path:
    return Path(tempfile.gettempdir()) / "computility-tasks"


def blocked_at(path: Path, uid: int, gid: int) -> Path | None:
    """The first place on the way to `path` that user `uid` (group `gid`) cannot pass: a
    directory it may not search, or `path` itself when it is a file it may not read; None when
    it can reach it. The owner, group or other bits apply, as the kernel applies them."""
    target = path.resolve()
    for place in [*reversed(target.parents), target]:
        try:
            st = place.stat()
        except OSError:
            return place
        need = 0o100 if place != target or place.is_dir() else 0o400
        shift = 0 if st.st_uid == uid else 3 if st.st_gid == gid else 6
        if not st.st_mode & (need >> shift):
            return place
    return None


def check_enterable(root: Path, owner: tuple[int, int] | None) -> None:
    """Create `root` and make sure the tasks' user can reach it; ValueError says what blocks."""
    root.mkdir(parents=True, exist_ok=True)
    if owner is None:
        return
    part = blocked_at(root, *owner)
    if part is not None:
        mode = part.stat().st_mode & 0o777
        raise ValueError(f"tasks root {root}: the tasks' user (uid {owner[0]}) cannot enter "
                         f"{part} (mode {mode:o}); choose another --tasks-root")


def task_script(run: str, setup: str | None, workdir: Path) -> str:
    """`setup` (if any) then `run`, each by /bin/sh -c, in `workdir`; setup failing fails it."""
    lines = ["#!/bin/sh", f"cd {shlex.quote(str(workdir))} || exit 126"]
    if setup:
        lines.append(f"/bin/sh -c {shlex.quote(setup)} || exit $?")
    lines.append(f"exec /bin/sh -c {shlex.quote(run)}")
    return "\n".join(lines) + "\n"


def make_rundir(
    root: Path, site: str, key: str, run: str, setup: str | None, owner: tuple[int, int] | None
) -> tuple[Path, Path]:
    """Create (afresh) the run directory and its work directory; returns both.

    `owner` (uid, gid) is who the task runs as when the agent is root: the directories become
    theirs so the task can write its outputs.
    """
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    site_dir = root / site
    site_dir.mkdir(exist_ok=True)
    os.chmod(site_dir, 0o755)
    rundir = site_dir / key
    if rundir.exists():
        shutil.rmtree(rundir)
    rundir.mkdir(mode=0o755)
    workdir = rundir / "work"
    workdir.mkdir()
    script = rundir / SCRIPT_FILE
    script.write_text(task_script(run, setup, workdir), encoding="utf-8")
    script.chmod(0o755)
    if owner is not None:
        chown_tree(rundir, owner)
    return rundir, workdir


def chown_tree(path: Path, owner: tuple[int, int]) -> None:
    uid, gid = owner
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)
