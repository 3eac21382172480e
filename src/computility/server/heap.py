"""The heap of a process that serves only the plane, for a long time (`computility up`).

Measured under `benchmarks/load.py` (SQLite, 500 clients, 300 requests/s):

- **Frozen start-up objects.** Everything built before serving (modules, routes, the network
  model, compiled statements) lives as long as the process: frozen (`gc.freeze`), a full
  collection no longer walks it, and its pauses, which stop every request, shrink (about 150 ms
  to under 100 ms).
- **Two malloc arenas.** glibc gives each thread that contends for the allocator an arena of its
  own, and memory freed across several arenas is seldom given back: with the request threads, the
  scheduling loop and the event loop allocating at once, resident memory grew 19 MiB (1.11×)
  in 4 minutes with glibc's default (8 per core) and 11 MiB (1.06×, levelling off) with two,
  at the same latency. Trimming the heap every 5 s (`malloc_trim`) on top saved nothing more.

A test run builds and drops planes by the dozen in one process; it keeps the defaults.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc

M_ARENA_MAX = -8
"""glibc's `mallopt` parameter for the most arenas (malloc.h)."""
ARENAS = 2


def tune_for_serving() -> None:
    """Freeze what exists now, and cap the allocator's arenas for threads yet to allocate."""
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator as it is
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, ARENAS)
