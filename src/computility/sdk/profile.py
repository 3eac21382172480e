"""Where a client finds the service: ``COMPUTILITY_SERVER`` / ``COMPUTILITY_API_KEY``, else a
profile in ``$XDG_CONFIG_HOME/computility/config.toml`` (written by ``computility up`` on first
start and by ``computility login``).

The file holds keys, so it is written with mode 600 in a directory of mode 700, and replaced
atomically so that a reader never sees half of it.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from computility.domain.errors import UsageError

DEFAULT_PROFILE = "default"
PROFILE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Profile:
    server: str
    api_key: str


def config_home() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "computility"


def profile_path() -> Path:
    return config_home() / "config.toml"


def read_profiles(path: Path | None = None) -> dict[str, dict[str, str]]:
    """Every profile in the file (empty when there is none)."""
    path = path or profile_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
    return {str(name): {str(k): str(v) for k, v in section.items()}
            for name, section in data.items() if isinstance(section, dict)}


def load_profile(name: str | None = None) -> Profile:
    """The service to talk to: the environment first, then profile `name` (default: the
    ``COMPUTILITY_PROFILE`` variable, else ``default``)."""
    name = name or os.environ.get("COMPUTILITY_PROFILE") or DEFAULT_PROFILE
    server = os.environ.get("COMPUTILITY_SERVER")
    key = os.environ.get("COMPUTILITY_API_KEY")
    path = profile_path()
    if server is None or key is None:
        section = read_profiles(path).get(name, {})
        server = server or section.get("server")
        key = key or section.get("api_key")
    if not server or not key:
        raise UsageError(
            f"no service configured: run `computility up` or `computility login`, or set "
            f"COMPUTILITY_SERVER and COMPUTILITY_API_KEY (profile '{name}' in {path} has none)"
        )
    return Profile(server=str(server).rstrip("/"), api_key=str(key))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def save_profile(profile: Profile, name: str = DEFAULT_PROFILE, *,
                 replace: bool = True) -> Path | None:
    """Write profile `name`, keeping the others. With ``replace=False`` an existing profile of
    that name is left alone and None is returned."""
    if not PROFILE_NAME.match(name):
        raise UsageError(f"--profile: expected letters, digits, '-' or '_', got '{name}'")
    profiles = read_profiles()
    if name in profiles and not replace:
        return None
    profiles[name] = {"server": profile.server, "api_key": profile.api_key}
    return _write(profiles)


def remove_profile(name: str) -> None:
    """Drop profile `name` (if there is one), keeping the others."""
    profiles = read_profiles()
    if profiles.pop(name, None) is not None:
        _write(profiles)


def _write(profiles: dict[str, dict[str, str]]) -> Path:
    path = profile_path()
    text = "".join(
        f"[{section}]\n" + "".join(f"{k} = {_quoted(v)}\n" for k, v in values.items()) + "\n"
        for section, values in profiles.items()
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
