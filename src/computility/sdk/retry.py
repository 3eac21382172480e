"""When a call is tried again, and how long to wait first.

Almost every call the SDK makes is safe to repeat: reads are reads, submissions carry an
Idempotency-Key (a repeat returns the tasks the first one created), uploads are
content-addressed and a cancel of a cancelled task is a no-op. Such a call is retried on a
transport error and on 429/502/503/504. The few that are not (creating a tenant or a key,
registering a site: a repeat would make a second key or revoke the first) are retried only when
the request cannot have reached the service (it could not connect, or was told 429);
every retry waits with exponential backoff and "equal" jitter (half of
each pause fixed, half random), honouring ``Retry-After``. Half fixed, so that the default four
retries span at least about two seconds — long enough to ride out a service that is restarting —
while clients that failed together still spread out when they come back.
"""

from __future__ import annotations

import random

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_PAUSE_S = 10.0


def retryable(response: httpx.Response | None, error: Exception | None,
              idempotent: bool = True) -> bool:
    """Whether this outcome of a try is worth another: the service was away or overloaded
    (and, for a call that is not `idempotent`, certainly did not act on it)."""
    if error is not None:
        if not idempotent:
            return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
        return isinstance(error, httpx.TransportError)
    if response is None:
        return False
    if not idempotent:
        return response.status_code == 429
    return response.status_code in RETRY_STATUSES


def pause_s(attempt: int, backoff_s: float, response: httpx.Response | None) -> float:
    """Seconds before try `attempt + 1` (`attempt` counts from 0)."""
    if response is not None:
        after = response.headers.get("Retry-After", "")
        if after.isascii() and after.replace(".", "", 1).isdigit():
            return min(float(after), MAX_PAUSE_S)
    step = min(MAX_PAUSE_S, backoff_s * 2.0**attempt)
    return step / 2 + random.uniform(0, step / 2)
