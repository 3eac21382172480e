"""`AsyncClient`: the same API over asyncio, against the same demo network (each test runs its
own event loop with `asyncio.run`)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from computility.demo.network import DemoNetwork
from computility.sdk import AsyncClient, InvalidRequest, NotFound, Unauthorized, calls
from computility.testing.controlplane import LocalControlPlane


def user(demo: DemoNetwork) -> AsyncClient:
    return AsyncClient(demo.url, demo.keys["climate-lab"])


def test_submit_wait_logs_and_download(demo: DemoNetwork, tmp_path: Path) -> None:
    async def main() -> tuple[str, str, str, bytes, list[str]]:
        async with user(demo) as client:
            task = await client.submit({
                "name": "async-run", "outputs": ["out/"],
                "run": "echo hello; echo oops >&2; mkdir out && echo 7 > out/n.txt"})
            record = await task.wait(timeout=30, check=True)
            followed = b"".join([chunk async for chunk in task.follow("stderr")])
            names = await task.download(tmp_path / "dl")
            return record.state, await task.logs(), await task.logs("stderr"), followed, names

    state, out, err, followed, names = asyncio.run(main())

    assert (state, out, err, followed) == ("succeeded", "hello\n", "oops\n", b"oops\n")
    assert "out/n.txt" in names and (tmp_path / "dl" / "out" / "n.txt").read_text() == "7\n"


def test_a_running_task_is_cancelled(demo: DemoNetwork) -> None:
    async def main() -> str:
        async with user(demo) as client:
            task = await client.submit({"name": "async-cancel", "run": "sleep 60"})
            while (await task.refresh()).state != "running":
                await asyncio.sleep(0.05)
            await task.cancel()
            return (await task.wait(timeout=20)).state

    assert asyncio.run(main()) == "cancelled"


def test_reads_quote_sites_usage_whoami(demo: DemoNetwork) -> None:
    async def main() -> tuple[object, ...]:
        async with user(demo) as client:
            quote, sites, usage, who = await asyncio.gather(
                client.quote({"run": "x", "resources": {"cpus": 2}}), client.sites(),
                client.usage(), client.whoami())
            return len(quote.candidates), len(sites), usage.tenant, who["tenant"]

    assert asyncio.run(main()) == (5, 5, "climate-lab", "climate-lab")


def test_the_same_idempotency_key_returns_the_same_task(demo: DemoNetwork) -> None:
    async def main() -> tuple[int, int]:
        key = uuid.uuid4().hex
        async with user(demo) as client:
            first = await client.submit({"name": "async-idem", "run": "true"},
                                        idempotency_key=key)
            again = await client.submit({"name": "async-idem", "run": "true"},
                                        idempotency_key=key)
            return first.id, again.id

    first, again = asyncio.run(main())
    assert first == again


def test_errors_are_the_same_classes(demo: DemoNetwork) -> None:
    async def main() -> None:
        async with user(demo) as client:
            with pytest.raises(NotFound):
                await client.get(10**12)
            with pytest.raises(InvalidRequest) as raised:
                await client.call(calls.submit({"run": "x", "timeout": "soon"}, "k-async"))
            assert [e["field"] for e in raised.value.errors] == ["timeout"]
        async with AsyncClient(demo.url, "not-a-key") as stranger:
            with pytest.raises(Unauthorized):
                await stranger.whoami()

    asyncio.run(main())


def test_tasks_iterates_every_page(idle_plane: LocalControlPlane, paginated_tasks: int) -> None:
    async def main() -> list[int]:
        async with AsyncClient(idle_plane.url, idle_plane.admin_key) as admin:
            return [t.id async for t in admin.tasks(name="page")]

    ids = asyncio.run(main())
    assert len(set(ids)) == len(ids) == paginated_tasks
