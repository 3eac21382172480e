"""Bad input is the client's fault: always a 4xx problem+json naming the field, never a 500.

Every answer here must be an RFC 9457 problem (``application/problem+json`` with ``status`` and
``detail``) whose ``errors[*].field`` names what is wrong, and a refused request must change
nothing. Each request goes on a fresh connection, so that one 500 (after which the server drops
the connection) cannot hide the next case's answer.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select

from computility.server.db import schema as db
from computility.server.settings import MAX_BODY_BYTES
from computility.testing.controlplane import FakeAgent, LocalControlPlane, new_tenant, wait_until

BIG = 10**20
"""An integer beyond 64 bits."""
JSON = {"content-type": "application/json"}
YAML = {"content-type": "application/yaml"}
GOOD = {"run": "echo hi", "resources": {"cpus": 1}}
SITE_POOLS = {"cpu": ("EPYC-7763", 64), "gpu": ("A100-80GB", 8)}


# -- helpers --------------------------------------------------------------------------------------


def send(service: LocalControlPlane, key: str | None, method: str, path: str,
         **kw: Any) -> httpx.Response:
    """One request on its own connection (`key` None: the bootstrap operator's key)."""
    headers = {"Authorization": f"Bearer {key or service.admin_key}", **kw.pop("headers", {})}
    # Plain HTTP: no TLS context to build (httpx spends ~20 ms on one per client).
    with httpx.Client(base_url=service.url, timeout=60, verify=False) as c:
        return c.request(method, path, headers=headers, **kw)


def settle(*responses: httpx.Response) -> None:
    """After a 5xx, let the server thread finish logging its traceback before pytest formats
    ours: CPython 3.11 formats tracebacks with `ast`, whose recursion guard is not thread-safe
    (two at once end the session with "AST constructor recursion depth mismatch")."""
    if any(r.status_code >= 500 for r in responses):
        time.sleep(0.3)


def bare(field: str) -> str:
    """A field as the spec names it: FastAPI's ``query.``/``path.``/``header.`` prefix dropped."""
    for prefix in ("query.", "path.", "header."):
        if field.startswith(prefix):
            return field[len(prefix):]
    return field


def problem_errors(r: httpx.Response, status: int | None = None,
                   field: str | tuple[str, ...] | None = None) -> list[str]:
    """What is wrong with `r` as the answer to bad input (empty: nothing); `field`: the name
    (or one of the names) an error must give."""
    wrong = []
    if not 400 <= r.status_code < 500:
        return [f"status {r.status_code}, expected a 4xx: {r.text[:300]}"]
    if status is not None and r.status_code != status:
        wrong.append(f"status {r.status_code}, expected {status}: {r.text[:300]}")
    kind = r.headers.get("content-type", "")
    if not kind.startswith("application/problem+json"):
        return [*wrong, f"content-type {kind!r}"]
    body = r.json()
    if body.get("status") != r.status_code:
        wrong.append(f"body status {body.get('status')} != {r.status_code}")
    if not body.get("detail"):
        wrong.append("no detail")
    if field is not None:
        fields = [bare(e.get("field", "")) for e in body.get("errors") or []]
        allowed = (field,) if isinstance(field, str) else field
        if not set(allowed) & set(fields):
            wrong.append(f"errors name {fields}, expected {field!r}: {body.get('detail')}")
    return wrong


Case = tuple[str, httpx.Response, int | None, str | tuple[str, ...] | None]


def case_failures(cases: list[Case]) -> list[str]:
    """One line per (label, response, status, field) case that is not the right problem."""
    failures = []
    for label, r, status, field in cases:
        wrong = problem_errors(r, status, field)
        if wrong:
            failures.append(f"{label}: {'; '.join(wrong)}")
    return failures


def check_all(cases: list[Case], also: list[str] | None = None) -> None:
    """Assert every case at once (and no `also` failures), listing each that fails."""
    failures = case_failures(cases) + (also or [])
    settle(*(r for _, r, _, _ in cases))
    assert not failures, "\n".join(failures)


def count_tasks(service: LocalControlPlane) -> int:
    with service.plane.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.tasks)).scalar_one())


