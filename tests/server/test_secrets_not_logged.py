"""No key and no key secret is ever written to a log, an error body, a page or ``/metrics``;
after its creation answer no endpoint returns a key again.

The service runs with every logger at DEBUG, in both log formats and the way ``computility up``
configures uvicorn, while keys are created, sites register, agents lease and report, browsers
sign in, callers fail authentication with wrong secrets and malformed keys, and users submit.
"""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute
from security_harness import clean_env, sign_in, stop
from starlette.routing import Route

from computility.sdk.profile import Profile
from computility.server.app import begin_shutdown, create_app
from computility.server.embedded import free_port
from computility.server.observability.logging import configure
from computility.server.settings import Settings
from computility.server.web import PAGE_MODULES
from computility.testing.controlplane import FakeAgent, answers, new_tenant, wait_until

CPU = "EPYC-7763"


class Captured:
    """A control plane whose every log line, at DEBUG, lands in `lines`."""

    def __init__(self, settings: Settings, fmt: str) -> None:
        self.app = create_app(settings)
        self.admin_key: str = self.app.state.first_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stream = io.StringIO()
        configure(fmt, logging.DEBUG, self.stream)
        # As `computility up` runs it: uvicorn's lines through the installed handler.
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="debug",
                                log_config=None, access_log=False, timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def lines(self) -> str:
        return self.stream.getvalue()

    def __enter__(self) -> Captured:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=30, every=0.02)
        return self

    def __exit__(self, *_: object) -> None:
        begin_shutdown(self.app)
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.app.state.plane.engine.dispose()


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """`configure` changes the process's root logger: put it back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in named.items():
        logging.getLogger(name).setLevel(old)


def secrets_of(key: str) -> list[str]:
    """The full key and its secret (what follows ``cu_<id>_``)."""
    return [key, key.split("_", 2)[2]]


def _fill(path: str, values: dict[str, str]) -> str | None:
    """`path` with its parameters filled in, or None when one has no known value."""
    names = re.findall(r"{(\w+)(?::\w+)?}", path)
    if any(n not in values for n in names):
        return None
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: values[m.group(1)], path)


def _get_paths(client: httpx.Client, values: dict[str, str]) -> list[str]:
    """Every GET route of the API (from its OpenAPI document), of the dashboard (from its page
    modules' routers) and the probes, parameters filled in; agent routes excepted."""
    api = client.get("/openapi.json").json()["paths"]
    templates = ["/metrics", "/healthz", "/readyz", "/openapi.json"]
    templates += [p for p, ops in api.items() if "get" in ops]
    for name in PAGE_MODULES:
        router = import_module(f"computility.server.web.pages.{name}").router
        templates += [r.path for r in router.routes
                      if isinstance(r, APIRoute | Route) and "GET" in (r.methods or ())]
    filled = [_fill(t, values) for t in templates if not t.startswith("/api/v1/agent/")]
    paths = [p for p in filled if p is not None]
    assert len(paths) > 25 and "/api/v1/keys" in paths and "/tasks" in paths
    return paths


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_key_or_secret_reaches_logs_errors_pages_or_metrics(
    db_url: str | None, tmp_path: Path, fmt: str, restored_logging: None,
) -> None:
    settings = Settings(db_url=db_url, data_dir=tmp_path / "data", cycle_s=0.1)
    seen: list[httpx.Response] = []  # every answer but the few that create a key

    def keep(response: httpx.Response) -> httpx.Response:
        response.read()
        seen.append(response)
        return response

    with Captured(settings, fmt) as service, \
            httpx.Client(base_url=service.url, timeout=30, headers={
                "Authorization": f"Bearer {service.admin_key}"}) as admin:
        user_key = new_tenant(admin, "lab")
        provider_key = new_tenant(admin, "owner", role="provider")
        agent = FakeAgent(service.url, provider_key, "secret-site", {"cpu": (CPU, 8)},
                          heartbeat_s=0.2, lease_wait_s=0.2).start()
        keys = [service.admin_key, user_key, provider_key, agent.key]
        key_id = user_key.split("_")[1]
        wrong = f"cu_{key_id}_WrongSecretOfTheRightKey0123456789abcdefXYZ"
        hooks = {"response": [keep]}
        try:
            with httpx.Client(base_url=service.url, timeout=30, event_hooks=hooks,
                              headers={"Authorization": f"Bearer {user_key}"}) as user:
                ids = [user.post("/api/v1/tasks", json={"run": f"echo {i}", "resources": {
                    "cpus": 1, "estimate": "1s"}}).json()["id"] for i in range(3)]
                wait_until(lambda: all(user.get(f"/api/v1/tasks/{i}").json()["state"]
                                       == "succeeded" for i in ids), timeout=60)
                user.get("/api/v1/whoami", headers={"Authorization": f"Bearer {wrong}"})
                user.get("/api/v1/tasks", headers={"X-API-Key": wrong,
                                                   "Authorization": f"Bearer {wrong}"})
                user.get("/api/v1/whoami", headers={"Authorization": f"Token {user_key}"})
                user.get("/api/v1/whoami",
                         headers={"Authorization": f"Bearer {user_key[:-3]}!!!"})
                user.get("/api/v1/whoami", headers={"Authorization": f"Bearer cu_{wrong}"})
                user.post("/api/v1/tasks", content=f'{{"run": "{user_key}"')  # invalid JSON
                user.post("/api/v1/tenants/lab/keys", json={"user": user_key, "role": "x"})
            with httpx.Client(base_url=service.url, timeout=30, event_hooks=hooks) as browser:
                sign_in(browser, wrong)
                sign_in(browser, agent.key)
                assert sign_in(browser, user_key).status_code == 303
                browser.get("/")
                browser.get("/tasks")
            with httpx.Client(base_url=service.url, timeout=30, event_hooks=hooks) as operator:
                sign_in(operator, service.admin_key)
                values = {"tenant_id": "lab", "site_id": "secret-site",
                          "task_id": str(ids[0]), "stream": "stdout", "lang": "en"}
                for path in _get_paths(operator, values):
                    if path.startswith("/api/"):
                        operator.get(path, headers={"Authorization":
                                                    f"Bearer {service.admin_key}"})
                    else:
                        operator.get(path)  # a dashboard page, with the operator's session
            time.sleep(0.3)  # a few more heartbeats and long polls
        finally:
            agent.stop()
    lines = service.lines
    assert "computility.access" in lines and "/api/v1/agent/heartbeat" in lines  # DEBUG is on
    assert "/metrics" in {str(r.url.path) for r in seen}
    assert any(r.status_code == 401 for r in seen) and any(
        r.status_code == 200 and r.url.path == "/api/v1/tenants/lab" for r in seen)
    for key in [*keys, wrong]:
        for secret in secrets_of(key):
            assert secret not in lines, f"a key secret in the {fmt} log"
            for r in seen:
                where = f"{r.request.method} {r.url.path} ({r.status_code})"
                assert secret not in r.text, f"a key secret in the answer to {where}"
                assert secret not in str(r.headers), f"a key secret in the headers of {where}"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_up_with_a_profile_already_there_keeps_the_admin_key_in_a_private_file_not_the_log(
    tmp_path: Path, fmt: str,
) -> None:
    env = clean_env(tmp_path)
    existing = Profile("http://elsewhere.example:8470", "cu_feedfeedfeedfeed_someone-elses")
    profile = tmp_path / "config" / "computility" / "config.toml"
    profile.parent.mkdir(parents=True)
    profile.write_text(f'[default]\nserver = "{existing.server}"\n'
                       f'api_key = "{existing.api_key}"\n')
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "computility", "up", "--port", str(port), "--no-local-site",
         "--log-format", fmt], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kept = tmp_path / "data" / "computility" / "admin-key"
    try:
        wait_until(kept.exists, timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as probe:
            wait_until(lambda: answers(probe), timeout=60)
        key = kept.read_text().strip()
        assert kept.stat().st_mode & 0o777 == 0o600
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/whoami",
                      headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.json()["role"] == "operator"
    finally:
        stop(proc)  # type: ignore[arg-type]
        assert proc.stderr is not None
        log = proc.stderr.read().decode()
    assert str(kept) in log and "profile not written" in log
    for secret in secrets_of(key):
        assert secret not in log
    assert profile.read_text().count(existing.api_key) == 1  # the other profile is untouched
