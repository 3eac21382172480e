"""The dashboard in Chinese and English.

Messages live in ``messages/*.yaml``, one file per part of the dashboard, each entry a key with
its ``en`` and ``zh`` text (``{name}`` placeholders filled by `Translator.__call__`). Every key
must have both languages: `load_messages` refuses a file that misses one, so a page can never
show a bare key in one language only. National hub names come from the network's own region
names (``"张家口 Zhangjiakou"``), split into their two languages by `region_name`.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml

LANGUAGES = ("en", "zh")


class MessageError(ValueError):
    """A message file that is not a mapping of keys to {en, zh} texts."""


@functools.cache
def load_messages() -> dict[str, dict[str, str]]:
    """Every message, by language then key (read once per process)."""
    out: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    folder = resources.files("computility.server.web") / "messages"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        data = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise MessageError(f"{entry.name}: expected a mapping of message keys")
        for key, texts in data.items():
            if not isinstance(texts, dict) or set(texts) != set(LANGUAGES):
                raise MessageError(f"{entry.name}: {key}: expected exactly the keys "
                                   f"{', '.join(LANGUAGES)}")
            if key in out["en"]:
                raise MessageError(f"{entry.name}: {key}: defined twice")
            for lang in LANGUAGES:
                out[lang][str(key)] = str(texts[lang])
    return out


class Translator:
    """``t("nav.tasks")`` → the text in this language; ``t("x", n=3)`` fills ``{n}``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else "en"
        self._messages = load_messages()[self.lang]

    def __call__(self, key: str, **values: Any) -> str:
        text = self._messages.get(key)
        if text is None:
            raise KeyError(f"no message '{key}'")
        return text.format(**values) if values else text

    def region(self, name: str) -> str:
        return region_name(name, self.lang)


@functools.cache
def translator(lang: str) -> Translator:
    return Translator(lang)


def region_name(name: str, lang: str) -> str:
    """One language of a bilingual region name: ``"张家口 Zhangjiakou"`` → ``"张家口"`` (zh) or
    ``"Zhangjiakou"`` (en); a name in one language only is returned as it is."""
    head, sep, tail = name.partition(" ")
    if not sep or not any("\u4e00" <= ch <= "\u9fff" for ch in head):
        return name
    return head if lang == "zh" else tail
