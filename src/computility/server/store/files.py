"""Uploaded workdirs and the logs and outputs agents send back, in the content-addressed store.

Ownership lives in the database (``uploads``: which tenant uploaded a digest; ``task_files``: a
task's stdout, stderr and outputs); the bytes live once in `BlobStore`, whoever uploaded them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from computility.server.auth import Identity
from computility.server.blobs import BlobStore
from computility.server.db import schema as db
from computility.server.plane import ControlPlane
from computility.server.problems import not_found

FILE_KINDS = ("stdout", "stderr", "outputs")


def blob_store(plane: ControlPlane) -> BlobStore:
    return BlobStore(plane.settings.data_dir / "blobs", plane.settings.blob_limit_bytes)


async def upload(plane: ControlPlane, who: Identity, body: AsyncIterable[bytes]) -> tuple[str, int]:
    digest, size = await blob_store(plane).put_async(body)
    with plane.write() as conn:
        known = conn.execute(select(db.uploads.c.digest).where(
            db.uploads.c.tenant_id == who.tenant, db.uploads.c.digest == digest)).first()
        if known is None:
            conn.execute(insert(db.uploads).values(tenant_id=who.tenant, digest=digest,
                                                   size=size, created_at=time.time()))
    return digest, size


def owns_upload(plane: ControlPlane, tenant: str, digest: str) -> bool:
    with plane.engine.connect() as conn:
        return conn.execute(select(db.uploads.c.digest).where(
            db.uploads.c.tenant_id == tenant, db.uploads.c.digest == digest)).first() is not None


def attach(
    plane: ControlPlane, task_id: int, attempt_id: int, kind: str, digest: str, size: int
) -> None:
    """Make `digest` the task's `kind` file (the latest attempt's wins).

    One upsert, not a delete and an insert: two uploads of the same file at once (an agent's
    retry racing its first try after a cut) would otherwise both delete nothing and both insert,
    and the second fail on the key. An earlier attempt's late upload never replaces a later
    attempt's file."""
    with plane.write() as conn:
        _upsert_file(conn, {"task_id": task_id, "kind": kind, "digest": digest, "size": size,
                            "attempt_id": attempt_id, "created_at": time.time()})


def _upsert_file(conn: Connection, values: dict[str, object]) -> None:
    table = db.task_files
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[table.c.task_id, table.c.kind],
        set_={name: stmt.excluded[name] for name in ("digest", "size", "attempt_id",
                                                      "created_at")},
        where=table.c.attempt_id <= stmt.excluded.attempt_id))


def log_of(plane: ControlPlane, task_id: int, kind: str) -> tuple[Path | None, int | None]:
    """The task's `kind` file and the attempt it is from (a new attempt's log replaces the
    last one's, so a reader following it must know when to start again)."""
    with plane.reads.connect() as conn:
        row = conn.execute(select(db.task_files.c.digest, db.task_files.c.attempt_id).where(
            db.task_files.c.task_id == task_id, db.task_files.c.kind == kind)).first()
    return (None, None) if row is None else _stored(plane, row[0], row[1])


def _stored(plane: ControlPlane, digest: str | None, attempt: int | None,
            ) -> tuple[Path | None, int | None]:
    if digest is None or attempt is None:
        return None, None
    path = blob_store(plane).path(digest)
    return (path, int(attempt)) if path.exists() else (None, None)


def _visible_file(tenant: bool) -> Any:
    """A task's file of one kind, joined to the task so that who may see it is checked in the
    same statement: one round trip for the API's log reads."""
    t, f = db.tasks.c, db.task_files.c
    query = select(f.digest, f.attempt_id).select_from(db.tasks.outerjoin(
        db.task_files, and_(f.task_id == t.id, f.kind == bindparam("kind"))),
    ).where(t.id == bindparam("task_id"))
    return query.where(t.tenant_id == bindparam("tenant")) if tenant else query


_VISIBLE_FILE = {tenant: _visible_file(tenant) for tenant in (True, False)}


async def visible_log(plane: ControlPlane, who: Identity, task_id: int, kind: str,
                      ) -> tuple[Path | None, int | None]:
    """`log_of` for a request, 404 unless `who` may see the task."""
    params: dict[str, Any] = {"task_id": task_id, "kind": kind}
    if not who.operator:
        params["tenant"] = who.tenant
    row = await plane.one(_VISIBLE_FILE[not who.operator], params)
    if row is None:
        raise not_found("task", task_id)
    return _stored(plane, row["digest"], row["attempt_id"])


def file_of(plane: ControlPlane, task_id: int, kind: str) -> Path | None:
    with plane.engine.connect() as conn:
        digest = conn.execute(select(db.task_files.c.digest).where(
            db.task_files.c.task_id == task_id, db.task_files.c.kind == kind)).scalar()
    if digest is None:
        return None
    path = blob_store(plane).path(digest)
    return path if path.exists() else None
