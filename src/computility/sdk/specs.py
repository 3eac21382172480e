"""A task spec as the caller gives it (a mapping, YAML text or a file) made ready to send.

It is checked here, against the same schema the service uses, so a mistake is reported with its
file and line before anything is uploaded; a ``workdir`` that names a local directory is packed
(deterministically, so an unchanged directory is uploaded once) and replaced by its digest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from computility.domain.errors import UsageError
from computility.wire.archives import pack
from computility.wire.spec import json_safe, parse_task_spec, task_spec_from_mapping

DIGEST_PREFIX = "sha256:"
SpecLike = dict[str, Any] | str | os.PathLike[str]


def load_spec(spec: SpecLike) -> tuple[dict[str, Any], Path]:
    """The spec as a checked mapping, and the directory its relative ``workdir`` is under."""
    if isinstance(spec, dict):
        data = json_safe(_plain(spec))
        task_spec_from_mapping(data)
        return data, Path.cwd()
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and "\n" not in spec
                                          and spec.endswith((".yaml", ".yml"))):
        path = Path(spec)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"{path}: cannot read the task spec: {error}") from None
        parse_task_spec(text, str(path))
        return _mapping(text), path.resolve().parent
    parse_task_spec(spec, "task spec")
    return _mapping(spec), Path.cwd()


def _plain(value: Any) -> Any:
    """Paths as strings, tuples as lists: a spec written in Python, made ready for JSON."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _mapping(text: str) -> dict[str, Any]:
    data = json_safe(yaml.safe_load(text))
    assert isinstance(data, dict)  # parse_task_spec accepted it: a mapping
    return data


def workdir_to_pack(spec: dict[str, Any], base: Path) -> Path | None:
    """The local directory to upload for this spec, or None (no workdir, or already a digest)."""
    workdir = spec.get("workdir")
    if workdir is None or (isinstance(workdir, str) and workdir.startswith(DIGEST_PREFIX)):
        return None
    path = (base / str(workdir)).resolve()
    if not path.is_dir():
        raise UsageError(f"workdir: expected a directory or 'sha256:<digest>', got '{workdir}'")
    return path


def packed(directory: Path) -> bytes:
    return pack(directory)
