"""Open a trace, plain or gzip-compressed, as a stream of text lines.

Traces can be far larger than memory allows to hold as text, so readers see one line at a time
and keep only the columns they need. Compression is told from the file's first bytes rather than
its name, because traces are often renamed or fetched without their suffix.

Lines are split on ``\\n`` only, so that line numbers in error messages match what ``sed -n``
and editors show for the decompressed file; a stray ``\\r`` stays inside its line.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from computility.domain.errors import BadInput

GZIP_MAGIC = b"\x1f\x8b"


def _open_binary(path: str) -> io.BufferedReader:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not a trace file") from None
    except PermissionError:
        raise BadInput(f"{path}: permission denied") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot open ({exc.strerror or exc})") from None


def _lines(path: str, text: IO[str]) -> Iterator[str]:
    # Decompression faults surface while iterating, far from the open call; they are the
    # user's file being damaged, so they become one-line bad-input errors too.
    try:
        yield from text
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInput(f"{path}: corrupt or truncated gzip data ({exc})") from None


@contextmanager
def open_lines(path: str | os.PathLike[str]) -> Iterator[Iterator[str]]:
    """Yield the file's lines (each with its ``\\n``), decompressing gzip when the magic says so.

    Undecodable bytes become U+FFFD so that the field holding them is reported by the reader,
    with its line, instead of failing the whole file with a decoding error.
    """
    name = os.fspath(path)
    raw = _open_binary(name)
    try:
        stream: IO[bytes] | gzip.GzipFile = raw
        if raw.peek(2)[:2] == GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="\n")
        try:
            yield _lines(name, text)
        finally:
            text.close()
    finally:
        raw.close()


def first_content_line(path: str | os.PathLike[str], max_lines: int = 100) -> str:
    """The first non-blank line (stripped), or '' when the file starts with no content."""
    with open_lines(path) as lines:
        for count, line in enumerate(lines, 1):
            if line.strip():
                return line.strip()
            if count >= max_lines:
                break
    return ""
