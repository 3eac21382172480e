"""Refusing a client that fails authentication too often: guessing keys stops paying.

A client (by address) that fails authentication more than `Settings.auth_failure_limit` times
within `Settings.auth_failure_window_s` is refused for the next window: every attempt from that
address is answered 429 Too Many Requests with ``Retry-After``, whatever key it carries. A valid
key is refused too, or the answer would tell a guesser the moment a guess succeeds. Other
addresses are unaffected. A failure is a well-formed key (``cu_<id>_<secret>``) that does not
verify: a request with no key or a malformed one can never succeed, guesses nothing, and does
not count (a misconfigured client then cannot lock out everyone behind its address).

The address is the peer's, as uvicorn reports it: behind a reverse proxy that uvicorn trusts
(``FORWARDED_ALLOW_IPS``; by default only 127.0.0.1 and ::1) the address the proxy forwards in
``X-Forwarded-For``, otherwise the connection's own, so a client cannot choose its address by
sending the header itself.

Per replica and in memory: each replica counts what it sees, which bounds a guesser at the limit
times the number of replicas per window; a restart forgets. Memory is bounded: at most
`Settings.auth_tracked_clients` addresses are tracked, the longest-quiet forgotten first. A
request from an address with no recent failure costs one dictionary lookup and takes no lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from computility.server.problems import ApiError

log = logging.getLogger("computility.auth")

FAILURE_LIMIT = 10
"""Failures allowed within a window; the next one refuses the address."""
FAILURE_WINDOW_S = 60.0
TRACKED_CLIENTS = 10_000
"""Addresses tracked at once (a few hundred bytes each)."""


@dataclass
class _Client:
    failures: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0


class FailureLimiter:
    """Failed authentications per client address; see the module docstring. Thread-safe."""

    def __init__(self, limit: int = FAILURE_LIMIT, window_s: float = FAILURE_WINDOW_S,
                 max_clients: int = TRACKED_CLIENTS,
                 clock: Callable[[], float] = time.monotonic,
                 on_refused: Callable[[str], None] | None = None) -> None:
        if limit < 1 or window_s <= 0 or max_clients < 1:
            raise ValueError("limit and max_clients at least 1, window_s above 0")
        self.limit, self.window_s, self.max_clients = limit, window_s, max_clients
        self.clock = clock
        self.on_refused = on_refused
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._clients)

    def refusal(self, client: str, kind: str = "api") -> ApiError | None:
        """The 429 to answer `client` with while it is refused, else None.

        The common case, an address without recent failures, is one lookup without the lock
        (a dict's ``get`` is atomic); `kind` (``api``|``dashboard``) labels the metric."""
        if self._clients.get(client) is None:
            return None
        with self._lock:
            entry = self._clients.get(client)
            if entry is None:
                return None
            now = self.clock()
            left = entry.blocked_until - now
            if left <= 0 and (not entry.failures
                              or entry.failures[-1] <= now - self.window_s):
                del self._clients[client]  # quiet for a window: back to the lock-free path
        if left <= 0:
            return None
        return self._refused(left, kind)

    def failed(self, client: str, kind: str = "api") -> ApiError | None:
        """Count a failed authentication of `client`: the 429 to answer instead of the failure
        when this one exceeds the limit (or the client is refused already), else None."""
        now = self.clock()
        with self._lock:
            entry = self._clients.get(client)
            if entry is None:
                entry = self._clients[client] = _Client()
                while len(self._clients) > self.max_clients:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(client)
            if entry.blocked_until > now:
                left = entry.blocked_until - now
            else:
                failures = entry.failures
                failures.append(now)
                while failures and failures[0] <= now - self.window_s:
                    failures.popleft()
                if len(failures) <= self.limit:
                    return None
                failures.clear()
                entry.blocked_until = now + self.window_s
                left = self.window_s
                log.warning("authentication: %s refused for %.0f s after more than %d failures "
                            "within %.0f s", client, self.window_s, self.limit, self.window_s,
                            extra={"client": client})
        return self._refused(left, kind)

    def _refused(self, left_s: float, kind: str) -> ApiError:
        if self.on_refused is not None:
            self.on_refused(kind)
        after = max(1, math.ceil(left_s))
        return ApiError(429, "Too Many Requests",
                        f"too many failed authentications from this address: try again in "
                        f"{after} s", headers={"Retry-After": str(after)})


def client_address(conn: HTTPConnection) -> str:
    """The address a request is counted under (see the module docstring)."""
    client = conn.scope.get("client")  # (host, port); read directly, no Address built
    return str(client[0]) if client else ""


def limiter_of(conn: HTTPConnection) -> FailureLimiter:
    limiter: FailureLimiter = conn.app.state.auth_limiter
    return limiter
