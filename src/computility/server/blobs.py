"""Content-addressed blob store: packed workdirs from users, task logs and outputs from agents.

Why it is built this way:

* **Content addressing.** A blob is stored under the SHA-256 of its bytes, at
  ``root/sha256/ab/cdef...`` (the first two hex characters fan the files out over subfolders).
  Identical uploads (the same workdir submitted with ten tasks) are stored once, a digest names
  exactly one content, and a blob never changes after it is written.
* **Atomic writes.** An upload streams into a temporary file under the same root, is hashed as it
  goes, fsynced, and renamed into place with `os.replace`; a crash or a rejected upload never
  leaves a partial file under a final name.
* **A size limit** (``limit_bytes``, 1 GiB by default) protects the disk: an upload is cut off as
  soon as it passes the limit, and unpacking checks the members' total uncompressed size first,
  so a small compressed archive cannot expand to fill the disk.
* **Safe unpacking.** Archives come from users, so extraction uses ``filter="data"``
  (`tarfile.data_filter`): no paths outside the destination, no links leading outside it, no
  device files, no set-uid bits. On top of it this module rejects absolute member names (the
  filter would quietly strip the leading ``/``), names that climb out with ``..``, links whose
  target leaves the destination even lexically, and members written through a link; every member
  is checked before anything is written, so a rejected archive writes nothing.

Retention: a blob is kept while any task that references it is not terminal, and for
`RETENTION_S` (7 days) after the last such task ended. The caller works out the referenced set
and calls `BlobStore.remove_unreferenced` with ``older_than_s=RETENTION_S``; the mtime check
there also protects a blob just uploaded for a task that is not recorded yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterable, Iterable
from pathlib import Path
from typing import IO

from computility.wire.archives import BadArchive, BlobTooLarge, extract, pack

RETENTION_S = 7 * 24 * 3600
"""Seconds a blob is kept after the last task that references it reached a terminal state."""

DEFAULT_LIMIT_BYTES = 1 << 30

_DIGEST = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
# Temporary files are left by crashed uploads only; a live upload touches its file on every chunk.
_STALE_TEMP_S = 3600.0


class _Upload:
    """One upload in progress: a temporary file under the store's root and a running hash."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        store.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-", suffix=".part")
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._temp = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._store.limit_bytes:
            raise BlobTooLarge(self._store.limit_bytes)
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> tuple[str, int]:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = self._hash.hexdigest()
        final = self._store.path(digest)
        if final.exists():
            # Already stored: the content is identical by construction. Touch it so that a
            # retention sweep racing this upload does not remove a blob that was just re-sent.
            self._temp.unlink()
            with contextlib.suppress(FileNotFoundError):
                os.utime(final)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._temp, final)
            _fsync_dir(final.parent)
        return digest, self.size

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


class BlobStore:
    """Blobs on local disk under ``root``, each named by the SHA-256 of its content."""

    def __init__(self, root: Path, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> None:
        if limit_bytes < 0:
            raise ValueError(f"limit_bytes must not be negative, got {limit_bytes}")
        self.root = Path(root)
        self.limit_bytes = limit_bytes

    @property
    def blob_dir(self) -> Path:
        return self.root / "sha256"

    @property
    def tmp_dir(self) -> Path:
        """Where uploads are written before they are renamed; on the same file system as blobs."""
        return self.root / "tmp"

    # -- writing ----------------------------------------------------------------------------

    def put(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store the concatenated chunks; return (hex SHA-256 digest, size in bytes).

        Raises `BlobTooLarge` as soon as the total passes ``limit_bytes``, leaving no file behind.
        """
        upload = _Upload(self)
        try:
            for chunk in chunks:
                upload.write(chunk)
            return upload.commit()
        except BaseException:
            upload.abort()
            raise

    async def put_async(self, chunks: AsyncIterable[bytes]) -> tuple[str, int]:
        """`put` for an asynchronous stream, such as a Starlette ``request.stream()``."""
        upload = _Upload(self)
        try:
            async for chunk in chunks:
                upload.write(chunk)
            return upload.commit()
        except BaseException:
            upload.abort()
            raise

    # -- reading ----------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        """Where the blob with this digest lives (it may not exist); ValueError on a bad digest."""
        if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
            raise ValueError(f"not a SHA-256 digest (64 lowercase hex characters): {digest!r}")
        return self.blob_dir / digest[:2] / digest[2:]

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        """The blob's size in bytes; FileNotFoundError when it is not stored."""
        return self.path(digest).stat().st_size

    # -- archives ---------------------------------------------------------------------------

    def unpack(self, digest: str, dest: Path) -> list[str]:
        """Extract the blob, a tar archive of any compression, into ``dest``; see `extract`."""
        source = self.path(digest)
        if not source.is_file():
            raise FileNotFoundError(f"no blob {digest}")
        try:
            return extract(source, Path(dest), self.limit_bytes)
        except BadArchive as error:
            raise BadArchive(f"blob {digest}: {error}") from error

    pack = staticmethod(pack)

    # -- retention --------------------------------------------------------------------------

    def remove_unreferenced(self, keep: set[str], older_than_s: float) -> int:
        """Delete blobs not in ``keep`` last modified over ``older_than_s`` ago; return how many.

        Also clears temporary files left by crashed uploads (not counted).
        """
        now = time.time()
        cutoff = now - older_than_s
        removed = 0
        if self.blob_dir.is_dir():
            for fan in sorted(self.blob_dir.iterdir()):
                if not fan.is_dir():
                    continue
                for blob in sorted(fan.iterdir()):
                    digest = fan.name + blob.name
                    if _DIGEST.fullmatch(digest) is None or digest in keep:
                        continue
                    try:
                        if blob.stat().st_mtime >= cutoff:
                            continue
                        blob.unlink()
                    except FileNotFoundError:
                        continue
                    removed += 1
                with contextlib.suppress(OSError):
                    fan.rmdir()  # only succeeds when the fan-out folder is now empty
        if self.tmp_dir.is_dir():
            stale = now - max(older_than_s, _STALE_TEMP_S)
            for temp in self.tmp_dir.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if temp.is_file() and temp.stat().st_mtime < stale:
                        temp.unlink()
        return removed

    def iter_blobs(self) -> Iterable[str]:
        """The digests of all stored blobs."""
        if not self.blob_dir.is_dir():
            return
        for fan in sorted(self.blob_dir.iterdir()):
            if fan.is_dir():
                for blob in sorted(fan.iterdir()):
                    digest = fan.name + blob.name
                    if _DIGEST.fullmatch(digest) is not None:
                        yield digest


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
