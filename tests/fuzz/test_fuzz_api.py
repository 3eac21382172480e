"""Every operation of the control plane's OpenAPI document, fuzzed as every role, never fails.

Schemathesis generates requests from the live service's own ``/openapi.json`` (data that fits the
schema and data that breaks it) and each request is sent five times: with the credentials it
generated, then as an operator, a provider, a user and a site's agent. Whatever comes back must
be a client's answer: no 5xx, no traceback text in any body, and every 4xx an RFC 9457 problem
(``application/problem+json`` with ``title``, ``status`` and ``detail``) whose validation errors
name the field at fault. Every operation that takes a body also gets bodies no schema-shaped
generator writes (`HOSTILE_BODIES`), as every role.

CI runs a few examples per operation with a fixed seed, so a failure reproduces (with the
boundary cases schemathesis derives from the schema, about 8,000 requests). A full run::

    COMPUTILITY_FUZZ_EXAMPLES=50 COMPUTILITY_FUZZ_RANDOM=1 .venv/bin/pytest tests/fuzz -q

(``COMPUTILITY_FUZZ_EXAMPLES``: examples per operation and generation mode, default 3;
``COMPUTILITY_FUZZ_RANDOM=1``: a random seed rather than the fixed one;
``COMPUTILITY_FUZZ_SEED=N``: that seed, to replay a run.) The number of requests sent, their
statuses and the seed are printed at the end of the module.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import HealthCheck

from computility.server.app import create_app
from computility.server.settings import Settings
from computility.testing.controlplane import (
    FakeAgent,
    LocalControlPlane,
    local_control_plane,
    new_tenant,
)

EXAMPLES = int(os.environ.get("COMPUTILITY_FUZZ_EXAMPLES", "3"))
RANDOM = os.environ.get("COMPUTILITY_FUZZ_RANDOM", "") not in ("", "0")
ROLES = ("operator", "provider", "user", "agent")
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "site-packages/")
SENT: Counter[str] = Counter()
"""Statuses answered, by class ("2xx", "4xx", ...), and "total"."""


class Plane:
    """The service under test and one key of each role (and some state for them to find)."""

    def __init__(self, server: LocalControlPlane) -> None:
        self.server = server
        admin = server.client()
        self.keys = {"operator": server.admin_key,
                     "user": new_tenant(admin, "acme", "user"),
                     "provider": new_tenant(admin, "prov", "provider")}
        agent = FakeAgent(server.url, self.keys["provider"], "s1",
                          {"cpu": ("EPYC-7763", 64), "gpu": ("A100-80GB", 8)}).register()
        self.keys["agent"] = agent.key
        with server.client(self.keys["user"]) as user:
            user.post("/api/v1/tasks", json={"run": "echo hi", "resources": {"cpus": 1}}
                      ).raise_for_status()
        admin.close()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory,
          request: pytest.FixtureRequest) -> Iterator[Plane]:
    started = time.monotonic()
    # Long polls cut short (a generated lease may ask to wait 30 s for work), and no refusal of
    # this one client for its many generated bad keys (that 429 would then answer everything).
    with local_control_plane(tmp_path_factory.mktemp("fuzz") / "data", cycle_s=0.2,
                             long_poll_max_s=0.05, auth_failure_limit=10**9) as server:
        yield Plane(server)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(SENT.items()) if k != "total")
    line = (f"fuzzed the API: {SENT['total']} requests ({statuses}) in "
            f"{time.monotonic() - started:.0f} s, {EXAMPLES} examples per operation and mode, "
            f"seed {schema.config.seed}{' (random)' if RANDOM else ''}")
    with capture.global_and_fixture_disabled():
        print(f"\n{line}")


def built_document() -> dict[str, Any]:
    """The OpenAPI document the service serves, built before any service runs: pytest collects
    one test per operation at import (the live document is checked to be the same below)."""
    with tempfile.TemporaryDirectory() as data:
        app = create_app(Settings(data_dir=Path(data), run_loop=False))
        try:
            return app.openapi()
        finally:
            app.state.plane.engine.dispose()


DOCUMENT = built_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.update(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                            HealthCheck.data_too_large])
schema.config.generation.update(max_examples=EXAMPLES, deterministic=not RANDOM, database="none")
if not RANDOM or "COMPUTILITY_FUZZ_SEED" in os.environ:
    schema.config.seed = int(os.environ.get("COMPUTILITY_FUZZ_SEED", "20261207"))


@schema.parametrize()
def test_no_operation_answers_any_role_with_a_server_error_or_a_bare_error(
    case: schemathesis.Case, plane: Plane
) -> None:
    url = plane.server.url
    response = case.call_and_validate(base_url=url, checks=[not_a_server_error])
    failures = judge(response, "generated credentials")
    for role in ROLES:
        response = case.call(base_url=url,
                             headers={"Authorization": f"Bearer {plane.keys[role]}"})
        failures += judge(response, role)
    if failures:
        time.sleep(0.3)  # let the server finish logging before pytest formats ours
    assert not failures, f"{case.method} {case.formatted_path}:\n" + "\n".join(failures)


def judge(response: schemathesis.Response, who: str) -> list[str]:
    """What is wrong with one answer (nothing: an empty list)."""
    SENT["total"] += 1
    SENT[f"{response.status_code // 100}xx"] += 1
    status = response.status_code
    text = response.content.decode("utf-8", "replace")
    where = f"as {who}: {status}"
    out = []
    if status >= 500:
        out.append(f"{where}: a server error: {text[:500]}")
    if any(marker in text for marker in TRACEBACK_MARKERS):
        out.append(f"{where}: traceback text in the body: {text[:500]}")
    if 400 <= status < 500:
        out += [f"{where}: {x}" for x in problem_faults(response, text)]
    return out


def problem_faults(response: schemathesis.Response, text: str) -> list[str]:
    kind = response.headers.get("content-type", [""])[0]
    if not kind.startswith("application/problem+json"):
        return [f"content type {kind!r}, not application/problem+json: {text[:300]}"]
    try:
        body = json.loads(text)
    except ValueError:
        return [f"a problem that is not JSON: {text[:300]}"]
    if not isinstance(body, dict):
        return [f"a problem that is not an object: {text[:300]}"]
    out = []
    if not isinstance(body.get("title"), str) or not body["title"]:
        out.append(f"no title: {text[:300]}")
    if body.get("status") != response.status_code:
        out.append(f"status {body.get('status')!r} in the body: {text[:300]}")
    if not isinstance(body.get("detail"), str) or not body["detail"]:
        out.append(f"no detail: {text[:300]}")
    if response.status_code == 422:
        errors = body.get("errors")
        if not errors or not all(isinstance(e, dict) and e.get("field") and e.get("message")
                                 for e in errors):
            out.append(f"a validation error naming no field: {text[:300]}")
    return out


HOSTILE_BODIES = (
    b"[" * 100_000 + b"]" * 100_000,
    b'{"run": "x", "id": ' + b"{" * 5_000 + b"}" * 5_000 + b"}",
    b'{"\\ud800": 1, "run": "\\udc00", "id": "\\ud800"}',
    b'"\\ud800"',
    b'{"run": "x", "id": NaN, "count": 1e999, "free": {"p": Infinity}}',
    b'{"run": "x", "id": 123456789012345678901234567890}',
    b"\xff\xfe{\x00",
    b'{"run": ',
    b"run: x\nenvs: &a [*a]\n",
)
"""Bodies no generator of schema-shaped data writes: nesting past the parsers' recursion, lone
UTF-16 surrogates, non-finite and huge numbers, bytes that are not UTF-8, cut-off documents."""
BODIED = [(method.upper(), path) for path, item in DOCUMENT["paths"].items()
          for method, op in item.items() if "requestBody" in op]


@pytest.mark.parametrize(("method", "path"), BODIED)
def test_hostile_bodies_are_client_errors_on_every_operation_that_takes_one(
    plane: Plane, method: str, path: str
) -> None:
    url = plane.server.url + path.replace("{tenant_id}", "acme").replace("{attempt_id}", "1")
    failures = []
    for role in ROLES:
        for body in HOSTILE_BODIES:
            for kind in ("application/json", "application/yaml"):
                r = requests.request(method, url, data=body, timeout=60, headers={
                    "Authorization": f"Bearer {plane.keys[role]}", "content-type": kind})
                response = schemathesis.Response.from_any(r)
                failures += [f"{body[:40]!r} as {kind}: {x}" for x in judge(response, role)]
    if failures:
        time.sleep(0.3)
    assert not failures, "\n".join(failures)


def test_the_fuzzed_document_is_the_one_the_service_serves(plane: Plane) -> None:
    with plane.server.client() as c:
        assert c.get("/openapi.json").json() == DOCUMENT


def test_the_fuzzed_service_is_still_healthy_afterwards(plane: Plane) -> None:
    with plane.server.client(plane.keys["user"]) as c:
        assert c.get("/api/v1/whoami").status_code == 200
        assert c.get("/api/v1/tasks").status_code == 200


