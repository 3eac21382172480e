"""The dashboard as its users meet it, in a real Chromium against the demo network: an operator
signs in, finds the sites, watches a task submitted from the CLI appear and finish without
reloading, reads why it ran where it did and what it printed, sees the bill move, and compares
policies on a workload; a user sees only its own tenant; another site's form is refused.
Screenshots of every page at two widths in both languages go to the checklist's folder."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from browser_harness import LANGS, WIDTHS, check_page, set_language, shoot, sign_in
from playwright.sync_api import Browser, Page, expect

from computility.demo.network import DemoNetwork

DEMO_SITES = ("zjk-wind", "yrd-ai", "tf-hydro", "ga-cloud", "qy-data")
LIVE_S = 90_000  # ms a task may take to appear, run and finish on the demo network
SPEC = {
    "name": "browser-watch",
    "run": "python3 -c \"import time; print('hello from the browser test'); time.sleep(2)\"",
    "resources": {"cpus": 1, "estimate": "1m", "estimate_on": "EPYC-7763"},
}


def _cli(demo: DemoNetwork, key: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "COMPUTILITY_SERVER": demo.url,
           "COMPUTILITY_API_KEY": key, "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data")}
    return subprocess.run([sys.executable, "-m", "computility", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _submit(demo: DemoNetwork, tenant: str, tmp_path: Path, spec: dict[str, Any]) -> int:
    path = tmp_path / f"{spec['name']}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    done = _cli(demo, demo.keys[tenant], tmp_path, "submit", str(path), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    task = out["tasks"][0] if "tasks" in out else out[0] if isinstance(out, list) else out
    return int(task["id"])


def _total(page: Page) -> str:
    return page.locator("#usage-total").inner_text()


@pytest.fixture
def operator_page(chromium: Browser, demo: DemoNetwork) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, demo.url, demo.keys["operator"])
    yield page
    context.close()


def test_an_operator_follows_a_task_from_the_cli_to_the_bill(
    operator_page: Page, demo: DemoNetwork, tmp_path: Path,
) -> None:
    page, url = operator_page, demo.url
    page.goto(f"{url}/")
    for site in DEMO_SITES:
        expect(page.locator(f"svg a[href='/sites/{site}']")).to_have_count(1)
    page.locator("table a[href='/sites/qy-data']").first.click()
    expect(page).to_have_url(f"{url}/sites/qy-data")
    expect(page.locator("h1")).to_contain_text("qy-data")

    page.goto(f"{url}/usage?tenant=climate-lab&period=all")
    bill_before = _total(page)

    page.goto(f"{url}/tasks")
    task_id = _submit(demo, "climate-lab", tmp_path, SPEC)
    row = page.locator(f"#task-rows tr:has(a[href='/tasks/{task_id}'])")
    expect(row).to_have_count(1, timeout=LIVE_S)  # appeared without a reload
    expect(row.locator("span.state")).to_have_class(re.compile("state-succeeded"),
                                                    timeout=LIVE_S)
    row.locator(f"a[href='/tasks/{task_id}']").first.click()
    expect(page).to_have_url(f"{url}/tasks/{task_id}")
    expect(page.locator("#explain table.candidates")).to_be_visible()
    expect(page.locator("#explain table.candidates tbody tr").first).to_be_visible()
    expect(page.locator("#log-stdout")).to_contain_text("hello from the browser test")

    page.goto(f"{url}/usage?tenant=climate-lab&period=all")
    assert _total(page) != bill_before, "the bill did not change after the task ran"

    page.goto(f"{url}/validation")
    page.check("input[name=source][value=synthetic]")
    page.fill("input[name=synthetic]", "200")
    for box in page.locator("input[name=policy]").all():
        box.set_checked(box.get_attribute("value") in ("cheapest", "greenest"))
    page.locator("form.validation-form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/validation/\d+$"))
    comparison = page.locator("table.comparison")
    expect(comparison).to_be_visible(timeout=LIVE_S)
    expect(comparison).to_contain_text("cheapest")
    expect(comparison).to_contain_text("greenest")
    expect(page.locator("div.chart canvas").first).to_be_visible()


def test_a_user_sees_only_its_own_tenant(chromium: Browser, demo: DemoNetwork,
                                         tmp_path: Path) -> None:
    others = _submit(demo, "vision-startup", tmp_path, {**SPEC, "name": "not-yours"})
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, demo.url, demo.keys["climate-lab"])
    nav = page.locator("header.top nav.wide")
    expect(nav.locator("a[href='/supply']")).to_have_count(0)
    expect(nav.locator("a[href='/validation']")).to_have_count(0)
    for path in ("/supply", "/validation", "/usage?tenant=vision-startup"):
        response = page.goto(f"{demo.url}{path}")
        assert response is not None and response.status == 403, path
        expect(page.locator("h1")).to_have_text("Not allowed")
    response = page.goto(f"{demo.url}/tasks/{others}")
    assert response is not None and response.status == 404
    page.goto(f"{demo.url}/tasks")
    expect(page.locator(f"a[href='/tasks/{others}']")).to_have_count(0)
    context.close()


class _EvilSite(BaseHTTPRequestHandler):
    """Another site's page that posts a cancel form to the dashboard as soon as it loads."""

    target = ""

    def do_GET(self) -> None:
        body = (f"<form id=f method=post action='{self.target}'>"
                "<input name=reason value=pwned></form>"
                "<script>document.getElementById('f').submit()</script>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_a_form_from_another_site_cannot_cancel_a_task(
    chromium: Browser, demo: DemoNetwork, tmp_path: Path,
) -> None:
    victim = _submit(demo, "climate-lab", tmp_path,
                     {**SPEC, "name": "long-runner", "run": "sleep 120"})
    context = chromium.new_context()
    page = context.new_page()
    sign_in(page, demo.url, demo.keys["climate-lab"])
    _EvilSite.target = f"{demo.url}/tasks/{victim}/cancel"
    evil = HTTPServer(("127.0.0.1", 0), _EvilSite)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        # localhost is another site than 127.0.0.1: the browser sends no SameSite=Strict cookie.
        page.goto(f"http://localhost:{evil.server_port}/")
        page.wait_for_url(re.compile(r"/login"), timeout=15_000)
    finally:
        evil.shutdown()
    time.sleep(2)  # a cancel reaches the site's agent in milliseconds: long enough to show
    with demo.client("climate-lab") as client:
        task = client.get(victim)
        assert task.state in ("pending", "queued", "leased", "running"), task
        client.cancel(victim)
    context.close()


