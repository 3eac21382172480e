"""What every service command shares: the client from the profile, JSON output, times and money
shown the same way everywhere, and live displays that only appear on a terminal."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, TextIO

import typer
from pydantic import BaseModel
from rich.console import Console

from computility.sdk.client import Client

JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON document on stdout "
                                        "(its schema is in schemas/cli/).")]
PIPE_WIDTH = 4096
"""The width tables are laid out in when output goes to a pipe or a file: wide enough that no
column is folded or cut (Rich would assume 80 columns there)."""


def width_for(stream: TextIO) -> int | None:
    """None (Rich measures the terminal, or honours ``COLUMNS``) on a terminal or when
    ``COLUMNS`` is set; otherwise `PIPE_WIDTH`, so that a script reading a table gets whole
    values rather than ``EPYC-…`` split over two lines."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        terminal = False
    return None if terminal or os.environ.get("COLUMNS") else PIPE_WIDTH


class _Console(Console):
    """A console whose closed stream is a `BrokenPipeError`, which the commands handle (Rich's
    own answer is to exit on the spot, leaving a running task behind)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


stderr = _Console(stderr=True, highlight=False, soft_wrap=True, width=width_for(sys.stderr))
stdout = _Console(highlight=False, soft_wrap=True, width=width_for(sys.stdout))


def connect() -> Client:
    """A client for the profile in use (``COMPUTILITY_PROFILE``, default ``default``), or the
    environment's ``COMPUTILITY_SERVER``/``COMPUTILITY_API_KEY``."""
    return Client(retries=3)


def dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """One JSON document and a newline on stdout, in UTF-8 whatever the locale (RFC 8259)."""
    text = json.dumps(dump(value), ensure_ascii=False) + "\n"
    sys.stdout.flush()
    binary = getattr(sys.stdout, "buffer", None)
    if binary is None:  # a text-only stream (a test's capture)
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        binary.write(text.encode("utf-8"))
        binary.flush()


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def ago(ts: float | None) -> str:
    if ts is None:
        return "—"
    return span(max(0.0, time.time() - ts)) + " ago"


def span(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def money(amount: float | None, currency: str) -> str:
    if amount is None:
        return "—"
    return f"{amount:,.6f} {currency}" if amount < 1 else f"{amount:,.2f} {currency}"


def interactive() -> bool:
    """Progress and live tables go to stderr, and only when a person is watching it."""
    return sys.stderr.isatty()


def note(text: str, quiet: bool = False) -> None:
    """One of the CLI's own lines: always stderr, never mixed into a task's stdout."""
    if not quiet:
        stderr.print(f"[dim]computility:[/dim] {text}")


def poll(check: Callable[[], bool], first: float = 0.05, most: float = 1.0) -> None:
    """Call `check` until it is true, quickly at first, then once every `most` seconds."""
    pause = first
    while not check():
        time.sleep(pause)
        pause = min(most, pause * 1.5)
