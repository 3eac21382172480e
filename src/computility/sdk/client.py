"""`Client`: the whole REST API from Python, synchronously, over one pooled httpx connection.

    from computility import Client
    with Client() as client:                      # the profile `computility up`/`login` wrote
        task = client.submit({"run": "echo hi"})
        task.wait()
        print(task.logs())

Calls are retried with backoff where repeating them is safe (all of them; see `retry`); errors
are the classes of `computility.sdk.errors`. `AsyncClient` (in `aio`) is the same API for asyncio.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from computility.sdk import calls
from computility.sdk.calls import Call
from computility.sdk.errors import Unreachable
from computility.sdk.logs import log_chunk
from computility.sdk.profile import load_profile
from computility.sdk.retry import pause_s, retryable
from computility.sdk.specs import SpecLike, load_spec, packed, workdir_to_pack
from computility.sdk.task import Task, unpack_outputs
from computility.wire.api import (
    AttemptOut,
    AuditList,
    Earnings,
    Explanation,
    KeyInfo,
    KeyList,
    KeyOut,
    KeyRotated,
    Quote,
    SiteOut,
    SiteRegistered,
    TaskOut,
    TenantOut,
    Usage,
)
from computility.wire.tls import certificate_problem, client_verify, untrusted

if TYPE_CHECKING:
    from computility.sdk.executor import NetworkExecutor

T = TypeVar("T")
PAGE = 500


class Client:
    """A connection to one Computility service with one API key.

    `server`/`api_key` default to ``COMPUTILITY_SERVER``/``COMPUTILITY_API_KEY``, else the
    profile (`profile`, default ``default``) in ``$XDG_CONFIG_HOME/computility/config.toml``.
    `retries` extra tries are made on transport errors and 429/502/503/504. An ``https://``
    service's certificate is verified against `ca_cert` (a PEM file: a private CA's certificate
    or a self-signed one), else ``COMPUTILITY_CA_CERT``, else the system's authorities.
    """

    def __init__(self, server: str | None = None, api_key: str | None = None, *,
                 profile: str | None = None, timeout: float = 30.0, retries: int = 4,
                 backoff_s: float = 0.25, transport: httpx.BaseTransport | None = None,
                 ca_cert: str | Path | None = None) -> None:
        if server is None or api_key is None:
            found = load_profile(profile)
            server, api_key = server or found.server, api_key or found.api_key
        self.server = server.rstrip("/")
        self.retries, self.backoff_s = retries, backoff_s
        self._http = httpx.Client(base_url=self.server, timeout=timeout, transport=transport,
                                  verify=client_verify(ca_cert, "ca_cert"),
                                  headers={"Authorization": f"Bearer {api_key}"})

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call[T]) -> T:
        """Send one call, retrying where that is safe; its parsed answer or an `ApiError`."""
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            error: Exception | None = None
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, json=call.json,
                    content=call.content, headers=call.headers,
                    timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT)
            except httpx.HTTPError as e:
                problem = certificate_problem(e)
                if problem is not None:  # not an outage: trying again cannot help
                    raise Unreachable(untrusted(self.server, problem)) from None
                error = e
            if attempt < self.retries and retryable(response, error, call.idempotent):
                time.sleep(pause_s(attempt, self.backoff_s, response))
                continue
            if error is not None:
                raise Unreachable(f"cannot reach {self.server}: {error}") from None
            assert response is not None
            return calls.answer(call, response)
        raise AssertionError("unreachable")  # the loop always returns or raises

    # ---------------------------------------------------------------- tasks

    def submit(self, spec: SpecLike, *, idempotency_key: str | None = None) -> Task:
        """Submit one task (a mapping, YAML text or a YAML file); a local ``workdir`` is
        uploaded first. A retried submission with the same key creates nothing new."""
        body = self._ready(spec)
        out = self.call(calls.submit(body, idempotency_key or uuid.uuid4().hex))
        return Task(self, out)

    def submit_many(self, specs: Sequence[SpecLike], *,
                    idempotency_key: str | None = None) -> list[Task]:
        """Submit up to 10,000 tasks in one request: all are accepted or none is."""
        bodies = [self._ready(s) for s in specs]
        out = self.call(calls.submit_many(bodies, idempotency_key or uuid.uuid4().hex))
        return [Task(self, t) for t in out.tasks]

    def _ready(self, spec: SpecLike) -> dict[str, Any]:
        body, base = load_spec(spec)
        directory = workdir_to_pack(body, base)
        if directory is not None:
            body["workdir"] = self.upload(directory)
        return body

    def upload(self, directory: str | Path) -> str:
        """Pack and upload a directory; its digest (``sha256:…``) for a spec's ``workdir``."""
        return self.call(calls.upload(packed(Path(directory))))

    def task(self, task_id: int) -> Task:
        """A handle on an existing task (its record fetched now)."""
        return Task(self, self.get(task_id))

    def get(self, task_id: int) -> TaskOut:
        return self.call(calls.get_task(task_id))

    def tasks(self, state: str | None = None, name: str | None = None,
              limit: int | None = None) -> Iterator[TaskOut]:
        """Every task this key can see (newest first), fetched page by page as iterated."""
        cursor: int | None = None
        seen = 0
        while True:
            page = self.call(calls.list_tasks(state, name, PAGE, cursor))
            for t in page.tasks:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield t
            cursor = page.next_cursor
            if not cursor:
                return

    def cancel(self, task_id: int) -> TaskOut:
        return self.call(calls.cancel(task_id))

    def attempts(self, task_id: int) -> list[AttemptOut]:
        return self.call(calls.attempts(task_id))

    def explain(self, task_id: int) -> Explanation:
        return self.call(calls.explain(task_id))

    def quote(self, spec: SpecLike) -> Quote:
        body, _ = load_spec(spec)
        body.pop("workdir", None)  # a quote does not need the files
        return self.call(calls.quote(body))

    def logs(self, task_id: int, stream: str = "stdout", offset: int = 0) -> bytes:
        """The task's log (``stdout`` or ``stderr``: its latest attempt's) from byte `offset`
        on."""
        return self.call(log_chunk(task_id, stream, offset, None)).data

    def outputs(self, task_id: int) -> bytes:
        """The task's outputs as the gzip tar its site packed."""
        return self.call(calls.outputs(task_id))

    def download(self, task_id: int, dest: str | Path) -> list[str]:
        """Unpack the task's outputs into `dest`; the names unpacked."""
        return unpack_outputs(task_id, self.outputs(task_id), Path(dest))

    # ---------------------------------------------------------------- sites, usage, tenants

    def sites(self) -> list[SiteOut]:
        return self.call(calls.sites())

    def site(self, site_id: str) -> SiteOut:
        return self.call(calls.site(site_id))

    def register_site(self, body: dict[str, Any]) -> SiteRegistered:
        return self.call(calls.register_site(body))

    def usage(self, since: float | None = None, until: float | None = None,
              tenant: str | None = None) -> Usage:
        return self.call(calls.usage(tenant, since, until))

    def earnings(self, since: float | None = None, until: float | None = None) -> Earnings:
        return self.call(calls.earnings(since, until))

    def whoami(self) -> dict[str, Any]:
        return self.call(calls.whoami())

    def create_tenant(self, tenant: str, **limits: float | None) -> TenantOut:
        return self.call(calls.create_tenant({"id": tenant, **limits}))

    def set_tenant(self, tenant: str, **limits: float | None) -> TenantOut:
        return self.call(calls.set_tenant(tenant, {"id": tenant, **limits}))

    def tenant(self, tenant: str) -> TenantOut:
        return self.call(calls.get_tenant(tenant))

    def create_key(self, tenant: str, user: str, role: str = "user") -> KeyOut:
        return self.call(calls.create_key(tenant, user, role))

    def keys(self, tenant: str | None = None, revoked: bool = False) -> KeyList:
        """The caller's keys (an operator's: every tenant's, or `tenant`'s); never secrets."""
        return self.call(calls.keys(tenant, revoked))

    def revoke_key(self, key_id: str) -> KeyInfo:
        return self.call(calls.revoke_key(key_id))

    def rotate_key(self, key_id: str, grace_s: float = 0.0) -> KeyRotated:
        """A new key in the old one's place (its secret in `KeyRotated.key`, shown once); the
        old one stops working after `grace_s` seconds."""
        return self.call(calls.rotate_key(key_id, grace_s))

    def audit(self, tenant: str | None = None, action: str | None = None,
              since: float | None = None, before: int | None = None,
              limit: int = 100) -> AuditList:
        return self.call(calls.audit(tenant, action, since, before, limit))

    # ---------------------------------------------------------------- executor

    def executor(self, *, chunksize: int = 50, **resources: Any) -> NetworkExecutor:
        """A `concurrent.futures.Executor` running Python callables on the network, each
        call (or chunk of `map`) a task with these `resources` (``cpus=2``,
        ``memory="4GB"``, ``accelerators="A100:1"``, ``policy="cheapest"``, …)."""
        from computility.sdk.executor import NetworkExecutor

        return NetworkExecutor(self, chunksize=chunksize, **resources)

