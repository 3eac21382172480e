"""Retrying a write transaction that lost a race the database resolved by aborting it.

PostgreSQL aborts one side of a deadlock (40P01) or a serialization conflict (40001); SQLite
answers "database is locked" when its busy timeout runs out; a pooled connection may turn out
closed by the server. The transaction rolled back whole, so running it again is safe; a client
should never see these as errors.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError

P = ParamSpec("P")
T = TypeVar("T")

ATTEMPTS = 6
RETRYABLE_PG = ("40P01", "40001")


def retryable(error: DBAPIError) -> bool:
    if error.connection_invalidated:  # the server closed it (restart, idle timeout): reconnect
        return True
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code in RETRYABLE_PG or "database is locked" in str(error.orig)


def retrying(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)`, again (after a short random pause) while it loses such a race."""
    for attempt in range(ATTEMPTS):
        try:
            return fn(*args, **kwargs)
        except DBAPIError as error:
            if attempt == ATTEMPTS - 1 or not retryable(error):
                raise
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")
