"""Tar archives moved between users, the control plane and agents: packing and safe unpacking.

Shared by the blob store (users' workdirs, `computility download`) and the site agent (a task's
workdir in, its outputs back), so both sides apply exactly the same rules:

* `pack` is deterministic: sorted names, zeroed owners and times, normalised modes, so the same
  tree packs to the same bytes and the same digest.
* `extract` takes archives from users, so it uses ``filter="data"`` (`tarfile.data_filter`): no
  paths outside the destination, no links leading outside it, no device files, no set-uid bits.
  On top of it, it rejects absolute member names, names that climb out with ``..``, links whose
  target leaves the destination even lexically and members written through a link; every member
  is checked before anything is written, so a rejected archive writes nothing; and the members'
  total uncompressed size is checked first, so a small archive cannot fill the disk.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

# What a corrupt or truncated compressed stream raises besides `tarfile.TarError`.
_ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
)


class BlobTooLarge(Exception):
    """An upload, or an archive's unpacked contents, exceeds the store's limit of `limit` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"blob exceeds the limit of {limit} bytes")
        self.limit = limit


class BadArchive(Exception):
    """A blob is not a tar archive, or it has a member that may not be extracted."""




def extract(source: Path, dest: Path, limit_bytes: int) -> list[str]:
    """Extract the tar archive (any compression) at `source` into `dest`; return member names.

    Raises `BadArchive` when it is not a tar archive or any member is unsafe, and `BlobTooLarge`
    when the members add up to more than `limit_bytes`; in both cases nothing is written.
    """
    try:
        with tarfile.open(source, mode="r:*") as archive:
            members = archive.getmembers()
            total = sum(member.size for member in members if member.isreg())
            if total > limit_bytes:
                raise BlobTooLarge(limit_bytes)
            _check_members(members, dest)
            dest.mkdir(parents=True, exist_ok=True)
            archive.extractall(dest, members=members, filter="data")
    except _ARCHIVE_ERRORS as error:
        raise BadArchive(str(error)) from error
    return [member.name for member in members]


def pack(directory: Path, only: Sequence[str] | None = None) -> bytes:
    """A deterministic gzip tar of the contents of ``directory``, for uploading a workdir.

    Member names are relative to ``directory`` and sorted; owners, times and the gzip header
    are zeroed and modes normalised (0o755 for directories and executables, else 0o644), so
    the same tree packs to the same bytes and hence the same digest. Symbolic links are kept
    as links (unpacking rejects those that lead outside); sockets, FIFOs and devices are
    skipped.

    `only` (a task's ``outputs``) limits the archive to those paths relative to ``directory``,
    each a file or a folder; a missing one, or one that leads outside, is left out.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"not a directory: {directory}")
    found: dict[str, Path] = {}
    real_root = directory.resolve()
    for top in [directory] if only is None else [directory / p for p in only]:
        try:
            inside = top.resolve().is_relative_to(real_root)
        except OSError:
            inside = False
        if not inside or not top.exists():
            continue
        if top != directory:
            found[top.relative_to(directory).as_posix()] = top
            _parents(top, directory, found)
        if top.is_dir() and not top.is_symlink():
            for here, dirnames, filenames in os.walk(top):
                for name in (*dirnames, *filenames):
                    full = Path(here) / name
                    found[full.relative_to(directory).as_posix()] = full
    paths = sorted(found.items())

    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for arcname, full in paths:
            mode = full.lstat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                continue
            info = archive.gettarinfo(str(full), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isdir() or (info.isreg() and mode & stat.S_IXUSR):
                info.mode = 0o755
            else:
                info.mode = 0o644
            if info.isreg():
                with full.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    return buffer.getvalue()


def _parents(path: Path, root: Path, found: dict[str, Path]) -> None:
    for parent in path.relative_to(root).parents:
        if parent.as_posix() != ".":
            found[parent.as_posix()] = root / parent


def _check_members(members: list[tarfile.TarInfo], dest: Path) -> None:
    """Reject the archive if any member is unsafe, before anything is extracted.

    Runs `tarfile.data_filter` on every member up front (extraction runs it again, against the
    files as they then are), plus lexical checks that need no file system: absolute names, names
    or link targets that climb out of ``dest``, and members whose path goes through a link.
    """
    links: set[str] = set()
    for member in members:
        name = member.name
        if name.startswith(("/", "\\")) or posixpath.isabs(name) or os.path.isabs(name):
            raise BadArchive(f"member {name!r} has an absolute path")
        normal = posixpath.normpath(name)
        if normal == ".." or normal.startswith("../"):
            raise BadArchive(f"member {name!r} would be extracted outside the destination")
        parts = normal.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in links:
                raise BadArchive(f"member {name!r} would be written through a link")
        if member.issym() or member.islnk():
            if member.issym():
                target = posixpath.join(posixpath.dirname(normal), member.linkname)
            else:
                target = member.linkname
            target = posixpath.normpath(target)
            if posixpath.isabs(target) or target == ".." or target.startswith("../"):
                raise BadArchive(
                    f"member {name!r} links to {member.linkname!r}, outside the destination"
                )
            if member.issym():
                links.add(normal)
        tarfile.data_filter(member, str(dest))
