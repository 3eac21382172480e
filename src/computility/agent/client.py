"""The agent's HTTP client: every call retried through a control-plane outage.

A site must survive the service restarting: connection errors and 5xx answers are retried with
exponential backoff (0.2 s doubling to 5 s, ±50 % jitter) until they succeed or the agent stops;
4xx answers are returned to the caller, who decides (a 409 on a report means the work is stale).

A certificate the agent cannot verify is not an outage: before the first answer it stops the
agent with one line saying what to do (`CertificateRefused`); after one (a certificate renewed
under a running agent) it is logged as an error and retried like an outage, so the site keeps its
tasks while the operator fixes the trust.
"""

from __future__ import annotations

import hashlib
import logging
import random
import ssl
import threading
from pathlib import Path
from typing import Any

import httpx

from computility.domain.errors import ComputilityError
from computility.wire.tls import certificate_problem, untrusted

log = logging.getLogger("computility.agent")
FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


class Stopping(Exception):
    """The agent is stopping; the call was given up."""


class CertificateRefused(ComputilityError):
    """The control plane's TLS certificate could not be verified (see the module docstring)."""


class AgentClient:
    def __init__(self, server: str, key: str, stop: threading.Event, timeout_s: float = 60.0,
                 verify: ssl.SSLContext | bool = True):
        self.server = server.rstrip("/")
        self.stop = stop
        self.answered = False
        """Whether the service has answered once (its certificate was trusted then)."""
        self._http = httpx.Client(base_url=self.server, timeout=timeout_s, verify=verify,
                                  headers={"Authorization": f"Bearer {key}"})

    def set_key(self, key: str) -> None:
        self._http.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response:
        backoff = FIRST_BACKOFF_S
        tries = 0
        while True:
            tries += 1
            if tries == 3:
                log.warning("%s %s: the control plane at %s does not answer; retrying until it "
                            "does", method, path, self.server)
            try:
                response = self._http.request(method, path, **kwargs)
                self.answered = True
                if response.status_code < 500 or not retry:
                    return response
            except httpx.TransportError as e:
                self._check_certificate(e)
                if self.stop.is_set():
                    raise Stopping(f"{method} {path}: the agent is stopping") from None
                if not retry:
                    raise
            except RuntimeError:  # the client was closed under a call: the agent is stopping
                raise Stopping(f"{method} {path}: the agent is stopping") from None
            backoff = self._pause(backoff, f"{method} {path}")

    def download(self, path: str, dest: Path) -> tuple[int, str, int]:
        """GET `path` into the file `dest` (retried whole); (status, SHA-256 hex, size)."""
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                with self._http.stream("GET", path) as response, dest.open("wb") as out:
                    digest, size = hashlib.sha256(), 0
                    if response.status_code < 500:
                        if response.status_code == 200:
                            for chunk in response.iter_bytes(1 << 20):
                                digest.update(chunk)
                                size += len(chunk)
                                out.write(chunk)
                        return response.status_code, digest.hexdigest(), size
            except httpx.TransportError:
                pass
            backoff = self._pause(backoff, f"GET {path}")

    def _check_certificate(self, error: httpx.TransportError) -> None:
        problem = certificate_problem(error)
        if problem is None:
            return
        message = untrusted(self.server, problem)
        if not self.answered:
            raise CertificateRefused(message)
        log.error("%s", message)

    def _pause(self, backoff: float, what: str) -> float:
        """Wait before the next try (jittered); the next backoff. `Stopping` once stopping."""
        if self.stop.is_set():
            raise Stopping(f"{what}: the agent is stopping")
        self.stop.wait(backoff * random.uniform(0.5, 1.5))
        return min(backoff * 2, MAX_BACKOFF_S)

    def close(self) -> None:
        self._http.close()
