"""Signing in to the dashboard: a key becomes a session cookie no script can read and no other
site can send; forms without the session's token are refused; a revoked key signs out."""

from __future__ import annotations

import httpx
from web_harness import Dashboard, csrf_in


def _cookie_header(response: httpx.Response, name: str) -> str:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(f"{name}="):
            return value
    raise AssertionError(f"no {name} cookie set")


def test_a_key_signs_in_with_an_httponly_strict_cookie(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.url) as client:
        form = client.get("/login")
        r = client.post("/login", data={"api_key": dashboard.alice_key,
                                        "csrf": csrf_in(form.text), "next": "/tasks"})
        assert r.status_code == 303 and r.headers["location"] == "/tasks"
        cookie = _cookie_header(r, "cu_session").lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert dashboard.alice_key not in r.headers.get("set-cookie", "")
        page = client.get("/")
        assert page.status_code == 200 and "alice-lab" in page.text


def test_pages_send_a_visitor_without_a_session_to_sign_in(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.url) as client:
        r = client.get("/?x=1")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F%3Fx%3D1"
        r = client.get("/", headers={"HX-Request": "true"})
        assert r.headers["HX-Redirect"].startswith("/login")


def test_bad_keys_are_named_and_agent_keys_cannot_sign_in(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.url) as client:
        for key, message in (("hello", "That is not an API key"),
                             ("cu_0000000000000000_nope", "Unknown or revoked API key")):
            form = client.get("/login")
            r = client.post("/login", data={"api_key": key, "csrf": csrf_in(form.text)})
            assert r.status_code == 401 and message in r.text
            assert "cu_session" not in r.headers.get("set-cookie", "")


def test_a_sign_in_form_posted_from_another_site_is_refused(dashboard: Dashboard) -> None:
    """The other site's page cannot read our token nor make the browser send our
    SameSite=Strict cookie: its post arrives with neither."""
    with httpx.Client(base_url=dashboard.url) as client:
        r = client.post("/login", data={"api_key": dashboard.alice_key, "csrf": "guess"},
                        headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "cu_session" not in r.headers.get("set-cookie", "")


def test_signing_out_needs_the_sessions_token(dashboard: Dashboard) -> None:
    alice = dashboard.session(dashboard.alice_key)
    r = alice.post("/logout", with_csrf=False)
    assert r.status_code == 403
    assert alice.get("/").status_code == 200  # still signed in
    r = alice.post("/logout", {"csrf": "not-the-token"})
    assert r.status_code == 403
    r = alice.post("/logout")
    assert r.status_code == 303
    assert alice.get("/").status_code == 303  # the session is gone on the server too


def test_after_sign_in_only_paths_of_this_site_are_followed(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.url) as client:
        for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            form = client.get("/login", params={"next": evil})
            r = client.post("/login", data={"api_key": dashboard.alice_key,
                                            "csrf": csrf_in(form.text), "next": evil})
            assert r.status_code == 303 and r.headers["location"] == "/"


def test_revoking_the_key_ends_its_sessions(dashboard: Dashboard) -> None:
    from sqlalchemy import update

    from computility.server.db import schema as db

    alice = dashboard.session(dashboard.alice_key)
    key_id = dashboard.alice_key.split("_")[1]
    with dashboard.server.plane.write() as conn:
        conn.execute(update(db.api_keys).where(db.api_keys.c.id == key_id).values(revoked_at=1.0))
    assert alice.get("/").status_code == 303


def test_the_language_switch_changes_every_label(dashboard: Dashboard) -> None:
    alice = dashboard.session(dashboard.alice_key)
    r = alice.get("/lang/zh", params={"next": "/"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    alice.http.cookies.set("cu_lang", "zh")
    zh = alice.get("/").text
    assert "网络" in zh and "退出" in zh and 'lang="zh-CN"' in zh
    alice.http.cookies.set("cu_lang", "en")
    assert "Sign out" in alice.get("/").text


def test_pages_carry_the_security_headers(dashboard: Dashboard) -> None:
    alice = dashboard.session(dashboard.alice_key)
    r = alice.get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
