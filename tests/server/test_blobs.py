"""The blob store: uploads are content-addressed, size-limited and atomic; unpacking is safe."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import pytest

from computility.server.blobs import RETENTION_S, BlobStore
from computility.wire.archives import BadArchive, BlobTooLarge


def all_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


WriteMode = Literal["w", "w:gz", "w:bz2", "w:xz"]


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None], mode: WriteMode = "w:gz") -> bytes:
    """A tar archive built member by member, so that tests can write what a real tool would not."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for info, data in members:
            if data is None:
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def file_member(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def symlink_member(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", limit_bytes=64 * 1024)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "dest"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


# -- put --------------------------------------------------------------------------------------


def test_put_returns_the_sha256_and_size_and_stores_the_bytes_under_the_digest(
    store: BlobStore,
) -> None:
    digest, size = store.put([b"hello ", b"world"])

    assert digest == hashlib.sha256(b"hello world").hexdigest()
    assert size == 11
    assert store.path(digest) == store.root / "sha256" / digest[:2] / digest[2:]
    assert store.path(digest).read_bytes() == b"hello world"
    assert store.exists(digest)
    assert store.size(digest) == 11


def test_identical_content_is_stored_once(store: BlobStore) -> None:
    first = store.put([b"same bytes"])
    second = store.put([b"same ", b"bytes"])

    assert first == second
    assert all_files(store.root) == [store.path(first[0])]


def test_an_empty_upload_is_a_blob_too(store: BlobStore) -> None:
    digest, size = store.put([])

    assert (digest, size) == (hashlib.sha256(b"").hexdigest(), 0)
    assert store.exists(digest)


def test_content_up_to_the_limit_is_accepted(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, limit_bytes=10)

    assert store.put([b"x" * 10])[1] == 10


def test_exceeding_the_limit_raises_and_leaves_no_file_behind(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", limit_bytes=10)

    with pytest.raises(BlobTooLarge) as raised:
        store.put([b"x" * 6, b"x" * 6])

    assert raised.value.limit == 10
    assert all_files(tmp_path) == []  # neither a final blob nor a temporary file


def test_an_upload_that_fails_midway_leaves_no_file_behind(store: BlobStore) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        store.put(chunks())

    assert all_files(store.root) == []


def test_put_async_stores_a_request_stream(store: BlobStore) -> None:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in (b"log line 1\n", b"log line 2\n"):
            yield chunk

    digest, size = asyncio.run(store.put_async(stream()))

    assert digest == hashlib.sha256(b"log line 1\nlog line 2\n").hexdigest()
    assert size == 22
    assert store.path(digest).read_bytes() == b"log line 1\nlog line 2\n"


def test_put_async_over_the_limit_raises_and_leaves_no_file_behind(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", limit_bytes=4)

    async def stream() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    with pytest.raises(BlobTooLarge):
        asyncio.run(store.put_async(stream()))

    assert all_files(tmp_path) == []


# -- digests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "abc",
        "A" * 64,  # upper case
        "g" * 64,  # not hex
        "a" * 63,
        "a" * 65,
        "../" + "a" * 61,
        "a" * 64 + "\n",
    ],
)
def test_path_rejects_anything_but_64_lowercase_hex_characters(
    store: BlobStore, digest: str
) -> None:
    with pytest.raises(ValueError):
        store.path(digest)
    with pytest.raises(ValueError):
        store.exists(digest)


def test_a_missing_blob_does_not_exist(store: BlobStore) -> None:
    digest = "0" * 64

    assert not store.exists(digest)
    with pytest.raises(FileNotFoundError):
        store.size(digest)


# -- pack and unpack --------------------------------------------------------------------------


def make_tree(root: Path) -> None:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "train.py").write_text("print('train')\n")
    (root / "src" / "pkg" / "__init__.py").write_text("")
    (root / "src" / "pkg" / "model.bin").write_bytes(bytes(range(256)) * 10)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)


def test_pack_and_unpack_round_trip_a_directory_tree(
    tmp_path: Path, store: BlobStore, dest: Path
) -> None:
    workdir = tmp_path / "workdir"
    make_tree(workdir)

    digest, _ = store.put([BlobStore.pack(workdir)])
    names = store.unpack(digest, dest)

    assert sorted(names) == [
        "empty",
        "run.sh",
        "src",
        "src/pkg",
        "src/pkg/__init__.py",
        "src/pkg/model.bin",
        "train.py",
    ]
    assert (dest / "empty").is_dir()
    for original in all_files(workdir):
        copy = dest / original.relative_to(workdir)
        assert copy.read_bytes() == original.read_bytes()
    assert os.access(dest / "run.sh", os.X_OK)
    assert not os.access(dest / "train.py", os.X_OK)


def test_pack_is_deterministic_with_sorted_relative_names_and_no_owner_or_time(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "workdir"
    make_tree(workdir)
    first = BlobStore.pack(workdir)
    os.utime(workdir / "train.py", (1e9, 1e9))  # a different mtime does not change the pack

    assert BlobStore.pack(workdir) == first
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as archive:
        members = archive.getmembers()
    names = [member.name for member in members]
    assert names == sorted(names)
    assert all(not name.startswith(("/", "./")) for name in names)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}


