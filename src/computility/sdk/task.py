"""`Task`: a handle on one submitted task — wait for it, read its logs, cancel it, fetch its
outputs. Waiting polls the task's record, quickly at first and then once a second, so a short
task is seen finished within tens of milliseconds and a long one costs one request a second.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from computility.domain.errors import ComputilityError, UsageError
from computility.sdk.errors import TaskFailed
from computility.sdk.logs import LogCursor
from computility.wire.api import TERMINAL_TASK_STATES, TaskOut
from computility.wire.archives import BadArchive, BlobTooLarge, extract

if TYPE_CHECKING:
    from computility.sdk.client import Client

OUTPUTS_LIMIT_BYTES = 8 << 30
FIRST_POLL_S, MAX_POLL_S = 0.05, 1.0


def next_poll_s(previous: float) -> float:
    return min(MAX_POLL_S, previous * 1.5)


class Task:
    """One task; `record` is its last fetched state (`refresh` fetches it again)."""

    def __init__(self, client: Client, record: TaskOut) -> None:
        self.client = client
        self.record = record

    def __repr__(self) -> str:
        return f"Task(id={self.id}, state={self.state!r})"

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def state(self) -> str:
        return self.record.state

    @property
    def done(self) -> bool:
        return self.record.state in TERMINAL_TASK_STATES

    def refresh(self) -> TaskOut:
        self.record = self.client.get(self.id)
        return self.record

    def wait(self, timeout: float | None = None, *, check: bool = False) -> TaskOut:
        """Block until the task ends; its final record. `TimeoutError` after `timeout`
        seconds; with `check`, `TaskFailed` unless it succeeded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = FIRST_POLL_S
        while not self.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {self.id} still {self.state} after {timeout} s")
            time.sleep(pause if deadline is None else
                       max(0.0, min(pause, deadline - time.monotonic())))
            pause = next_poll_s(pause)
            self.refresh()
        if check and self.state != "succeeded":
            raise TaskFailed(self.record)
        return self.record

    def logs(self, stream: str = "stdout") -> str:
        return self.client.logs(self.id, stream).decode("utf-8", "replace")

    def follow(self, stream: str = "stdout") -> Iterator[bytes]:
        """The log as it grows, chunk by chunk, until the task has ended and all is read (a
        retry's log starts again from its first byte)."""
        cursor, pause = LogCursor(self.id), FIRST_POLL_S
        while True:
            ended = self.done
            chunk = cursor.take(stream, self.client.call(cursor.next(stream)))
            if chunk:
                pause = FIRST_POLL_S
                yield chunk
            elif ended:
                return
            else:
                time.sleep(pause)
                pause = next_poll_s(pause)
                self.refresh()

    def cancel(self) -> TaskOut:
        self.record = self.client.cancel(self.id)
        return self.record

    def download(self, dest: str | Path) -> list[str]:
        return self.client.download(self.id, dest)


def unpack_outputs(task_id: int, archive: bytes, dest: Path) -> list[str]:
    """Unpack a task's outputs archive into `dest` (new or empty) with the safe extractor."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"download destination: expected an empty or new directory, got "
                         f"'{dest}'")
    with tempfile.NamedTemporaryFile(suffix=".tar.gz") as f:
        f.write(archive)
        f.flush()
        try:
            return extract(Path(f.name), dest, OUTPUTS_LIMIT_BYTES)
        except (BadArchive, BlobTooLarge) as error:
            raise ComputilityError(f"task {task_id}: outputs refused: {error}") from None
