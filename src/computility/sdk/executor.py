"""`NetworkExecutor`: `concurrent.futures.Executor` whose workers are the network's sites.

Each `submit` — or each chunk of `chunksize` inputs of a `map` — becomes one task whose
working directory holds the pickled calls, the caller's Python and cloudpickle versions and
the small runner of `computility.sdk.remote`. The site runs it with its own interpreter
(``$COMPUTILITY_PYTHON``, which agents set to theirs), and the runner refuses to unpickle
anything unless both versions match (`VersionMismatchError`). One watcher thread polls the
executor's tasks by name (one request per poll for all of them) and completes the futures.

A future stays *pending* until its task has ended: the network, not this process, decides
when a call starts, so `Future.cancel` works for any call whose result has not come back, and
once every future of a task is cancelled the task itself is cancelled (it stops costing money).

Functions defined in ``__main__`` or in a module that is not installed (a script, a test file)
are pickled by value, so the site needs none of the caller's files.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, InvalidStateError
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import cloudpickle

from computility.domain.errors import ComputilityError, UsageError
from computility.sdk import remote
from computility.sdk.errors import RemoteError, TaskFailed, Unauthorized, VersionMismatchError
from computility.sdk.task import FIRST_POLL_S, next_poll_s, unpack_outputs
from computility.wire.api import TERMINAL_TASK_STATES, TaskOut

if TYPE_CHECKING:
    from computility.sdk.client import Client

RUNNER = "_computility_call.py"
RESOURCE_KEYS = ("cpus", "memory", "accelerators", "disk", "estimate", "estimate_on",
                 "precision", "profile")
PLACEMENT_KEYS = ("policy", "regions", "sites", "owners", "exclude_sites", "deadline",
                  "max_price", "max_latency_ms", "user_location")
SUBMIT_BATCH = 1000
"""Tasks per submission request (the API takes up to 10,000; smaller keeps each request short)."""
STDERR_TAIL_BYTES = 2000
Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def _installed(module: ModuleType) -> bool:
    """Whether a site can import `module` itself (the standard library or site-packages)."""
    where = getattr(module, "__file__", None)
    if where is None:
        return True  # built in
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return any(Path(where).resolve().is_relative_to(Path(r).resolve()) for r in roots)


@cache
def _runner_source() -> str:
    return Path(remote.__file__).read_text(encoding="utf-8")


class NetworkExecutor(Executor):
    """Runs callables on the network; see the module docstring.

    `resources` are the task spec's ``resources`` and ``placement`` keys (``cpus=1``,
    ``memory="2GB"``, ``policy="cheapest"``, …) plus ``timeout``, ``envs`` and ``retries``.
    `name` (every task's name, ``py-`` and 12 hex digits) finds them: ``client.tasks(name=…)``.
    """

    def __init__(self, client: Client, *, chunksize: int = 50, **resources: Any) -> None:
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise UsageError(f"chunksize: expected a whole number ≥ 1, got {chunksize!r}")
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
        """Run ``fn(*args, **kwargs)`` on the network as one task; its future."""
        (futures,) = self._start([[(fn, args, kwargs)]])
        return futures[0]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: float | None = None, chunksize: int | None = None) -> Iterator[Any]:
        """Like `Executor.map`: results in input order; each chunk of `chunksize` inputs
        (default: the executor's, 50) is one task, all submitted at once. The first call that
        raised re-raises here when its turn comes; closing the iterator early cancels the
        calls not yet done."""
        size = self.chunksize if chunksize is None else chunksize
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise UsageError(f"chunksize: expected a whole number ≥ 1, got {size!r}")
        calls: list[Call] = [(fn, args, {}) for args in zip(*iterables, strict=False)]
        chunks = [calls[i:i + size] for i in range(0, len(calls), size)]
        futures = list(itertools.chain.from_iterable(self._start(chunks))) if chunks else []
        deadline = None if timeout is None else time.monotonic() + timeout

        def results() -> Iterator[Any]:
            try:
                for future in futures:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    yield future.result(left)
            finally:
                for future in futures:
                    future.cancel()
                self._wake.set()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls; with `cancel_futures`, every call not yet done is cancelled (its
        future and, on the service, its task); with `wait`, return once every other call
        has come back."""
        with self._lock:
            self._shutdown = True
            dropped = list(self._waiting.items()) if cancel_futures else []
            if cancel_futures:
                self._waiting.clear()
        for task_id, futures in dropped:
            for future in futures:
                future.cancel()
                _claim(future)
            self._cancel_task(task_id)
        self._wake.set()
        if wait and self._watcher is not None:
            self._watcher.join()

    # ---------------------------------------------------------------- submitting

    def _start(self, chunks: list[list[Call]]) -> list[list[Future[Any]]]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new calls after shutdown")
        out: list[list[Future[Any]]] = []
        for first in range(0, len(chunks), SUBMIT_BATCH):
            batch = chunks[first:first + SUBMIT_BATCH]
            with tempfile.TemporaryDirectory(prefix="computility-exec-") as tmp:
                specs = []
                for i, chunk in enumerate(batch):
                    workdir = Path(tmp) / str(i)
                    self._write_workdir(workdir, chunk)
                    specs.append({**self._spec, "workdir": str(workdir)})
                tasks = self.client.submit_many(specs)
            with self._lock:
                for task, chunk in zip(tasks, batch, strict=True):
                    futures: list[Future[Any]] = [Future() for _ in chunk]
                    self._waiting[task.id] = futures
                    out.append(futures)
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, daemon=True,
                                                     name=f"{self.name}-watch")
                    self._watcher.start()
            self._wake.set()
        return out

    def _write_workdir(self, workdir: Path, chunk: list[Call]) -> None:
        workdir.mkdir()
        # The function's own module (a partial's, for a functools.partial) is sent by value
        # when the site could not import it.
        modules = {sys.modules.get(getattr(getattr(fn, "func", fn), "__module__", "") or "")
                   for fn, _, _ in chunk}
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
        (workdir / RUNNER).write_text(_runner_source(), encoding="utf-8")

    # ---------------------------------------------------------------- completing

    def _watch(self) -> None:
        """Poll this executor's tasks until shut down with nothing left to wait for."""
        pause = FIRST_POLL_S
        while True:
            with self._lock:
                if not self._waiting and self._shutdown:
                    return
                idle = not self._waiting
            if idle:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._drop_cancelled()
            try:
                ended = self._ended()
            except Unauthorized as error:  # a revoked key does not mend: say so, stop waiting
                self._fail_all(error)
                continue
            except ComputilityError:  # the service is away: keep the futures waiting
                ended = []
            except Exception as error:  # a bug or a closed client: surface it, do not hang
                self._fail_all(error)
                continue
            for record, futures in ended:
                self._complete(record, futures)
            pause = FIRST_POLL_S if ended else next_poll_s(pause)
            self._wake.wait(pause)
            self._wake.clear()

    def _ended(self) -> list[tuple[TaskOut, list[Future[Any]]]]:
        """The waited-for tasks that have ended, each taken out of the waiting table.

        The list comes newest first, so it is read only down to the oldest task still waited
        for: an executor that has run many tasks costs one page per poll, not all of them."""
        with self._lock:
            if not self._waiting:
                return []
            oldest = min(self._waiting)
        out = []
        for record in self.client.tasks(name=self.name):
            if record.id < oldest:
                break
            if record.state not in TERMINAL_TASK_STATES:
                continue
            with self._lock:
                futures = self._waiting.pop(record.id, None)
            if futures is not None:
                out.append((record, futures))
        return out

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            dropped = list(self._waiting.values())
            self._waiting.clear()
        for futures in dropped:
            for future in futures:
                if _claim(future):
                    _settle(future, error=error)

    def _drop_cancelled(self) -> None:
        """Cancel the tasks whose every future the caller has cancelled."""
        with self._lock:
            gone = [task_id for task_id, futures in self._waiting.items()
                    if all(f.cancelled() for f in futures)]
            dropped = [(task_id, self._waiting.pop(task_id)) for task_id in gone]
        for task_id, futures in dropped:
            for future in futures:
                _claim(future)
            self._cancel_task(task_id)

    def _cancel_task(self, task_id: int) -> None:
        # Ended meanwhile, or the service is away: there is nothing left to save.
        with contextlib.suppress(ComputilityError):
            self.client.cancel(task_id)

    def _complete(self, record: TaskOut, futures: list[Future[Any]]) -> None:
        live = [f for f in futures if _claim(f)]
        if not live:
            return
        try:
            results = self._results(record, len(futures))
        except Exception as error:
            for f in live:
                _settle(f, error=error)
            return
        for future, result in zip(futures, results, strict=True):
            if future not in live:
                continue
            if result[0] == "ok":
                _settle(future, value=result[1])
                continue
            _, exc, kind, message, tb = result
            if isinstance(exc, BaseException):
                exc.add_note(f"raised on site {record.site} (task {record.id}):\n{tb}")
            else:
                exc = RemoteError(kind, message, tb)
            _settle(future, error=exc)

    def _results(self, record: TaskOut, count: int) -> list[tuple[Any, ...]]:
        if record.state in ("cancelled", "lost"):
            raise TaskFailed(record)
        with tempfile.TemporaryDirectory(prefix="computility-result-") as tmp:
            dest = Path(tmp) / "out"
            try:
                unpack_outputs(record.id, self.client.outputs(record.id), dest)
            except ComputilityError:
                dest.mkdir(exist_ok=True)  # no outputs: the reason is in its stderr
            if (dest / remote.MISMATCH).exists():
                found = json.loads((dest / remote.MISMATCH).read_text(encoding="utf-8"))
                raise VersionMismatchError(found["what"], found["client"], found["site"],
                                           record.site)
            if record.state != "succeeded" or not (dest / remote.RESULT).exists():
                raise TaskFailed(record, self._stderr_tail(record.id))
            results: list[tuple[Any, ...]] = cloudpickle.loads(
                (dest / remote.RESULT).read_bytes())
        if len(results) != count:
            raise TaskFailed(record, f"{len(results)} results for {count} calls")
        return results

    def _stderr_tail(self, task_id: int) -> str:
        """The end of a failed task's stderr: why its interpreter or runner stopped."""
        try:
            text = self.client.logs(task_id, "stderr").decode("utf-8", "replace")
        except ComputilityError:
            return ""
        return text[-STDERR_TAIL_BYTES:].strip()


def _claim(future: Future[Any]) -> bool:
    """Take `future` out of *pending*: True if it is to get a result, False if it was
    cancelled (its waiters are told now). Called exactly once per future, by whoever has
    removed its task from the waiting table."""
    try:
        return future.set_running_or_notify_cancel()
    except RuntimeError:  # already claimed: nothing to do
        return False


def _settle(future: Future[Any], *, value: Any = None,
            error: BaseException | None = None) -> None:
    with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
