"""Who may reach what, route by route, over HTTP: every dashboard route is enumerated from the
page routers themselves, so a route added later is held to the same rules without being listed
here.

- without a session every page sends the visitor to sign in, and every form is refused;
- every form (POST) is refused without the session's CSRF token, and changes nothing;
- a user key opens no operator page, and never another tenant's task, logs or bill.
"""

from __future__ import annotations

import re
from importlib import import_module

import httpx
from web_harness import Dashboard

from computility.server.web import PAGE_MODULES

OPEN = {"/login", "/lang/{lang}"}
"""Routes a visitor without a session may use: the sign-in form and the language choice."""
OPERATOR_ONLY = re.compile(r"^/(supply|validation)(/|$)")


def dashboard_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the dashboard's page modules declare."""
    out = []
    for name in PAGE_MODULES:
        for route in import_module(f"computility.server.web.pages.{name}").router.routes:
            for method in sorted(getattr(route, "methods", ()) or ()):
                if method != "HEAD":
                    out.append((method, route.path))  # type: ignore[attr-defined]
    return out


def concrete(path: str, task: int, run: int = 1) -> str:
    return (path.replace("{task_id}", str(task)).replace("{run_id}", str(run))
            .replace("{site_id}", "nowhere").replace("{stream}", "stdout")
            .replace("{lang}", "zh").replace("{id}", str(run)))


def _alice_task(d: Dashboard) -> int:
    with d.server.client(d.alice_key) as alice:
        r = alice.post("/api/v1/tasks", json={"name": "mine", "run": "sleep 1",
                                              "resources": {"cpus": 1, "estimate": "1m"}})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def test_the_dashboard_has_the_routes_this_file_checks() -> None:
    paths = {p for _, p in dashboard_routes()}
    for expected in ("/", "/tasks", "/tasks/{task_id}", "/usage", "/usage.csv", "/supply",
                     "/validation", "/login", "/logout"):
        assert expected in paths, expected
    assert any(m == "POST" and p.startswith("/validation") for m, p in dashboard_routes())


def test_without_a_session_pages_ask_to_sign_in_and_forms_are_refused(
    dashboard: Dashboard,
) -> None:
    task = _alice_task(dashboard)
    with httpx.Client(base_url=dashboard.url, follow_redirects=False) as visitor:
        for method, path in dashboard_routes():
            if path in OPEN:
                continue
            r = visitor.request(method, concrete(path, task), data={"csrf": "x"})
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), \
                (method, path, r.status_code)


def test_every_form_needs_the_sessions_csrf_token(dashboard: Dashboard) -> None:
    task = _alice_task(dashboard)
    operator = dashboard.session(dashboard.operator_key)
    posts = [p for m, p in dashboard_routes() if m == "POST" and p not in OPEN]
    assert posts
    for path in posts:
        for form in ({}, {"csrf": "forged"}):
            r = operator.post(concrete(path, task), form, with_csrf=False)
            assert r.status_code == 403, (path, form, r.status_code)
    with dashboard.server.client(dashboard.alice_key) as alice:
        assert alice.get(f"/api/v1/tasks/{task}").json()["state"] != "cancelled"
    assert operator.get("/").status_code == 200  # /logout without the token signed no one out


def test_a_user_opens_no_operator_page(dashboard: Dashboard) -> None:
    alice = dashboard.session(dashboard.alice_key)
    page = alice.get("/").text
    assert 'href="/supply"' not in page and 'href="/validation"' not in page
    for method, path in dashboard_routes():
        if not OPERATOR_ONLY.match(path):
            continue
        r = (alice.get(concrete(path, 0)) if method == "GET"
             else alice.post(concrete(path, 0)))
        assert r.status_code == 403, (method, path, r.status_code)


def test_a_user_never_sees_another_tenants_task_logs_or_bill(dashboard: Dashboard) -> None:
    task = _alice_task(dashboard)
    bob = dashboard.session(dashboard.bob_key)
    for method, path in dashboard_routes():
        if "{task_id}" not in path:
            continue
        r = bob.get(concrete(path, task)) if method == "GET" else bob.post(concrete(path, task))
        assert r.status_code == 404, (method, path, r.status_code)
        assert "mine" not in r.text
    listing = bob.get("/tasks").text
    assert f'href="/tasks/{task}"' not in listing
    for path in ("/usage?tenant=alice-lab", "/usage.csv?tenant=alice-lab"):
        assert bob.get(path).status_code == 403, path
    with dashboard.server.client(dashboard.alice_key) as alice:
        assert alice.get(f"/api/v1/tasks/{task}").json()["state"] != "cancelled"


def test_odd_ids_and_periods_get_an_answer_never_a_server_error(dashboard: Dashboard) -> None:
    operator = dashboard.session(dashboard.operator_key)
    odd = ("%C2%B2", "1" * 4301, "0", "-1", "99999999999999999999")
    for raw in odd:
        for path in (f"/tasks/{raw}", f"/tasks/{raw}/live", f"/tasks/{raw}/log/stdout",
                     f"/validation/{raw}", f"/validation/{raw}/status"):
            assert operator.get(path).status_code == 404, path
        for path in (f"/tasks?before={raw}", f"/validation?before={raw}"):
            assert operator.get(path).status_code == 400, path
    for period in ("9999-12", "9999-12-31", "2026-13", "0000-00"):
        for path in (f"/usage?period={period}", f"/usage.csv?period={period}"):
            r = operator.get(path)
            assert r.status_code in (200, 400), (path, r.status_code)


def test_a_large_form_sent_to_a_cancel_route_meets_the_body_limit(dashboard: Dashboard) -> None:
    """Only the upload form itself is exempt from the service's body limit, by exact path."""
    alice = dashboard.session(dashboard.alice_key)
    big = "x" * (17 * 1024 * 1024)
    r = alice.post("/validation/runs/cancel", {"pad": big})
    assert r.status_code == 413
