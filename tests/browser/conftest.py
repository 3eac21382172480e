"""The dashboard in a real browser: Debian's Chromium through Playwright, against the demo
network (the real service, five emulated national clusters, real tasks)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from browser_harness import chromium_path

from computility.demo.network import DemoNetwork


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoNetwork]:
    with DemoNetwork() as network:
        yield network


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Module-scoped, not session-scoped: Playwright's synchronous API keeps an event loop
    running in this thread while it is open, and later tests call `asyncio.run`."""
    path = chromium_path()
    if not os.access(path, os.X_OK):
        pytest.skip(f"no Chromium at {path}: run scripts/ensure-chromium.sh "
                    "(or set COMPUTILITY_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()
