"""Task specs at the edges of JSON and YAML: nesting past any parser's recursion and characters
spelled as UTF-16 surrogate escapes. Each is a 4xx problem naming the body or the field (or, for
a well-formed surrogate pair, the character it spells), never a 500."""

from __future__ import annotations

import httpx

from computility.server.app import _problem
from computility.server.problems import ApiError
from computility.testing.controlplane import LocalControlPlane, new_tenant

JSON = "application/json"
YAML = "application/yaml"


def post(service: LocalControlPlane, key: str, path: str, body: str, kind: str) -> httpx.Response:
    with httpx.Client(base_url=service.url, timeout=60) as c:
        return c.post(path, content=body.encode(),
                      headers={"Authorization": f"Bearer {key}", "content-type": kind})


def problem(r: httpx.Response, status: int, field: str) -> str:
    """The problem's detail, once it is checked to be a `status` naming `field`."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and field in [e["field"] for e in body["errors"]], body
    detail: str = body["detail"]
    return detail


def test_a_spec_nested_too_deeply_is_400_naming_the_body_never_500(
    service: LocalControlPlane,
) -> None:
    user = new_tenant(service.client(), "acme", "user")
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/api/v1/tasks", "/api/v1/quote"):
        for body, kind in ((deep, JSON), (deep, YAML), ('{"run": "x", "envs": ' + deep + "}", JSON),
                           ("run: x\nenvs: " + deep, YAML)):
            detail = problem(post(service, user, path, body, kind), 400, "body")
            assert detail == "body: lists or mappings nested too deeply"
    with service.client(user) as c:
        assert c.get("/api/v1/tasks").json()["tasks"] == []


def test_a_lone_surrogate_in_a_spec_is_422_naming_the_field_never_500(
    service: LocalControlPlane,
) -> None:
    user = new_tenant(service.client(), "acme", "user")
    for path, body, kind, field, got in (
        ("/api/v1/tasks", '{"run": "echo \\ud800"}', JSON, "run", "echo \\ud800"),
        ("/api/v1/tasks", 'run: "echo \\ud800"', YAML, "run", "echo \\ud800"),
        ("/api/v1/quote", '{"run": "x", "name": "\\udc00"}', JSON, "name", "\\udc00"),
        ("/api/v1/tasks/batch", '{"tasks": [{"run": "echo \\ud800"}]}', JSON, "tasks[0].run",
         "echo \\ud800"),
    ):
        detail = problem(post(service, user, path, body, kind), 422, field)
        assert detail == (f"{field}: expected text (a lone UTF-16 surrogate is not a character), "
                          f"got '{got}'")
    with service.client(user) as c:
        assert c.get("/api/v1/tasks").json()["tasks"] == []


def test_a_surrogate_pair_escaped_in_yaml_is_the_character_it_spells(
    service: LocalControlPlane,
) -> None:
    user = new_tenant(service.client(), "acme", "user")
    r = post(service, user, "/api/v1/tasks", 'name: "smile \\ud83d\\ude00"\nrun: echo', YAML)
    assert r.status_code == 201, r.text
    with service.client(user) as c:
        assert c.get(f"/api/v1/tasks/{r.json()['id']}").json()["name"] == "smile \U0001f600"


def test_a_problem_quoting_a_lone_surrogate_still_renders() -> None:
    response = _problem(ApiError(422, "Unprocessable Content", "run: got 'x\ud800'",
                                 [{"field": "r\udc00", "message": "got 'x\ud800'"}]))
    assert b"run: got 'x\\\\ud800'" in response.body and b'"r\\\\udc00"' in response.body
