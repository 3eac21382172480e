"""docs/sdk.md: every ```python block runs, top to bottom in one namespace, against the demo
network, with the environment a user would have (`COMPUTILITY_SERVER`, `COMPUTILITY_API_KEY`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from computility.demo.network import DemoNetwork

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
TOPICS = ("connect", "submit", "wait", "logs", "download", "quote", "executor", "async",
          "errors", "retries")


def blocks() -> list[str]:
    return BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def test_the_guide_covers_every_topic() -> None:
    headings = " ".join(re.findall(r"^## (.*)$", GUIDE.read_text(encoding="utf-8"),
                                   re.MULTILINE)).lower()
    assert [t for t in TOPICS if t not in headings] == []
    assert len(blocks()) >= 8


def test_the_guides_examples_run(demo: DemoNetwork, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTILITY_SERVER", demo.url)
    monkeypatch.setenv("COMPUTILITY_API_KEY", demo.keys["vision-startup"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no profile of the user's
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "sdk_guide"}
    for number, code in enumerate(blocks(), start=1):
        try:
            exec(compile(code, f"{GUIDE}:block{number}", "exec"), namespace)
        except Exception as error:
            pytest.fail(f"docs/sdk.md, python block {number} raised {error!r}:\n{code}")
