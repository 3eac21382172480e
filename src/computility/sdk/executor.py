"""`NetworkExecutor`: `concurrent.futures.Executor` whose workers are the network's sites.

Each `submit` — or each chunk of `chunksize` inputs of a `map` — becomes one task whose
working directory holds the pickled calls, the caller's Python and cloudpickle versions and
the small runner of `computility.sdk.remote`. The site runs it with its own interpreter
(``$COMPUTILITY_PYTHON``, which agents set to theirs), and the runner refuses to unpickle
anything unless both versions match (`VersionMismatchError`). One watcher thread polls the
executor's tasks by name (one request per poll for all of them) and completes the futures.

Functions defined in ``__main__`` or in a module that is not installed (a script, a test file)
are pickled by value, so the site needs none of the caller's files.
"""

from __future__ import annotations

import itertools
import json
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import cloudpickle

from computility.domain.errors import UsageError
from computility.sdk import remote
from computility.sdk.errors import RemoteError, TaskFailed, VersionMismatchError
from computility.sdk.task import FIRST_POLL_S, next_poll_s, unpack_outputs
from computility.wire.api import TERMINAL_TASK_STATES, TaskOut

if TYPE_CHECKING:
    from computility.sdk.client import Client

RUNNER = "_computility_call.py"
RESOURCE_KEYS = ("cpus", "memory", "accelerators", "disk", "estimate", "estimate_on",
                 "precision", "profile")
PLACEMENT_KEYS = ("policy", "regions", "sites", "owners", "exclude_sites", "deadline",
                  "max_price", "max_latency_ms", "user_location")
Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def _installed(module: ModuleType) -> bool:
    """Whether a site can import `module` itself (the standard library or site-packages)."""
    where = getattr(module, "__file__", None)
    if where is None:
        return True  # built in
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return any(Path(where).resolve().is_relative_to(Path(r).resolve()) for r in roots)


