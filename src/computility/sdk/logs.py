"""Reading a task's logs as they grow, across attempts.

The service keeps one log per stream per task: the latest attempt's. A reader remembers how far
it has read and which attempt that was; when a retry or a re-placement starts a new log, the
service sends the new one whole and the reader starts again from there (`LogChunk.restarted`),
rather than reading a range of the new log at the old one's offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from computility.sdk.calls import Call


@dataclass(frozen=True)
class LogChunk:
    data: bytes
    attempt: int | None
    """The attempt whose log this is (None before any was written)."""
    restarted: bool = False
    """A newer attempt's log replaced the one being read; `data` is it from its start."""


def log_chunk(task_id: int, stream: str, offset: int, attempt: int | None) -> Call[LogChunk]:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    if attempt is not None:
        headers["X-Log-Attempt"] = str(attempt)

    def parse(r: httpx.Response) -> LogChunk:
        sent = r.headers.get("X-Log-Attempt", "")
        now = int(sent) if sent.isdigit() else attempt
        if r.status_code == 416:  # nothing past `offset` yet
            return LogChunk(b"", attempt)
        if r.status_code == 206:
            return LogChunk(r.content, now)
        if attempt is not None and now != attempt:
            return LogChunk(r.content, now, restarted=True)
        return LogChunk(r.content[offset:], now)

    return Call("GET", f"/api/v1/tasks/{task_id}/logs", parse, params={"stream": stream},
                headers=headers, ok=(200, 206, 416))


@dataclass
class LogCursor:
    """How far a reader has read each stream of one task, and of which attempt."""

    task_id: int
    offsets: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int | None] = field(default_factory=dict)

    def next(self, stream: str) -> Call[LogChunk]:
        return log_chunk(self.task_id, stream, self.offsets.get(stream, 0),
                         self.attempts.get(stream))

    def take(self, stream: str, chunk: LogChunk) -> bytes:
        """Account for `chunk`; the bytes to show."""
        start = 0 if chunk.restarted else self.offsets.get(stream, 0)
        self.offsets[stream] = start + len(chunk.data)
        if chunk.attempt is not None:
            self.attempts[stream] = chunk.attempt
        return chunk.data
