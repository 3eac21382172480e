"""`AsyncClient`: the API of `Client` for asyncio, built from the same `calls`.

    async with AsyncClient() as client:
        task = await client.submit({"run": "echo hi"})
        await task.wait()
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from computility.sdk import calls
from computility.sdk.calls import Call
from computility.sdk.errors import TaskFailed, Unreachable
from computility.sdk.logs import LogCursor, log_chunk
from computility.sdk.profile import load_profile
from computility.sdk.retry import pause_s, retryable
from computility.sdk.specs import SpecLike, load_spec, packed, workdir_to_pack
from computility.sdk.task import FIRST_POLL_S, next_poll_s, unpack_outputs
from computility.wire.api import (
    TERMINAL_TASK_STATES,
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

T = TypeVar("T")
PAGE = 500


class AsyncClient:
    """See `Client`; every method is a coroutine, `tasks` an async iterator."""

    def __init__(self, server: str | None = None, api_key: str | None = None, *,
                 profile: str | None = None, timeout: float = 30.0, retries: int = 4,
                 backoff_s: float = 0.25,
                 transport: httpx.AsyncBaseTransport | None = None,
                 ca_cert: str | Path | None = None) -> None:
        if server is None or api_key is None:
            found = load_profile(profile)
            server, api_key = server or found.server, api_key or found.api_key
        self.server = server.rstrip("/")
        self.retries, self.backoff_s = retries, backoff_s
        self._http = httpx.AsyncClient(base_url=self.server, timeout=timeout,
                                       transport=transport,
                                       verify=client_verify(ca_cert, "ca_cert"),
                                       headers={"Authorization": f"Bearer {api_key}"})

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, call: Call[T]) -> T:
        """Send one call, retrying where that is safe; its parsed answer or an `ApiError`."""
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            error: Exception | None = None
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json,
                    content=call.content, headers=call.headers,
                    timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT)
            except httpx.HTTPError as e:
                problem = certificate_problem(e)
                if problem is not None:  # not an outage: trying again cannot help
                    raise Unreachable(untrusted(self.server, problem)) from None
                error = e
            if attempt < self.retries and retryable(response, error, call.idempotent):
                await asyncio.sleep(pause_s(attempt, self.backoff_s, response))
                continue
            if error is not None:
                raise Unreachable(f"cannot reach {self.server}: {error}") from None
            assert response is not None
            return calls.answer(call, response)
        raise AssertionError("unreachable")

    async def _ready(self, spec: SpecLike) -> dict[str, Any]:
        body, base = load_spec(spec)
        directory = workdir_to_pack(body, base)
        if directory is not None:
            body["workdir"] = await self.upload(directory)
        return body

    async def upload(self, directory: str | Path) -> str:
        archive = await asyncio.to_thread(packed, Path(directory))
        return await self.call(calls.upload(archive))

    async def submit(self, spec: SpecLike, *, idempotency_key: str | None = None) -> AsyncTask:
        body = await self._ready(spec)
        out = await self.call(calls.submit(body, idempotency_key or uuid.uuid4().hex))
        return AsyncTask(self, out)

    async def submit_many(self, specs: Sequence[SpecLike], *,
                          idempotency_key: str | None = None) -> list[AsyncTask]:
        bodies = [await self._ready(s) for s in specs]
        out = await self.call(calls.submit_many(bodies, idempotency_key or uuid.uuid4().hex))
        return [AsyncTask(self, t) for t in out.tasks]

    async def task(self, task_id: int) -> AsyncTask:
        return AsyncTask(self, await self.get(task_id))

    async def get(self, task_id: int) -> TaskOut:
        return await self.call(calls.get_task(task_id))

    async def tasks(self, state: str | None = None, name: str | None = None,
                    limit: int | None = None) -> AsyncIterator[TaskOut]:
        """Every task this key can see (newest first), fetched page by page as iterated."""
        cursor: int | None = None
        seen = 0
        while True:
            page = await self.call(calls.list_tasks(state, name, PAGE, cursor))
            for t in page.tasks:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield t
            cursor = page.next_cursor
            if not cursor:
                return

    async def cancel(self, task_id: int) -> TaskOut:
        return await self.call(calls.cancel(task_id))

    async def attempts(self, task_id: int) -> list[AttemptOut]:
        return await self.call(calls.attempts(task_id))

    async def explain(self, task_id: int) -> Explanation:
        return await self.call(calls.explain(task_id))

    async def quote(self, spec: SpecLike) -> Quote:
        body, _ = load_spec(spec)
        body.pop("workdir", None)
        return await self.call(calls.quote(body))

    async def logs(self, task_id: int, stream: str = "stdout", offset: int = 0) -> bytes:
        return (await self.call(log_chunk(task_id, stream, offset, None))).data

    async def outputs(self, task_id: int) -> bytes:
        return await self.call(calls.outputs(task_id))

    async def download(self, task_id: int, dest: str | Path) -> list[str]:
        archive = await self.outputs(task_id)
        return await asyncio.to_thread(unpack_outputs, task_id, archive, Path(dest))

    async def sites(self) -> list[SiteOut]:
        return await self.call(calls.sites())

    async def site(self, site_id: str) -> SiteOut:
        return await self.call(calls.site(site_id))

    async def register_site(self, body: dict[str, Any]) -> SiteRegistered:
        return await self.call(calls.register_site(body))

    async def usage(self, since: float | None = None, until: float | None = None,
                    tenant: str | None = None) -> Usage:
        return await self.call(calls.usage(tenant, since, until))

    async def earnings(self, since: float | None = None,
                       until: float | None = None) -> Earnings:
        return await self.call(calls.earnings(since, until))

    async def whoami(self) -> dict[str, Any]:
        return await self.call(calls.whoami())

    async def create_tenant(self, tenant: str, **limits: float | None) -> TenantOut:
        return await self.call(calls.create_tenant({"id": tenant, **limits}))

    async def set_tenant(self, tenant: str, **limits: float | None) -> TenantOut:
        return await self.call(calls.set_tenant(tenant, {"id": tenant, **limits}))

    async def tenant(self, tenant: str) -> TenantOut:
        return await self.call(calls.get_tenant(tenant))

    async def create_key(self, tenant: str, user: str, role: str = "user") -> KeyOut:
        return await self.call(calls.create_key(tenant, user, role))

    async def keys(self, tenant: str | None = None, revoked: bool = False) -> KeyList:
        """The caller's keys (an operator's: every tenant's, or `tenant`'s); never secrets."""
        return await self.call(calls.keys(tenant, revoked))

    async def revoke_key(self, key_id: str) -> KeyInfo:
        return await self.call(calls.revoke_key(key_id))

    async def rotate_key(self, key_id: str, grace_s: float = 0.0) -> KeyRotated:
        """A new key in the old one's place (its secret in `KeyRotated.key`, shown once); the
        old one stops working after `grace_s` seconds."""
        return await self.call(calls.rotate_key(key_id, grace_s))

    async def audit(self, tenant: str | None = None, action: str | None = None,
              since: float | None = None, before: int | None = None,
              limit: int = 100) -> AuditList:
        return await self.call(calls.audit(tenant, action, since, before, limit))


class AsyncTask:
    """See `Task`."""

    def __init__(self, client: AsyncClient, record: TaskOut) -> None:
        self.client, self.record = client, record

    def __repr__(self) -> str:
        return f"AsyncTask(id={self.id}, state={self.state!r})"

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def state(self) -> str:
        return self.record.state

    @property
    def done(self) -> bool:
        return self.record.state in TERMINAL_TASK_STATES

    async def refresh(self) -> TaskOut:
        self.record = await self.client.get(self.id)
        return self.record

    async def wait(self, timeout: float | None = None, *, check: bool = False) -> TaskOut:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = FIRST_POLL_S
        while not self.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {self.id} still {self.state} after {timeout} s")
            await asyncio.sleep(pause)
            pause = next_poll_s(pause)
            await self.refresh()
        if check and self.state != "succeeded":
            raise TaskFailed(self.record)
        return self.record

    async def logs(self, stream: str = "stdout") -> str:
        return (await self.client.logs(self.id, stream)).decode("utf-8", "replace")

    async def follow(self, stream: str = "stdout") -> AsyncIterator[bytes]:
        """The log as it grows, chunk by chunk, until the task has ended and all is read (a
        retry's log starts again from its first byte)."""
        cursor, pause = LogCursor(self.id), FIRST_POLL_S
        while True:
            ended = self.done
            chunk = cursor.take(stream, await self.client.call(cursor.next(stream)))
            if chunk:
                pause = FIRST_POLL_S
                yield chunk
            elif ended:
                return
            else:
                await asyncio.sleep(pause)
                pause = next_poll_s(pause)
                await self.refresh()

    async def cancel(self) -> TaskOut:
        self.record = await self.client.cancel(self.id)
        return self.record

    async def download(self, dest: str | Path) -> list[str]:
        return await self.client.download(self.id, dest)
