"""Signing in to the dashboard as a browser does, over plain HTTP: for the tests that check what
a page shows and refuses (the Playwright tests drive a real browser instead)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from computility.testing.controlplane import LocalControlPlane

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


class Session:
    """An httpx client holding a dashboard session cookie, and the session's CSRF token."""

    def __init__(self, client: httpx.Client, csrf: str) -> None:
        self.http = client
        self.csrf = csrf

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.http.get(path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, data: dict[str, str] | None = None,
             with_csrf: bool = True, **kwargs: object) -> httpx.Response:
        form = dict(data or {})
        if with_csrf:
            form.setdefault("csrf", self.csrf)
        return self.http.post(path, data=form, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.http.close()


def csrf_in(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found is not None, "no CSRF field in the page"
    return found.group(1)


def sign_in(url: str, key: str) -> Session:
    """Open the sign-in form, post the key with the form's token; the signed-in session."""
    client = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
    form = client.get("/login")
    assert form.status_code == 200, form.text
    r = client.post("/login", data={"api_key": key, "csrf": csrf_in(form.text), "next": "/"})
    assert r.status_code == 303, r.text
    home = client.get("/")
    assert home.status_code == 200, home.text
    return Session(client, csrf_in(home.text))


@dataclass
class Dashboard:
    """The service, and keys of an operator, two user tenants and a provider tenant."""

    server: LocalControlPlane
    operator_key: str
    alice_key: str  # user of tenant "alice-lab"
    bob_key: str  # user of tenant "bob-corp"
    provider_key: str  # provider of tenant "hubs"

    @property
    def url(self) -> str:
        return self.server.url

    def session(self, key: str) -> Session:
        return sign_in(self.url, key)
