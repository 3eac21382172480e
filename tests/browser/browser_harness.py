"""A real Chromium driven by Playwright, and the checks every dashboard page must pass in it.

The browser is Debian's (``scripts/ensure-chromium.sh``; ``COMPUTILITY_CHROMIUM`` names another),
since Playwright's own download needs a CDN. Screenshots go to ``COMPUTILITY_SCREENSHOTS``
(default ``build/screenshots``), named ``<page>-<lang>-<width>.png``, for the written checklist in
``docs/dashboard-checklist.md``; `check_page` asserts the parts of that checklist a program can.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = (1280, 390)
LANGS = ("en", "zh")
CJK = re.compile(r"[\u4e00-\u9fff]")


def chromium_path() -> str:
    return os.environ.get("COMPUTILITY_CHROMIUM", "/usr/bin/chromium")


def screenshot_dir() -> Path:
    path = Path(os.environ.get("COMPUTILITY_SCREENSHOTS", ROOT / "build" / "screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#api_key", key)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def set_language(page: Page, url: str, lang: str) -> None:
    page.context.add_cookies([{"name": "cu_lang", "value": lang, "url": url}])


def visible_text(page: Page) -> str:
    return page.evaluate("() => document.body.innerText")


def visible_navigation(page: Page) -> int:
    """How many navigation links a person can see: in the top bar, or (on a narrow screen) in
    the menu once it is opened, which is then closed again."""
    shown = page.locator("header.top nav.wide a:visible").count()
    if shown:
        return shown
    menu = page.locator("header.top details.menu")
    if not menu.locator("summary").is_visible():
        return 0
    menu.locator("summary").click()
    shown = menu.locator("nav a:visible").count()
    menu.locator("summary").click()
    return shown


def check_page(page: Page, lang: str, signed_in: bool = True) -> None:
    """What every page must be, in a browser: navigation present, no raw JSON on screen, nothing
    wider than the window, the chosen language."""
    if signed_in:
        assert visible_navigation(page) >= 3, f"{page.url}: no navigation on screen"
    text = visible_text(page)
    assert '{"' not in text and "':" not in text, f"{page.url}: raw JSON on screen"
    assert "Traceback" not in text and "Internal Server Error" not in text, page.url
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"{page.url}: {overflow} px wider than the window"
    html_lang = page.get_attribute("html", "lang") or ""
    assert html_lang.startswith(lang), f"{page.url}: lang={html_lang}, wanted {lang}"
    if lang == "zh":
        assert CJK.search(text), f"{page.url}: no Chinese on the Chinese page"


def shoot(page: Page, name: str, lang: str, width: int) -> Path:
    path = screenshot_dir() / f"{name}-{lang}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
