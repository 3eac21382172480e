"""Retries with backoff: a client outlasts a service that comes up late, and says when it
cannot reach one at all."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from computility.sdk import AsyncClient, Client, Unreachable
from computility.server.settings import Settings
from computility.testing.controlplane import LocalControlPlane, free_port

START_DELAY_S = 1.0


@pytest.fixture
def late_plane(tmp_path: Path) -> Iterator[LocalControlPlane]:
    """A service whose address and key are known now but which listens only a second later."""
    plane = LocalControlPlane(Settings(data_dir=tmp_path / "late"), port=free_port())
    starter = threading.Timer(START_DELAY_S, plane.start)
    starter.start()
    try:
        yield plane
    finally:
        starter.join()
        plane.stop()


def test_the_default_retries_outlast_a_service_starting_late(
        late_plane: LocalControlPlane) -> None:
    started = time.monotonic()
    with Client(late_plane.url, late_plane.admin_key) as client:  # default: 4 retries
        who = client.whoami()

    assert who["role"] == "operator"
    assert time.monotonic() - started >= START_DELAY_S  # it really waited for the service


def test_without_retries_an_absent_service_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(url, "any-key", retries=0) as client, pytest.raises(Unreachable) as raised:
        client.whoami()

    assert url in str(raised.value)
    assert time.monotonic() - started < 1.0  # one try, no backoff


def test_the_async_client_retries_the_same_way(late_plane: LocalControlPlane) -> None:
    async def main() -> tuple[str, bool]:
        async with AsyncClient(late_plane.url, late_plane.admin_key) as client:
            role = (await client.whoami())["role"]
        async with AsyncClient(f"http://127.0.0.1:{free_port()}", "k", retries=0) as absent:
            try:
                await absent.whoami()
            except Unreachable:
                return role, True
        return role, False

    assert asyncio.run(main()) == ("operator", True)


def test_a_call_that_is_not_idempotent_is_retried_only_when_it_cannot_have_been_sent(
    late_plane: LocalControlPlane,
) -> None:
    from computility.sdk import calls
    from computility.sdk.retry import retryable

    request = httpx.Request("POST", "http://service/api/v1/tenants")
    sent_and_lost = httpx.ReadTimeout("no answer", request=request)
    never_sent = httpx.ConnectError("refused", request=request)
    overloaded = httpx.Response(503, request=request)
    # A tenant or a key created twice, or a site registered twice (revoking its first key),
    # is not what the caller asked for: only a request that never arrived is repeated.
    assert not calls.create_tenant({"id": "t"}).idempotent
    assert not calls.create_key("t", "u", "user").idempotent
    assert not calls.register_site({}).idempotent
    assert calls.get_task(1).idempotent
    assert retryable(None, never_sent, idempotent=False)
    assert not retryable(None, sent_and_lost, idempotent=False)
    assert not retryable(overloaded, None, idempotent=False)
    assert retryable(httpx.Response(429, request=request), None, idempotent=False)
    assert retryable(None, sent_and_lost) and retryable(overloaded, None)
    # And against a service that is not up yet, creating a tenant still succeeds once.
    with Client(late_plane.url, late_plane.admin_key, retries=8, backoff_s=0.2) as client:
        assert client.create_tenant("late-tenant").id == "late-tenant"
        assert client.tenant("late-tenant").id == "late-tenant"
