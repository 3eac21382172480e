"""Submitting tasks and waiting for them over the real API, as the tests and benchmarks do."""

from __future__ import annotations

from typing import Any

import httpx

from computility.testing.controlplane import wait_until

TERMINAL = ("succeeded", "failed", "cancelled", "lost")


def submit(user: httpx.Client, **spec: Any) -> int:
    """Submit one task (timeout 5 min unless given); its id."""
    r = user.post("/api/v1/tasks", json={"timeout": "5m", **spec})
    if r.status_code != 201:
        raise AssertionError(f"submission refused ({r.status_code}): {r.text}")
    return int(r.json()["id"])


def finished(user: httpx.Client, ids: list[int], timeout: float = 60) -> list[dict[str, Any]]:
    """Wait until every task is terminal; their records, in the order of `ids`."""
    def done() -> bool:
        states = {t["id"]: t["state"] for t in all_tasks(user)}
        return all(states.get(i) in TERMINAL for i in ids)
    wait_until(done, timeout=timeout, every=0.2)
    by_id = {t["id"]: t for t in all_tasks(user)}
    return [by_id[i] for i in ids]


def all_tasks(user: httpx.Client) -> list[dict[str, Any]]:
    """Every task the key can see, page by page."""
    out: list[dict[str, Any]] = []
    cursor: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor is not None:
            params["cursor"] = cursor
        page = user.get("/api/v1/tasks", params=params).json()
        out += page["tasks"]
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def logs(user: httpx.Client, task: int, stream: str = "stdout") -> str:
    return user.get(f"/api/v1/tasks/{task}/logs", params={"stream": stream}).text
