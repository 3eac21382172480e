"""Run on a site, as a task, by `NetworkExecutor`: load a chunk of pickled calls, make them,
pickle what each returned or raised.

This file is shipped in the task's working directory and run by the site's Python, so it uses
nothing but the standard library and cloudpickle. Before it unpickles anything it checks that
the site's Python minor version and cloudpickle version are the caller's (pickled code is only
portable between equal versions); on a mismatch it writes ``mismatch.json`` naming both values
and exits with `MISMATCH_EXIT` without running anything.
"""

from __future__ import annotations

import json
import platform
import sys
import traceback
from pathlib import Path
from typing import Any

PAYLOAD, RUNTIME, RESULT, MISMATCH = "payload.pkl", "runtime.json", "result.pkl", "mismatch.json"
MISMATCH_EXIT = 97


def runtime() -> dict[str, str]:
    """This interpreter's versions, as the caller records them and the site compares them."""
    try:
        import cloudpickle
        pickler = str(cloudpickle.__version__)
    except ImportError:
        pickler = "not installed"
    python = ".".join(platform.python_version_tuple()[:2])
    return {"python": python, "cloudpickle": pickler}


def mismatch(wanted: dict[str, str], here: dict[str, str]) -> dict[str, str] | None:
    for what in ("python", "cloudpickle"):
        if wanted.get(what) != here[what]:
            return {"what": what, "client": str(wanted.get(what)), "site": here[what]}
    return None


def call_all(calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """Each call's ``("ok", value)`` or ``("error", exception, type, message, traceback)``."""
    out: list[tuple[Any, ...]] = []
    for fn, args, kwargs in calls:
        try:
            out.append(("ok", fn(*args, **kwargs)))
        except Exception as error:
            out.append(("error", error, type(error).__name__, str(error),
                        traceback.format_exc()))
    return out


def main(workdir: Path) -> int:
    wanted = json.loads((workdir / RUNTIME).read_text(encoding="utf-8"))
    found = mismatch(wanted, runtime())
    if found is not None:
        (workdir / MISMATCH).write_text(json.dumps(found), encoding="utf-8")
        print(f"computility: {found['what']} {found['site']} here, the caller has "
              f"{found['client']}: nothing run", file=sys.stderr)
        return MISMATCH_EXIT
    import cloudpickle

    calls = cloudpickle.loads((workdir / PAYLOAD).read_bytes())
    results = call_all(calls)
    try:
        data = cloudpickle.dumps(results)
    except Exception:  # a value or exception that cannot be pickled: say what it was
        data = cloudpickle.dumps([
            r if _picklable(r) else ("error", None, "PicklingError",
                                     f"the result of call {i} cannot be pickled", "")
            for i, r in enumerate(results)
        ])
    (workdir / RESULT).write_bytes(data)
    return 0


def _picklable(value: Any) -> bool:
    import cloudpickle

    try:
        cloudpickle.dumps(value)
    except Exception:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main(Path.cwd()))
