"""Guessing keys stops paying: an address that fails authentication more than 10 times within a
window is refused (429, Retry-After) for a window, whatever key it sends, on the API and on the
dashboard's sign-in form alike; other addresses are unaffected."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from security_harness import WRONG_KEY, client_from, sign_in

from computility.domain.errors import UsageError
from computility.server.ratelimit import FailureLimiter
from computility.server.settings import from_environment
from computility.testing.controlplane import local_control_plane, wait_until

LIMIT = 10


def _refused_count(text: str, kind: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'computility_auth_refused_total{{kind="{kind}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no computility_auth_refused_total for {kind}")


def test_the_eleventh_failure_is_refused_and_so_is_a_valid_key_from_that_address(
    db_url: str | None, tmp_path: Path,
) -> None:
    with local_control_plane(tmp_path / "data", db_url) as service, \
            client_from(service.url, key=WRONG_KEY) as guesser, \
            client_from(service.url, key=service.admin_key) as same_address, \
            client_from(service.url, "127.0.0.2", key=service.admin_key) as elsewhere:
        for _ in range(LIMIT):
            assert guesser.get("/api/v1/whoami").status_code == 401
        r = guesser.get("/api/v1/whoami")
        assert r.status_code == 429
        assert r.headers["content-type"] == "application/problem+json"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        body = r.json()
        assert body["status"] == 429 and body["title"] == "Too Many Requests"
        assert "too many failed authentications" in body["detail"]
        # The right key from the refused address is refused too: no guess can be confirmed.
        r = same_address.get("/api/v1/whoami")
        assert r.status_code == 429 and "retry-after" in r.headers
        assert same_address.post("/api/v1/tasks", json={"run": "true"}).status_code == 429
        # Another address is not affected, neither its good key nor its first bad one.
        assert elsewhere.get("/api/v1/whoami").status_code == 200
        r = elsewhere.get("/api/v1/whoami", headers={"Authorization": f"Bearer {WRONG_KEY}"})
        assert r.status_code == 401
        metrics = same_address.get("/metrics").text  # the probes and /metrics need no key
        assert _refused_count(metrics, "api") >= 3
        assert _refused_count(metrics, "dashboard") == 0


def test_an_address_cannot_escape_by_claiming_another_in_x_forwarded_for(tmp_path: Path) -> None:
    """Only a proxy uvicorn trusts (127.0.0.1 by default) may name the client's address."""
    with local_control_plane(tmp_path / "data") as service, \
            client_from(service.url, "127.0.0.2", key=WRONG_KEY) as guesser, \
            client_from(service.url, key=service.admin_key) as trusted_proxy:
        for i in range(LIMIT):
            forged = {"X-Forwarded-For": f"10.0.0.{i}"}
            assert guesser.get("/api/v1/whoami", headers=forged).status_code == 401
        r = guesser.get("/api/v1/whoami", headers={"X-Forwarded-For": "10.0.1.1"})
        assert r.status_code == 429
        # A trusted proxy forwarding for a blocked client is refused; for another, it is not.
        r = trusted_proxy.get("/api/v1/whoami", headers={"X-Forwarded-For": "127.0.0.2"})
        assert r.status_code == 429
        r = trusted_proxy.get("/api/v1/whoami", headers={"X-Forwarded-For": "192.0.2.7"})
        assert r.status_code == 200


def test_the_refusal_ends_when_its_window_has_passed(db_url: str | None, tmp_path: Path) -> None:
    window = 1.5
    with local_control_plane(tmp_path / "data", db_url, auth_failure_window_s=window) \
            as service, \
            client_from(service.url, key=WRONG_KEY) as guesser, \
            client_from(service.url, key=service.admin_key) as user:
        for _ in range(LIMIT):
            assert guesser.get("/api/v1/whoami").status_code == 401
        refused_at = time.monotonic()
        r = guesser.get("/api/v1/whoami")
        assert r.status_code == 429 and r.headers["retry-after"] == "2"  # 1.5 s, rounded up
        assert user.get("/api/v1/whoami").status_code == 429
        wait_until(lambda: user.get("/api/v1/whoami").status_code == 200, timeout=10,
                   every=0.1)
        assert time.monotonic() - refused_at >= window - 0.1
        # The count starts again: the next failure is a plain 401.
        assert guesser.get("/api/v1/whoami").status_code == 401