SCREENS = ("login", "network", "site", "supply", "tasks", "task", "usage", "validation",
           "validation-run")


def _paths(page: Page, demo: DemoNetwork) -> dict[str, str]:
    page.goto(f"{demo.url}/tasks")
    task = page.locator("#task-rows tr:has(span.state-succeeded) a[href^='/tasks/']").first \
        .get_attribute("href")
    page.goto(f"{demo.url}/validation")
    run = page.locator("a[href^='/validation/']").first.get_attribute("href")
    assert task and run, "the scenario test leaves a task and a validation run"
    return {"login": "/login", "network": "/", "site": "/sites/yrd-ai",
            "supply": "/supply?range=1h", "tasks": "/tasks", "task": task,
            "usage": "/usage?tenant=climate-lab&period=all", "validation": "/validation",
            "validation-run": run}


def test_every_page_at_two_widths_in_both_languages(chromium: Browser,
                                                    demo: DemoNetwork) -> None:
    for lang in LANGS:
        for width in WIDTHS:
            context = chromium.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            set_language(page, demo.url, lang)
            page.goto(f"{demo.url}/login")
            check_page(page, lang, signed_in=False)
            shoot(page, "login", lang, width)
            sign_in(page, demo.url, demo.keys["operator"])
            for name, path in _paths(page, demo).items():
                if name == "login":
                    continue
                response = page.goto(f"{demo.url}{path}")
                assert response is not None and response.status == 200, (name, path)
                page.wait_for_load_state("networkidle")
                check_page(page, lang)
                shoot(page, name, lang, width)
            context.close()