def register_site(service: LocalControlPlane, site: str = "s1") -> FakeAgent:
    """A registered site (its agent not started): CPU and A100 pools in ZJK."""
    provider = new_tenant(service.client(), "prov", "provider")
    return FakeAgent(service.url, provider, site, dict(SITE_POOLS)).register()


def raw_post_headers_only(url: str, path: str, key: str, length: int) -> tuple[int, str, bytes]:
    """POST announcing a `length`-byte body but sending none of it: the limit must be enforced
    from the header alone. Returns (status, content type, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Authorization", f"Bearer {key}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.getheader("content-type") or "", r.read()
    finally:
        conn.close()


def over_the_limit() -> Iterator[bytes]:
    """A chunked body (no Content-Length) just over the 16 MiB limit."""
    chunk = b" " * (1 << 20)
    for _ in range(MAX_BODY_BYTES // len(chunk)):
        yield chunk
    yield b" " * 1024


# -- syntax ---------------------------------------------------------------------------------------


def test_a_body_that_is_not_json_or_yaml_is_400_and_a_document_not_a_mapping_is_422(
    service: LocalControlPlane,
) -> None:
    """Truncated, single-quoted, not UTF-8 or empty JSON, on every JSON route, and broken YAML
    (Content-Type: application/yaml): a 400 naming ``body``. A well-formed document that is not
    a mapping of task fields: a 422 naming ``task``."""
    agent = register_site(service)
    routes = [
        (None, "POST", "/api/v1/tasks"), (None, "POST", "/api/v1/tasks/batch"),
        (None, "POST", "/api/v1/quote"), (agent.provider_key, "POST", "/api/v1/sites"),
        (None, "POST", "/api/v1/tenants"), (None, "PUT", "/api/v1/tenants/prov"),
        (None, "POST", "/api/v1/tenants/prov/keys"),
        (agent.key, "POST", "/api/v1/agent/heartbeat"),
        (agent.key, "POST", "/api/v1/agent/lease"),
        (agent.key, "POST", "/api/v1/agent/attempts/1/report"),
    ]
    cases: list[Case] = []
    for body in (b'{"run": ', b"{'run': 'x'}", b"\xff\xfe"):
        for key, method, path in routes:
            r = send(service, key, method, path, content=body, headers=JSON)
            cases.append((f"{method} {path} {body!r}", r, 400, "body"))
    for path in ("/api/v1/tasks", "/api/v1/quote"):
        r = send(service, None, "POST", path, content=b"", headers=JSON)
        cases.append((f"{path} empty", r, 400, "body"))
        for text in (b"run: [unclosed\n", b"run: x\n  bad: indent\n", b"\xff\xfe: x\n",
                     b"run: x\nsetup: *undefined_alias\n"):
            r = send(service, None, "POST", path, content=text, headers=YAML)
            cases.append((f"{path} YAML {text!r}", r, 400, "body"))
    for text in (b"- a\n- b\n", b"just a string\n", b"42\n", b"null\n"):
        r = send(service, None, "POST", "/api/v1/tasks", content=text, headers=YAML)
        cases.append((f"YAML {text!r}", r, 422, "task"))
    r = send(service, None, "POST", "/api/v1/tasks", json=[GOOD])
    cases.append(("a JSON list", r, 422, "task"))
    check_all(cases)
    assert count_tasks(service) == 0


# -- the task spec --------------------------------------------------------------------------------


BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({**GOOD, "nmae": "x"}, "nmae"),
    ({**GOOD, "resources": {"cpuz": 2}}, "resources.cpuz"),
    ({**GOOD, "placement": {"regionz": ["ZJK"]}}, "placement.regionz"),
    ({**GOOD, "inputs": [{"dataset": "d", "residence": "any"}]}, "inputs[0].residence"),
    ({"resources": {"cpus": 1}}, "run"),
    ({"run": ""}, "run"),
    ({"run": 5}, "run"),
    ({"run": "x", "resources": {"cpus": -4}}, "resources.cpus"),
    ({"run": "x", "resources": {"cpus": 0}}, "resources.cpus"),
    ({"run": "x", "resources": {"cpus": "many"}}, "resources.cpus"),
    ({"run": "x", "resources": "big"}, "resources"),
    ({"run": "x", "resources": {"accelerators": "NOPE-9000:1"}}, "resources.accelerators"),
    ({"run": "x", "resources": {"accelerators": {"A100": "two"}}}, "resources.accelerators"),
    ({"run": "x", "resources": {"estimate_on": "NOPE-9000"}}, "resources.estimate_on"),
    ({"run": "x", "resources": {"memory": "lots"}}, "resources.memory"),
    ({"run": "x", "resources": {"estimate": "soon"}}, "resources.estimate"),
    ({"run": "x", "resources": {"precision": "fp8"}}, "resources.precision"),
    ({"run": "x", "resources": {"nodes": 2}}, "resources.nodes"),
    ({"run": "x", "timeout": "forever"}, "timeout"),
    ({"run": "x", "timeout": -5}, "timeout"),
    ({"run": "x", "retries": "two"}, "retries"),
    ({"run": "x", "retries": -1}, "retries"),
    ({"run": "x", "envs": {"SEED": 1}}, "envs.SEED"),
    ({"run": "x", "envs": ["SEED=1"]}, "envs"),
    ({"run": "x", "inputs": [{"dataset": "d", "residency": "moon"}]}, "inputs[0].residency"),
    ({"run": "x", "placement": {"policy": "fast"}}, "placement.policy"),
    ({"run": "x", "placement": {"max_price": "cheap"}}, "placement.max_price"),
    ({"run": "x", "placement": {"max_price": -1}}, "placement.max_price"),
    ({"run": "x", "placement": {"deadline": "tomorrow"}}, "placement.deadline"),
    ({"run": "x", "placement": {"deadline": "2030-01-01T00:00:00"}}, "placement.deadline"),
    ({"run": "x", "placement": {"regions": "ZJK"}}, "placement.regions"),
]


def test_every_malformed_spec_field_is_422_naming_it(service: LocalControlPlane) -> None:
    """Unknown fields at any depth (a misspelling is an error, not a silent default), negative
    or zero sizes, unknown devices, bad durations, wrong types, a missing ``run``: each a 422
    whose error names the field, on submit and on quote alike."""
    register_site(service)
    cases: list[Case] = []
    for i, (spec, field) in enumerate(BAD_VALUES):
        r = send(service, None, "POST", "/api/v1/tasks", json=spec)
        cases.append((f"submit {spec}", r, 422, field))
        if i % 3 == 0:  # the quote reads specs with the same parser: a sample suffices
            r = send(service, None, "POST", "/api/v1/quote", json=spec)
            cases.append((f"quote {spec}", r, 422, field))
    check_all(cases)
    assert count_tasks(service) == 0


def test_placement_naming_an_unknown_region_or_user_location_is_422_naming_it(
    service: LocalControlPlane,
) -> None:
    """Regions and user locations are ids of the network's topology: an unknown one is a typo
    in the spec, reported against that field (not as a size no pool can hold, and not
    silently ignored)."""
    register_site(service)
    cases = [
        ("regions", send(service, None, "POST", "/api/v1/tasks",
                         json={**GOOD, "placement": {"regions": ["MARS"]}}),
         422, "placement.regions"),
        ("user_location", send(service, None, "POST", "/api/v1/tasks",
                               json={**GOOD, "placement": {"user_location": "MARS"}}),
         422, "placement.user_location"),
    ]
    check_all(cases)
    assert count_tasks(service) == 0


NON_FINITE_OR_ABSURD = [
    (b'{"run": "x", "timeout": Infinity}', "timeout"),
    (b'{"run": "x", "timeout": 1e300}', "timeout"),
    (b'{"run": "x", "resources": {"estimate": Infinity}}', "resources.estimate"),
    (b'{"run": "x", "resources": {"memory": NaN}}', "resources.memory"),
    (b'{"run": "x", "placement": {"max_price": 1e30}}', "placement.max_price"),
    (b'{"run": "x", "placement": {"max_latency_ms": Infinity}}', "placement.max_latency_ms"),
    (b'{"run": "x", "resources": {"cpus": %d}}' % BIG, "resources.cpus"),
    (b'{"run": "x", "resources": {"accelerators": "A100:%d"}}' % BIG,
     "resources.accelerators"),
    (b'{"run": "x", "resources": {"accelerators": {"A100": %d}}}' % BIG,
     "resources.accelerators"),
]


def test_non_finite_or_absurd_numbers_in_a_spec_are_422_never_500(
    service: LocalControlPlane,
) -> None:
    """Counts beyond 64 bits, ``Infinity`` and ``NaN`` (literals Python's JSON parser takes
    though JSON has none), a timeout of 10^300 s or a max_price of 10^30: a submission is
    refused naming the field before anything is priced or stored; a quote never fails with 500.
    (A count the pools cannot hold may instead be refused as a size, naming ``resources``.)"""
    cases: list[Case] = []
    register_site(service)
    for body, field in NON_FINITE_OR_ABSURD:
        fields = (field, "resources") if field.startswith("resources.") else field
        r = send(service, None, "POST", "/api/v1/tasks", content=body, headers=JSON)
        cases.append((f"submit {body!r}", r, 422, fields))
        r = send(service, None, "POST", "/api/v1/quote", content=body, headers=JSON)
        if r.status_code != 200:
            cases.append((f"quote {body!r}", r, 422, fields))
    check_all(cases)
    assert count_tasks(service) == 0


def test_an_infinite_timeout_accepted_before_any_site_exists_cannot_stall_scheduling(
    service: LocalControlPlane,
) -> None:
    """Whatever the server does with ``timeout: Infinity`` while no site is registered, a good
    task submitted afterwards is still placed once a site appears."""
    send(service, None, "POST", "/api/v1/tasks", content=b'{"run": "x", "timeout": Infinity}',
         headers=JSON)
    agent = register_site(service)
    r = send(service, None, "POST", "/api/v1/tasks", json=GOOD)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]

    def placed() -> bool:
        state = send(service, None, "GET", f"/api/v1/tasks/{tid}").json()["state"]
        return bool(state == "queued")

    wait_until(placed, timeout=3)
    assert send(service, None, "GET", f"/api/v1/tasks/{tid}").json()["site"] == agent.site


def test_values_the_database_cannot_store_are_refused_never_500(
    service: LocalControlPlane,
) -> None:
    """What a column cannot hold is bad input, the same on SQLite and PostgreSQL: a task name
    of 300 characters or with a NUL byte (refused naming ``name``, or stored and read back
    exactly), a core count beyond 32 bits while no site exists (refused, or accepted as pending),
    a budget of ``Infinity`` or 10^30 (refused naming ``budget``), an exit code beyond 32 bits
    (refused naming ``exit_code``, the attempt left as it was)."""
    cases: list[Case] = []
    failures = []
    for name in ("n" * 300, "a\x00b"):
        r = send(service, None, "POST", "/api/v1/tasks", json={**GOOD, "name": name})
        if r.status_code != 201:
            cases.append((f"name {name[:12]!r}", r, 422, "name"))
        elif send(service, None, "GET", f"/api/v1/tasks/{r.json()['id']}").json()[
                "name"] != name:
            failures.append(f"name {name[:12]!r}: not read back as written")
    for cpus in (2**31, BIG):
        r = send(service, None, "POST", "/api/v1/tasks",
                 json={"run": "x", "resources": {"cpus": cpus}})
        if r.status_code != 201:
            cases.append((f"cpus {cpus} with no site", r, 422, "resources.cpus"))
    for i, body in enumerate((b'{"id": "t%d", "budget": Infinity}',
                              b'{"id": "t%d", "budget": 1e30}')):
        r = send(service, None, "POST", "/api/v1/tenants", content=body % i, headers=JSON)
        cases.append((body.decode(), r, 422, "budget"))

    agent = register_site(service)
    tid = send(service, None, "POST", "/api/v1/tasks", json=GOOD).json()["id"]
    wait_until(lambda: send(service, None, "GET", f"/api/v1/tasks/{tid}").json()["state"]
               == "queued", timeout=5)
    lease = next(x for x in send(service, agent.key, "POST", "/api/v1/agent/lease", json={
        "free": {"cpu": 64}, "wait_s": 0}).json()["leases"] if x["task"] == tid)
    path = f"/api/v1/agent/attempts/{lease['attempt']}/report"
    for code in (BIG, 2**40, -(2**40)):
        r = send(service, agent.key, "POST", path, json={
            "token": lease["token"], "state": "exited", "exit_code": code})
        cases.append((f"exit code {code}", r, 422, "exit_code"))
    state = send(service, None, "GET", f"/api/v1/tasks/{tid}").json()["state"]
    if state != "leased":
        failures.append(f"the task whose reports were refused is {state}, not leased")
    check_all(cases, failures)


# -- batches --------------------------------------------------------------------------------------


def test_a_batch_with_one_bad_task_names_that_task_and_writes_nothing(
    service: LocalControlPlane,
) -> None:
    """The whole batch is checked before anything is written; the error says which task
    (``tasks[1]...``)."""
    register_site(service)
    before = count_tasks(service)
    listed = len(send(service, None, "GET", "/api/v1/tasks").json()["tasks"])
    cases = [
        ("a malformed field", {"tasks": [GOOD, {"run": "x", "resources": {"cpus": -1}}]},
         422, "tasks[1].resources.cpus"),
        ("an unknown field", {"tasks": [GOOD, GOOD, {**GOOD, "retriez": 1}]},
         422, "tasks[2].retriez"),
        ("a size no pool holds", {"tasks": [GOOD, {"run": "x", "resources": {"cpus": 1000}}]},
         422, "tasks[1].resources"),
        ("max_price below its quote", {"tasks": [
            GOOD, {**GOOD, "placement": {"max_price": 0.000001}}]},
         422, "tasks[1].placement.max_price"),
        ("a task that is not a mapping", {"tasks": [GOOD, 5]}, 422, "tasks[1]"),
        ("no tasks", {"tasks": []}, 422, "tasks"),
        ("tasks not a list", {"tasks": GOOD}, 422, "tasks"),
        ("an unknown top-level field", {"tasks": [GOOD], "priority": 1}, 422, "priority"),
    ]
    check_all([(label, send(service, None, "POST", "/api/v1/tasks/batch", json=body), status,
                field) for label, body, status, field in cases])
    assert count_tasks(service) == before
    assert len(send(service, None, "GET", "/api/v1/tasks").json()["tasks"]) == listed


# -- size limits ----------------------------------------------------------------------------------

LIMITED_ROUTES = ["/api/v1/tasks", "/api/v1/tasks/batch", "/api/v1/quote", "/api/v1/sites",
                  "/api/v1/tenants"]


def test_the_16_mib_limit_is_inclusive_and_enforced_from_content_length_alone(
    service: LocalControlPlane,
) -> None:
    """A body announced one byte over the limit is 413 before any of it is sent; a body of
    exactly 16 MiB (a good spec padded with spaces) is accepted."""
    failures = []
    for path in LIMITED_ROUTES:
        status, kind, body = raw_post_headers_only(service.url, path, service.admin_key,
                                                   MAX_BODY_BYTES + 1)
        if status != 413 or not kind.startswith("application/problem+json"):
            failures.append(f"{path}: {status} {kind} {body[:200]!r}")
    assert not failures, "\n".join(failures)
    assert count_tasks(service) == 0
    text = b'{"run": "echo hi"}'
    r = send(service, None, "POST", "/api/v1/tasks",
             content=text + b" " * (MAX_BODY_BYTES - len(text)), headers=JSON)
    assert r.status_code == 201, r.text[:300]


def test_a_chunked_body_over_16_mib_is_413_on_every_route(service: LocalControlPlane) -> None:
    """Without Content-Length the limit is enforced while streaming: the answer is still 413
    (not the framework's generic 400), whichever route reads the body."""
    agent = register_site(service)
    routes = [(None, p) for p in LIMITED_ROUTES] + [
        (agent.key, "/api/v1/agent/heartbeat"), (agent.key, "/api/v1/agent/lease")]
    check_all([
        (path, send(service, key, "POST", path, content=over_the_limit(), headers=JSON), 413,
         "body")
        for key, path in routes
    ])
    assert count_tasks(service) == 0


# -- query and path parameters --------------------------------------------------------------------


def test_bad_query_path_and_header_parameters_are_4xx_naming_the_parameter(
    service: LocalControlPlane,
) -> None:
    cases: list[Case] = [
        ("limit=0", send(service, None, "GET", "/api/v1/tasks?limit=0"), None, "limit"),
        ("limit=1001", send(service, None, "GET", "/api/v1/tasks?limit=1001"), None, "limit"),
        ("limit=abc", send(service, None, "GET", "/api/v1/tasks?limit=abc"), None, "limit"),
        ("cursor=0", send(service, None, "GET", "/api/v1/tasks?cursor=0"), None, "cursor"),
        ("cursor=abc", send(service, None, "GET", "/api/v1/tasks?cursor=abc"), None, "cursor"),
        ("state=nope", send(service, None, "GET", "/api/v1/tasks?state=nope"), None, "state"),
        ("stream=nope", send(service, None, "GET", "/api/v1/tasks/1/logs?stream=nope"), None,
         "stream"),
        ("since=abc", send(service, None, "GET", "/api/v1/usage?since=abc"), None, "since"),
        ("earnings until=abc", send(service, None, "GET", "/api/v1/earnings?until=abc"), None,
         "until"),
        ("task id abc", send(service, None, "GET", "/api/v1/tasks/abc"), None, "task_id"),
        ("Idempotency-Key over 200 characters", send(
            service, None, "POST", "/api/v1/tasks", json=GOOD,
            headers={"Idempotency-Key": "k" * 201}), 400, "Idempotency-Key"),
        ("X-Attempt-Token not a number", send(
            service, None, "PUT", "/api/v1/agent/attempts/1/files/stdout", content=b"x",
            headers={"X-Attempt-Token": "abc"}), None, "x-attempt-token"),
    ]
    check_all(cases)
    assert count_tasks(service) == 0


def test_ids_beyond_64_bits_are_404_or_422_never_500(service: LocalControlPlane) -> None:
    """An id no row can have is simply not found (or malformed); the database never sees an
    integer it cannot bind."""
    agent = register_site(service)
    cases = []
    for method, path in (
        ("GET", f"/api/v1/tasks/{BIG}"), ("POST", f"/api/v1/tasks/{BIG}/cancel"),
        ("GET", f"/api/v1/tasks/{BIG}/attempts"), ("GET", f"/api/v1/tasks/{BIG}/explain"),
        ("GET", f"/api/v1/tasks/{BIG}/logs"), ("GET", f"/api/v1/tasks/{BIG}/outputs"),
        ("GET", f"/api/v1/tasks?cursor={BIG}"),
    ):
        cases.append((f"{method} {path}", send(service, None, method, path), None, None))
    for method, path, body in (
        ("POST", f"/api/v1/agent/attempts/{BIG}/report", {"token": 1, "state": "running"}),
        ("POST", "/api/v1/agent/attempts/1/report", {"token": BIG, "state": "running"}),
        ("POST", "/api/v1/agent/heartbeat", {"running": [{"attempt": BIG, "token": 1}]}),
        ("POST", "/api/v1/agent/heartbeat", {"running": [{"attempt": 1, "token": BIG}]}),
        ("GET", f"/api/v1/agent/attempts/{BIG}/workdir", None),
    ):
        r = send(service, agent.key, method, path, json=body)
        if r.status_code == 200 and path.endswith("heartbeat"):
            # Answering "unknown attempt" is a fine reply to a heartbeat naming such an id.
            continue
        cases.append((f"{method} {path} {body}", r, None, None))
    check_all(cases)


# -- sites and agents -----------------------------------------------------------------------------


def site_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "s2", "region": "ZJK", "pools": [
        {"id": "p", "device": "EPYC-7763", "count": 8, "price_per_cu_hour": 1}]}
    body.update(changes)
    return body


