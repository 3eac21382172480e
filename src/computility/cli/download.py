"""``computility download ID [--out DIR]``: a task's outputs, unpacked into a directory."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated

import httpx
import typer

from computility.cli.profile import load_profile
from computility.domain.errors import BadInput, ComputilityError


def download_command(
    task_id: Annotated[int, typer.Argument(help="The task's id.", min=1)],
    out: Annotated[Path | None, typer.Option("--out", help="Directory to unpack into "
                                             "(default: ./task-ID).")] = None,
) -> None:
    """Download a finished task's outputs and unpack them."""
    from computility.server.blobs import BlobStore
    from computility.wire.archives import BadArchive, BlobTooLarge

    profile = load_profile()
    dest = out or Path(f"task-{task_id}")
    if dest.exists() and any(dest.iterdir()):
        raise BadInput(f"--out: expected an empty or new directory, got '{dest}'")
    headers = {"Authorization": f"Bearer {profile.api_key}"}
    with tempfile.TemporaryDirectory() as tmp:
        store = BlobStore(Path(tmp))
        try:
            with httpx.stream("GET", f"{profile.server}/api/v1/tasks/{task_id}/outputs",
                              headers=headers, timeout=60) as r:
                if r.status_code != 200:
                    r.read()
                    detail = r.json().get("detail", r.text) if r.headers.get(
                        "content-type", "").endswith("json") else r.text
                    raise ComputilityError(f"task {task_id}: {detail}")
                digest, _ = store.put(r.iter_bytes())
        except httpx.HTTPError as error:
            raise ComputilityError(f"cannot reach {profile.server}: {error}") from None
        dest.mkdir(parents=True, exist_ok=True)
        try:
            names = store.unpack(digest, dest)
        except (BadArchive, BlobTooLarge) as error:
            raise ComputilityError(f"task {task_id}: outputs refused: {error}") from None
    print(f"{len(names)} entries in {dest}", file=sys.stderr)