class NetworkExecutor(Executor):
    """Runs callables on the network; see the module docstring.

    `resources` are the task spec's ``resources`` and ``placement`` keys (``cpus=1``,
    ``memory="2GB"``, ``policy="cheapest"``, …) plus ``timeout``, ``envs`` and ``retries``.
    """

    def __init__(self, client: Client, *, chunksize: int = 50, **resources: Any) -> None:
        if chunksize < 1:
            raise UsageError(f"chunksize: expected a whole number ≥ 1, got {chunksize}")
        unknown = set(resources) - {*RESOURCE_KEYS, *PLACEMENT_KEYS, "timeout", "envs",
                                    "retries"}
        if unknown:
            raise UsageError(f"executor: unknown option(s) {', '.join(sorted(unknown))}; "
                             f"expected {', '.join((*RESOURCE_KEYS, *PLACEMENT_KEYS))}, "
                             "timeout, envs or retries")
        self.client, self.chunksize = client, chunksize
        self.name = f"py-{uuid.uuid4().hex[:12]}"
        self._spec = self._base_spec(resources)
        self._here = remote.runtime()
        self._lock = threading.Lock()
        self._waiting: dict[int, list[Future[Any]]] = {}
        self._shutdown = False
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None

    def _base_spec(self, options: dict[str, Any]) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": self.name,
            "run": f'"${{COMPUTILITY_PYTHON:-python3}}" {RUNNER}',
            "outputs": [remote.RESULT, remote.MISMATCH],
            "retries": options.get("retries", 0),
            "timeout": options.get("timeout", "1h"),
            "resources": {k: options[k] for k in RESOURCE_KEYS if k in options},
        }
        placement = {k: options[k] for k in PLACEMENT_KEYS if k in options}
        if placement:
            spec["placement"] = placement
        if "envs" in options:
            spec["envs"] = options["envs"]
        spec["resources"].setdefault("cpus", 1)
        return spec

    # ---------------------------------------------------------------- the Executor API

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        (futures,) = self._start([[(fn, args, kwargs)]])
        return futures[0]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: float | None = None, chunksize: int | None = None) -> Iterator[Any]:
        """Like `Executor.map`: results in input order; each chunk of `chunksize` inputs
        (default: the executor's, 50) is one task, all submitted in one request."""
        size = chunksize or self.chunksize
        calls: list[Call] = [(fn, args, {}) for args in zip(*iterables, strict=False)]
        chunks = [calls[i:i + size] for i in range(0, len(calls), size)]
        futures = list(itertools.chain.from_iterable(self._start(chunks))) if chunks else []
        deadline = None if timeout is None else time.monotonic() + timeout

        def results() -> Iterator[Any]:
            for future in futures:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                yield future.result(left)

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            ids = list(self._waiting) if cancel_futures else []
        for task_id in ids:
            self.client.cancel(task_id)
        self._wake.set()
        if wait and self._watcher is not None:
            self._watcher.join()

    # ---------------------------------------------------------------- submitting

    def _start(self, chunks: list[list[Call]]) -> list[list[Future[Any]]]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new calls after shutdown")
        specs = []
        with tempfile.TemporaryDirectory(prefix="computility-exec-") as tmp:
            for i, chunk in enumerate(chunks):
                workdir = Path(tmp) / str(i)
                self._write_workdir(workdir, chunk)
                specs.append({**self._spec, "workdir": str(workdir)})
            tasks = self.client.submit_many(specs)
        out = []
        with self._lock:
            for task, chunk in zip(tasks, chunks, strict=True):
                futures: list[Future[Any]] = [Future() for _ in chunk]
                for f in futures:
                    f.set_running_or_notify_cancel()
                self._waiting[task.id] = futures
                out.append(futures)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name=f"{self.name}-watch",
                                                 daemon=True)
                self._watcher.start()
        self._wake.set()
        return out

    def _write_workdir(self, workdir: Path, chunk: list[Call]) -> None:
        workdir.mkdir()
        modules = {sys.modules.get(getattr(fn, "__module__", "") or "") for fn, _, _ in chunk}
        by_value = [m for m in modules if m is not None and m.__name__ != "__main__"
                    and not _installed(m)]
        for module in by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            (workdir / remote.PAYLOAD).write_bytes(cloudpickle.dumps(chunk))
        finally:
            for module in by_value:
                cloudpickle.unregister_pickle_by_value(module)
        (workdir / remote.RUNTIME).write_text(json.dumps(self._here), encoding="utf-8")
        (workdir / RUNNER).write_text(Path(remote.__file__).read_text(encoding="utf-8"),
                                      encoding="utf-8")

    # ---------------------------------------------------------------- completing

    def _watch(self) -> None:
        pause = FIRST_POLL_S
        while True:
            with self._lock:
                if not self._waiting:
                    if self._shutdown:
                        return
                    waiting = False
                else:
                    waiting = True
            if not waiting:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                ended = [t for t in self.client.tasks(name=self.name)
                         if t.state in TERMINAL_TASK_STATES and t.id in self._waiting]
            except Exception:  # the service is away: keep the futures waiting, try again
                ended = []
            for record in ended:
                with self._lock:
                    futures = self._waiting.pop(record.id, [])
                self._complete(record, futures)
            pause = FIRST_POLL_S if ended else next_poll_s(pause)
            self._wake.wait(pause)
            self._wake.clear()

    def _complete(self, record: TaskOut, futures: list[Future[Any]]) -> None:
        try:
            results = self._results(record, len(futures))
        except Exception as error:
            for f in futures:
                f.set_exception(error)
            return
        for future, result in zip(futures, results, strict=True):
            if result[0] == "ok":
                future.set_result(result[1])
            else:
                _, exc, kind, message, tb = result
                future.set_exception(exc if isinstance(exc, BaseException)
                                     else RemoteError(kind, message, tb))

    def _results(self, record: TaskOut, count: int) -> list[tuple[Any, ...]]:
        if record.state in ("cancelled", "lost"):
            raise TaskFailed(record)
        with tempfile.TemporaryDirectory(prefix="computility-result-") as tmp:
            dest = Path(tmp) / "out"
            try:
                unpack_outputs(record.id, self.client.outputs(record.id), dest)
            except Exception:
                raise TaskFailed(record) from None
            if (dest / remote.MISMATCH).exists():
                found = json.loads((dest / remote.MISMATCH).read_text(encoding="utf-8"))
                raise VersionMismatchError(found["what"], found["client"], found["site"],
                                           record.site)
            if record.state != "succeeded" or not (dest / remote.RESULT).exists():
                raise TaskFailed(record)
            results: list[tuple[Any, ...]] = cloudpickle.loads(
                (dest / remote.RESULT).read_bytes())
        if len(results) != count:
            raise TaskFailed(record)
        return results