def pool(**changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "p", "device": "A100-80GB", "count": 8, "price_per_cu_hour": 1}
    out.update(changes)
    return out


def test_bad_heartbeats_leases_and_reports_are_422_naming_the_field_and_change_nothing(
    service: LocalControlPlane,
) -> None:
    """A heartbeat naming an unknown pool (even next to a good one) is refused whole: the good
    pool's free capacity is not half-applied; a refused report leaves its attempt leased and
    bills nothing."""
    agent = register_site(service)
    tid = send(service, None, "POST", "/api/v1/tasks", json=GOOD).json()["id"]
    wait_until(lambda: send(service, None, "GET", f"/api/v1/tasks/{tid}").json()["state"]
               == "queued", timeout=5)
    lease = send(service, agent.key, "POST", "/api/v1/agent/lease",
                 json={"free": {"cpu": 64}, "wait_s": 0}).json()["leases"][0]
    token = lease["token"]
    reports = [
        ("unknown state", {"token": token, "state": "exploded"}, "state"),
        ("exited without exit code", {"token": token, "state": "exited"}, "exit_code"),
        ("signal out of range", {"token": token, "state": "exited", "signal": 99}, "signal"),
        ("negative run time", {"token": token, "state": "exited", "exit_code": 0, "run_s": -1},
         "run_s"),
        ("no token", {"state": "running"}, "token"),
    ]
    leases = [
        ("wait over 30 s", {"free": {"cpu": 1}, "wait_s": 99}, "wait_s"),
        ("negative wait", {"free": {"cpu": 1}, "wait_s": -1}, "wait_s"),
        ("lease from an unknown pool", {"free": {"zz": 1}, "wait_s": 0}, "free.zz"),
        ("no tasks wanted", {"free": {"cpu": 1}, "wait_s": 0, "max_tasks": 0}, "max_tasks"),
        ("free missing", {"wait_s": 0}, "free"),
    ]
    beats = [
        ("unknown pool", {"free": {"cpu": 3, "nope": 1}}, "free.nope"),
        ("negative free", {"free": {"cpu": -1}}, "free.cpu"),
        ("more free than the pool has", {"free": {"gpu": 9}}, "free.gpu"),
        ("unknown field", {"frees": {"cpu": 3}}, "frees"),
        ("running attempt without token", {"running": [{"attempt": 1}]}, "running[0].token"),
        ("negative run time", {"running": [{"attempt": 1, "token": 1, "run_s": -1}]},
         "running[0].run_s"),
    ]
    check_all([(label, send(service, agent.key, "POST", "/api/v1/agent/heartbeat", json=body),
                422, field) for label, body, field in beats]
              + [(label, send(service, agent.key, "POST", "/api/v1/agent/lease", json=body),
                  422, field) for label, body, field in leases]
              + [(label, send(service, agent.key, "POST",
                              f"/api/v1/agent/attempts/{lease['attempt']}/report", json=body),
                  422, field) for label, body, field in reports])
    site = send(service, agent.provider_key, "GET", f"/api/v1/sites/{agent.site}").json()
    assert {p["id"]: p["free"] for p in site["pools"]} == {"cpu": 64, "gpu": 8}
    assert send(service, None, "GET", f"/api/v1/tasks/{tid}").json()["state"] == "leased"
    assert send(service, None, "GET", "/api/v1/usage").json()["attempts"] == 0


