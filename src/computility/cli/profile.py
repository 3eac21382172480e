"""Where the CLI finds the service: `COMPUTILITY_SERVER` / `COMPUTILITY_API_KEY`, else the default
profile in ``$XDG_CONFIG_HOME/computility/config.toml`` (written by ``computility up``)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass

from computility.cli.up import profile_path
from computility.domain.errors import UsageError


@dataclass(frozen=True)
class Profile:
    server: str
    api_key: str


def load_profile(name: str = "default") -> Profile:
    server = os.environ.get("COMPUTILITY_SERVER")
    key = os.environ.get("COMPUTILITY_API_KEY")
    path = profile_path()
    if (server is None or key is None) and path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise UsageError(f"{path}: not valid TOML: {error}") from None
        section = data.get(name, {})
        server = server or section.get("server")
        key = key or section.get("api_key")
    if not server or not key:
        raise UsageError(
            f"no service configured: run `computility up` on this machine, or set "
            f"COMPUTILITY_SERVER and COMPUTILITY_API_KEY (profile {path} has none)"
        )
    return Profile(server=str(server).rstrip("/"), api_key=str(key))
