"""Which Python a site's tasks get as ``$COMPUTILITY_PYTHON`` (the SDK's executor runs pickled
callables on it, and the demo's scripts use it).

The agent's own interpreter is the natural choice: it has cloudpickle, and its version is what
the site reports. But an agent running as root runs tasks as an unprivileged user, and its
interpreter may live where that user cannot reach (a Python under ``/root``, mode 700). Then the
tasks get the system's ``python3`` instead, with a world-readable copy of the agent's own
cloudpickle (pure Python) on ``PYTHONPATH``; the executor's runner still compares both versions
with the caller's before it unpickles anything.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from computility.agent.rundir import blocked_at

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class TaskPython:
    executable: str
    pythonpath: str | None = None


_choosing = threading.Lock()


def task_python(owner: tuple[int, int] | None, tasks_root: Path) -> TaskPython:
    """The interpreter (and extra import path) for tasks run as `owner` (None: as the agent).
    Decided once per (owner, tasks root); tasks staged side by side wait for that decision
    rather than racing to make the shared copy."""
    with _choosing:
        return _task_python(owner, tasks_root)


@functools.cache
def _task_python(owner: tuple[int, int] | None, tasks_root: Path) -> TaskPython:
    here = TaskPython(sys.executable)
    if owner is None:
        return here
    uid, gid = owner
    stdlib = Path(sys.base_prefix) / "lib"
    if blocked_at(Path(sys.executable), uid, gid) is None and blocked_at(stdlib, uid,
                                                                          gid) is None:
        return here
    system = shutil.which("python3", path=SYSTEM_PATH)
    if system is None:
        return here  # nothing better: such tasks fail to find an interpreter and say so
    return TaskPython(system, _shared_cloudpickle(tasks_root))


def _shared_cloudpickle(tasks_root: Path) -> str | None:
    """A copy of the agent's cloudpickle that every task user can read; its directory."""
    try:
        import cloudpickle
    except ImportError:
        return None
    source = Path(cloudpickle.__file__).parent
    lib = tasks_root / ".computility-python" / f"cloudpickle-{cloudpickle.__version__}"
    if lib.exists() and not _ours(lib):
        # Someone else could have written it: every executor task would import their code.
        shutil.rmtree(lib.parent, ignore_errors=True)
    if not (lib / "cloudpickle" / "__init__.py").exists():
        staging = lib.with_name(f"{lib.name}.{uuid.uuid4().hex}")  # each maker its own
        shutil.copytree(source, staging / "cloudpickle",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for place in (lib.parent, staging, *staging.rglob("*")):
            place.chmod(0o755 if place.is_dir() else 0o644)
        try:
            staging.rename(lib)
        except OSError:  # another agent on this machine made it first
            shutil.rmtree(staging, ignore_errors=True)
    return str(lib)


def _ours(lib: Path) -> bool:
    """Whether `lib`, its parent and everything in it belong to this process's user and only
    it may write them."""
    me = os.geteuid()
    try:
        places = [lib.parent, lib, *lib.rglob("*")]
        return all(p.lstat().st_uid == me and not p.lstat().st_mode & 0o022 for p in places)
    except OSError:
        return False