def test_heartbeats_and_leases_refuse_non_finite_free_capacity_never_500(
    service: LocalControlPlane,
) -> None:
    """``NaN`` is a legal JSON literal for Python's parser; as free capacity it is bad input."""
    agent = register_site(service)
    cases = []
    for pool_id in ("cpu", "gpu"):
        body = b'{"free": {"%s": NaN}, "wait_s": 0}' % pool_id.encode()
        cases.append((f"lease {pool_id} NaN", send(service, agent.key, "POST",
                                                   "/api/v1/agent/lease", content=body,
                                                   headers=JSON), 422, f"free.{pool_id}"))
        body = b'{"free": {"%s": NaN}}' % pool_id.encode()
        cases.append((f"heartbeat {pool_id} NaN", send(service, agent.key, "POST",
                                                       "/api/v1/agent/heartbeat", content=body,
                                                       headers=JSON), 422, f"free.{pool_id}"))
    check_all(cases)


def test_bad_site_tenant_and_key_bodies_are_422_naming_the_field_and_create_nothing(
    service: LocalControlPlane,
) -> None:
    provider = new_tenant(service.client(), "prov", "provider")
    cases = [
        ("unknown region", site_body(region="MARS"), "region"),
        ("unknown device", site_body(pools=[pool(device="NOPE-9000")]), "pools[0].device"),
        ("devices_per_node not dividing count",
         site_body(pools=[pool(devices_per_node=3)]), "pools[0].devices_per_node"),
        ("duplicate pool id", site_body(pools=[pool(), pool(device="H100-SXM")]),
         "pools[1].id"),
        ("malformed site id", site_body(id="bad id!"), "id"),
        ("malformed pool id", site_body(pools=[pool(id="../p")]), "pools[0].id"),
        ("zero devices", site_body(pools=[pool(count=0)]), "pools[0].count"),
        ("negative price", site_body(pools=[pool(price_per_cu_hour=-1)]),
         "pools[0].price_per_cu_hour"),
        ("no pools", site_body(pools=[]), "pools"),
        ("unknown field", site_body(regoin="ZJK"), "regoin"),
        ("unknown pool field", site_body(pools=[pool(gpus=8)]), "pools[0].gpus"),
        ("unknown backend", site_body(backend="mainframe"), "backend"),
        ("latitude off the globe", site_body(lat=100), "lat"),
        ("PUE below 1", site_body(pue=0.5), "pue"),
    ]
    admin = [
        ("malformed tenant id", "POST", "/api/v1/tenants", {"id": "bad id"}, "id"),
        ("negative budget", "POST", "/api/v1/tenants", {"id": "t", "budget": -1}, "budget"),
        ("negative quota", "POST", "/api/v1/tenants", {"id": "t", "concurrent_cu_quota": -1},
         "concurrent_cu_quota"),
        ("unknown tenant field", "POST", "/api/v1/tenants", {"id": "t", "budgett": 1},
         "budgett"),
        ("unknown role", "POST", "/api/v1/tenants/default/keys", {"user": "u", "role": "god"},
         "role"),
        ("malformed user", "POST", "/api/v1/tenants/default/keys", {"user": "a b"}, "user"),
    ]
    check_all([(label, send(service, provider, "POST", "/api/v1/sites", json=body), 422, field)
               for label, body, field in cases]
              + [(label, send(service, None, method, path, json=body), 422, field)
                 for label, method, path, body, field in admin])
    assert send(service, provider, "GET", "/api/v1/sites").json() == []
    assert send(service, None, "GET", "/api/v1/tenants/t").status_code == 404