def test_unpack_reads_any_compression(store: BlobStore, dest: Path) -> None:
    modes: tuple[WriteMode, ...] = ("w", "w:gz", "w:bz2", "w:xz")
    for mode in modes:
        name = f"{mode.replace(':', '-')}.txt"
        digest, _ = store.put([tar_bytes((file_member(name), b"hi"), mode=mode)])

        assert store.unpack(digest, dest) == [name]
        assert (dest / name).read_bytes() == b"hi"


@pytest.mark.parametrize(
    "members",
    [
        pytest.param([(file_member("../evil"), b"pwned")], id="dot-dot"),
        pytest.param([(file_member("ok/../../evil"), b"pwned")], id="dot-dot-inside"),
        pytest.param([(file_member("{outside}/evil"), b"pwned")], id="absolute-path"),
        pytest.param([(symlink_member("link", "{outside}"), None)], id="absolute-symlink"),
        pytest.param([(symlink_member("link", "../outside"), None)], id="relative-symlink-out"),
        pytest.param(
            [
                (symlink_member("link", "../outside"), None),
                (file_member("link/evil"), b"pwned"),
            ],
            id="write-through-symlink",
        ),
        pytest.param(
            [
                (symlink_member("here", "."), None),
                (file_member("here/evil"), b"pwned"),
            ],
            id="write-through-inner-symlink",
        ),
    ],
)
def test_unpack_rejects_members_that_escape_and_writes_nothing(
    tmp_path: Path,
    store: BlobStore,
    dest: Path,
    outside: Path,
    members: list[tuple[tarfile.TarInfo, bytes | None]],
) -> None:
    harmless = (file_member("readme.txt"), b"I come first")
    for info, _ in members:
        info.name = info.name.format(outside=outside)
        info.linkname = info.linkname.format(outside=outside)
    digest, _ = store.put([tar_bytes(harmless, *members)])

    with pytest.raises(BadArchive):
        store.unpack(digest, dest)

    assert list(outside.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    assert not dest.exists() or list(dest.iterdir()) == []  # not even the harmless member


def test_unpack_rejects_device_files(store: BlobStore, dest: Path) -> None:
    device = tarfile.TarInfo("null")
    device.type = tarfile.CHRTYPE
    digest, _ = store.put([tar_bytes((device, None))])

    with pytest.raises(BadArchive):
        store.unpack(digest, dest)


def test_unpack_allows_links_that_stay_inside(store: BlobStore, dest: Path) -> None:
    digest, _ = store.put(
        [
            tar_bytes(
                (file_member("data/real.txt"), b"content"),
                (symlink_member("data/alias.txt", "real.txt"), None),
            )
        ]
    )

    store.unpack(digest, dest)

    assert (dest / "data" / "alias.txt").is_symlink()
    assert (dest / "data" / "alias.txt").read_bytes() == b"content"


@pytest.mark.parametrize(
    "content", [b"not an archive at all", b"\x1f\x8b\x08\x00garbage after a gzip magic"]
)
def test_a_blob_that_is_not_a_tar_archive_raises_bad_archive(
    store: BlobStore, dest: Path, content: bytes
) -> None:
    digest, _ = store.put([content])

    with pytest.raises(BadArchive):
        store.unpack(digest, dest)


def test_an_archive_that_unpacks_past_the_limit_raises_and_writes_nothing(
    tmp_path: Path, dest: Path
) -> None:
    store = BlobStore(tmp_path / "blobs", limit_bytes=10_000)
    bomb = tar_bytes((file_member("a"), bytes(6_000)), (file_member("b"), bytes(6_000)))
    digest, _ = store.put([bomb])  # compressed, it is well under the limit

    with pytest.raises(BlobTooLarge):
        store.unpack(digest, dest)

    assert not dest.exists()


# -- retention --------------------------------------------------------------------------------


def test_remove_unreferenced_deletes_only_old_unreferenced_blobs(store: BlobStore) -> None:
    old_kept, _ = store.put([b"old, still referenced"])
    old_dropped, _ = store.put([b"old, unreferenced"])
    new_unreferenced, _ = store.put([b"new, unreferenced"])
    long_ago = time.time() - RETENTION_S - 60
    for digest in (old_kept, old_dropped):
        os.utime(store.path(digest), (long_ago, long_ago))

    removed = store.remove_unreferenced(keep={old_kept}, older_than_s=RETENTION_S)

    assert removed == 1
    assert not store.exists(old_dropped)
    assert store.exists(old_kept)
    assert store.exists(new_unreferenced)


def test_uploading_an_existing_blob_again_restarts_its_retention_clock(store: BlobStore) -> None:
    digest, _ = store.put([b"resubmitted workdir"])
    long_ago = time.time() - RETENTION_S - 60
    os.utime(store.path(digest), (long_ago, long_ago))

    store.put([b"resubmitted workdir"])

    assert store.remove_unreferenced(keep=set(), older_than_s=RETENTION_S) == 0
    assert store.exists(digest)


def test_retention_is_seven_days() -> None:
    assert RETENTION_S == 7 * 24 * 3600
