"""Every API call once, as data: method, path, body and how to read the answer.

The sync `Client` and the async `AsyncClient` only differ in how they send a `Call`; building
and parsing live here, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from computility.sdk.errors import error_for
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
    Submitted,
    TaskList,
    TaskOut,
    TenantOut,
    Usage,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ok: tuple[int, ...] = (200, 201, 204)
    timeout: float | None = None
    idempotent: bool = True
    """Whether sending it twice does what sending it once does (see `retry`)."""


def answer(call: Call[T], response: httpx.Response) -> T:
    """The parsed answer to `call`, or the `ApiError` its status stands for."""
    if response.status_code in call.ok:
        return call.parse(response)
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    raise error_for(response.status_code, body,
                    f"{call.method} {call.path}: HTTP {response.status_code}")


def model(kind: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: kind.model_validate_json(r.content)


def models(kind: type[M]) -> Callable[[httpx.Response], list[M]]:
    adapter = TypeAdapter(list[kind])  # type: ignore[valid-type]
    return lambda r: list(adapter.validate_json(r.content))


def raw(r: httpx.Response) -> bytes:
    return r.content


def _json(r: httpx.Response) -> Any:
    return r.json()


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# --- tasks -------------------------------------------------------------------------------------


def submit(spec: dict[str, Any], idempotency_key: str) -> Call[TaskOut]:
    return Call("POST", "/api/v1/tasks", model(TaskOut), json=spec,
                headers={"Idempotency-Key": idempotency_key})


def submit_many(specs: list[dict[str, Any]], idempotency_key: str) -> Call[Submitted]:
    return Call("POST", "/api/v1/tasks/batch", model(Submitted), json={"tasks": specs},
                headers={"Idempotency-Key": idempotency_key})


def get_task(task_id: int) -> Call[TaskOut]:
    return Call("GET", f"/api/v1/tasks/{task_id}", model(TaskOut))


def list_tasks(state: str | None, name: str | None, limit: int,
               cursor: int | None) -> Call[TaskList]:
    return Call("GET", "/api/v1/tasks", model(TaskList),
                params=_params(state=state, name=name, limit=limit, cursor=cursor))


def cancel(task_id: int) -> Call[TaskOut]:
    return Call("POST", f"/api/v1/tasks/{task_id}/cancel", model(TaskOut))


def attempts(task_id: int) -> Call[list[AttemptOut]]:
    return Call("GET", f"/api/v1/tasks/{task_id}/attempts", models(AttemptOut))


def explain(task_id: int) -> Call[Explanation]:
    return Call("GET", f"/api/v1/tasks/{task_id}/explain", model(Explanation))


def quote(spec: dict[str, Any]) -> Call[Quote]:
    return Call("POST", "/api/v1/quote", model(Quote), json=spec)


def outputs(task_id: int) -> Call[bytes]:
    return Call("GET", f"/api/v1/tasks/{task_id}/outputs", raw, timeout=300)


def upload(archive: bytes) -> Call[str]:
    return Call("POST", "/api/v1/uploads", lambda r: str(r.json()["digest"]), content=archive,
                headers={"Content-Type": "application/gzip"}, timeout=300)


# --- sites, usage, tenants ---------------------------------------------------------------------


def sites() -> Call[list[SiteOut]]:
    return Call("GET", "/api/v1/sites", models(SiteOut))


def site(site_id: str) -> Call[SiteOut]:
    return Call("GET", f"/api/v1/sites/{site_id}", model(SiteOut))


def register_site(body: dict[str, Any]) -> Call[SiteRegistered]:
    return Call("POST", "/api/v1/sites", model(SiteRegistered), json=body, idempotent=False)


def usage(tenant: str | None, since: float | None, until: float | None) -> Call[Usage]:
    return Call("GET", "/api/v1/usage", model(Usage),
                params=_params(tenant=tenant, since=since, until=until))


def earnings(since: float | None, until: float | None) -> Call[Earnings]:
    return Call("GET", "/api/v1/earnings", model(Earnings), params=_params(since=since,
                                                                          until=until))


def whoami() -> Call[dict[str, Any]]:
    return Call("GET", "/api/v1/whoami", _json)


def create_tenant(body: dict[str, Any]) -> Call[TenantOut]:
    return Call("POST", "/api/v1/tenants", model(TenantOut), json=body, idempotent=False)


def set_tenant(tenant: str, body: dict[str, Any]) -> Call[TenantOut]:
    return Call("PUT", f"/api/v1/tenants/{tenant}", model(TenantOut), json=body)


def get_tenant(tenant: str) -> Call[TenantOut]:
    return Call("GET", f"/api/v1/tenants/{tenant}", model(TenantOut))


def create_key(tenant: str, user: str, role: str) -> Call[KeyOut]:
    return Call("POST", f"/api/v1/tenants/{tenant}/keys", model(KeyOut),
                json={"user": user, "role": role}, idempotent=False)


# --- keys and the audit log --------------------------------------------------------------------


def keys(tenant: str | None, revoked: bool) -> Call[KeyList]:
    return Call("GET", "/api/v1/keys", model(KeyList),
                params=_params(tenant=tenant, revoked="true" if revoked else None))


def revoke_key(key_id: str) -> Call[KeyInfo]:
    return Call("DELETE", f"/api/v1/keys/{key_id}", model(KeyInfo))


def rotate_key(key_id: str, grace_s: float) -> Call[KeyRotated]:
    # Not repeated after a lost answer: the repeat would be refused (the key is rotated
    # already) and the new key, shown only in that answer, lost with it.
    return Call("POST", f"/api/v1/keys/{key_id}/rotate", model(KeyRotated),
                json={"grace_s": grace_s}, idempotent=False)


def audit(tenant: str | None, action: str | None, since: float | None, before: int | None,
          limit: int) -> Call[AuditList]:
    return Call("GET", "/api/v1/audit", model(AuditList), params=_params(
        tenant=tenant, action=action, since=since, before=before, limit=limit))