def test_the_dashboard_sign_in_is_limited_too(db_url: str | None, tmp_path: Path) -> None:
    with local_control_plane(tmp_path / "data", db_url) as service, \
            client_from(service.url) as browser, \
            client_from(service.url, "127.0.0.2") as other_browser, \
            client_from(service.url, key=service.admin_key) as api:
        for _ in range(LIMIT):
            assert sign_in(browser, WRONG_KEY).status_code == 401
        r = sign_in(browser, WRONG_KEY)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        assert "Too many failed sign-ins" in r.text
        r = sign_in(browser, service.admin_key)
        assert r.status_code == 429 and "cu_session" not in r.headers.get("set-cookie", "")
        # One count per address: the API refuses the same address, which the form taught.
        assert api.get("/api/v1/whoami").status_code == 429
        r = sign_in(other_browser, service.admin_key)
        assert r.status_code == 303 and "cu_session=" in r.headers.get("set-cookie", "")
        assert _refused_count(api.get("/metrics").text, "dashboard") == 2


def test_the_limiter_tracks_a_bounded_number_of_addresses_and_forgets_quiet_ones() -> None:
    now = [1000.0]
    limiter = FailureLimiter(limit=2, window_s=10.0, max_clients=3, clock=lambda: now[0])
    for n in range(5):
        limiter.failed(f"10.0.0.{n}")
    assert len(limiter) == 3  # the two oldest are forgotten
    assert limiter.failed("10.0.0.4") is None  # its second failure: still within the limit
    refused = limiter.failed("10.0.0.4")
    assert refused is not None and refused.headers == {"Retry-After": "10"}
    assert limiter.refusal("10.0.0.4") is not None and limiter.refusal("10.0.0.3") is None
    now[0] += 10.5
    assert limiter.refusal("10.0.0.4") is None
    assert len(limiter) == 2  # quiet for a window: no longer tracked


def test_concurrent_failures_are_all_counted() -> None:
    limiter = FailureLimiter(limit=1000, window_s=60.0)
    refused: list[object] = []

    def fail() -> None:
        for _ in range(100):
            if limiter.failed("10.1.1.1") is not None:
                refused.append(1)

    threads = [threading.Thread(target=fail) for _ in range(11)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refused) == 100  # 1100 failures: the last hundred over the limit


@pytest.mark.parametrize(("env", "value", "message"), [
    ("COMPUTILITY_AUTH_FAILURE_LIMIT", "many", "expected a whole number of at least 1"),
    ("COMPUTILITY_AUTH_FAILURE_LIMIT", "0", "expected a whole number of at least 1"),
    ("COMPUTILITY_AUTH_FAILURE_WINDOW_S", "-1", "expected a number of seconds above 0"),
])
def test_bad_limiter_settings_in_the_environment_are_named(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str,
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(UsageError, match=f"{env}: {message}, got '{value}'"):
        from_environment()


def test_limiter_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTILITY_AUTH_FAILURE_LIMIT", "3")
    monkeypatch.setenv("COMPUTILITY_AUTH_FAILURE_WINDOW_S", "2.5")
    settings = from_environment()
    assert (settings.auth_failure_limit, settings.auth_failure_window_s) == (3, 2.5)


def test_requests_without_a_key_or_with_a_malformed_one_guess_nothing_and_do_not_count(
    tmp_path: Path,
) -> None:
    with local_control_plane(tmp_path / "data") as service, \
            client_from(service.url) as anonymous, \
            client_from(service.url, key=service.admin_key) as user:
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"},
                        {"Authorization": "Bearer nope"}, {"X-API-Key": "cu_abc"}) * 5:
            assert anonymous.get("/api/v1/whoami", headers=headers).status_code == 401
        for _ in range(LIMIT + 2):
            assert sign_in(anonymous, "not-a-key").status_code == 401
        assert user.get("/api/v1/whoami").status_code == 200