# -- authentication -------------------------------------------------------------------------------


def test_a_missing_malformed_or_unknown_api_key_is_401_and_unknown_routes_404_or_405(
    service: LocalControlPlane,
) -> None:
    """Every way of not proving who you are gets 401 with ``WWW-Authenticate: Bearer``; what
    is not routed is 404 (or 405), as problem+json like every other error."""
    other_key_id = service.admin_key.split("_")[1]
    headers_cases = {
        "no key": {},
        "Basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
        "Bearer without a key": {"Authorization": "Bearer"},
        "not a cu_ key": {"Authorization": "Bearer nope"},
        "no secret": {"Authorization": f"Bearer cu_{other_key_id}"},
        "unknown key id": {"Authorization": "Bearer cu_0123456789abcdef_secret"},
        "wrong secret": {"Authorization": f"Bearer cu_{other_key_id}_wrong"},
        "malformed X-API-Key": {"X-API-Key": "nope"},
        "overlong key": {"X-API-Key": "cu_" + "a" * 300 + "_b"},
    }
    failures = []
    for label, headers in headers_cases.items():
        for method, path in (("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks")):
            r = httpx.request(method, service.url + path, headers=headers, json=GOOD,
                              verify=False)
            wrong = problem_errors(r, 401)
            if r.headers.get("www-authenticate", "").lower() != "bearer":
                wrong.append(f"WWW-Authenticate {r.headers.get('www-authenticate')!r}")
            if wrong:
                failures.append(f"{label} {method} {path}: {'; '.join(wrong)}")
    assert not failures, "\n".join(failures)
    assert count_tasks(service) == 0
    ok = httpx.get(service.url + "/api/v1/whoami", headers={"X-API-Key": service.admin_key},
                   verify=False)
    assert ok.status_code == 200 and ok.json()["tenant"] == "default"
    check_all([
        ("unknown route", send(service, None, "GET", "/api/v1/nope"), 404, None),
        ("unknown task", send(service, None, "GET", "/api/v1/tasks/424242"), 404, None),
        ("unknown site", send(service, None, "GET", "/api/v1/sites/nope"), 404, None),
        ("wrong method", send(service, None, "DELETE", "/api/v1/tasks"), 405, None),
    ])
