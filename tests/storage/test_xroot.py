"""The root:// storage against real XRootD servers: real bytes, server-side checksums, third-party copies."""

from __future__ import annotations

import inspect
import os
import time
import zlib

import pytest

pytest.importorskip(
    "XRootD.client", reason="root:// storage needs XRootD's Python client: pip install xrootd", exc_type=ImportError
)

from rucio_magic_ext.checksum import ADLER32, MD5
from rucio_magic_ext.storage import Entry, OutsideRoot
from rucio_magic_ext.storage.xroot import (
    ChecksumMismatch,
    StorageUnavailable,
    XRootDStorage,
    split_root_url,
)

NAME = "M1_20240101_05012345.001_D_CrabNebula-W0.40+035.root"


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


def no_streaming(*args, **kwargs):
    raise AssertionError("the file was read through the client")


@pytest.fixture
def at_orm(orm) -> XRootDStorage:
    return XRootDStorage(orm.root_url)


@pytest.fixture
def at_pic(pic) -> XRootDStorage:
    return XRootDStorage(pic.root_url)


def test_urls_give_endpoint_and_absolute_path():
    assert split_root_url("root://host//data/orm/x") == ("root://host:1094", "/data/orm/x")
    assert split_root_url("root://host:2094/data/x") == ("root://host:2094", "/data/x")
    with pytest.raises(ValueError):
        split_root_url("davs://host//data/x")
    with pytest.raises(ValueError):
        split_root_url("root://host//data/x?cks.type=md5")


def test_native_paths_need_a_known_server():
    storage = XRootDStorage()
    with pytest.raises(ValueError, match="no server known"):
        storage.stat("/data/x")
    assert storage.path_of("root://h:1//data/./a//b") == "/data/a/b"
    assert storage.path_of("/data/a") == "/data/a"  # the first URL named the server


def test_a_root_confines_every_location():
    storage = XRootDStorage(root="root://h:1094//data/orm")
    assert storage.root == "/data/orm"
    assert storage.path_of("/data/orm/M1/x") == "/data/orm/M1/x"
    assert storage.url_of("/data/orm/M1/x") == "root://h:1094//data/orm/M1/x"
    for outside in ("/data/pic/x", "/data/orm/../pic/x", "root://h:1094//etc/passwd", "root://other:1094//data/orm/x"):
        with pytest.raises(OutsideRoot):
            storage.path_of(outside)
    native = XRootDStorage(root="/data/orm")  # as get_storage(url, root=native path) makes it
    assert native.path_of("root://h:1094//data/orm/x") == "/data/orm/x"
    for outside in ("root://other:1094//data/orm/x", "/data/pic/x"):
        with pytest.raises(OutsideRoot):
            native.path_of(outside)


def test_list_folders_and_files_with_sizes_and_mtimes(at_orm, orm, folder, write_on_disk):
    files = {
        f"{folder}/2024/01/01/{NAME}": b"a" * 10,
        f"{folder}/2024/01/01/M2_20240101_05012345.001_D_CrabNebula-W0.40+035.root": b"b" * 20,
        f"{folder}/2024/01/02/sub/deep.raw": b"c" * 5,
        f"{folder}/top.txt": b"",
    }
    for path, data in files.items():
        write_on_disk(orm, path, data)
    (orm.data / folder.lstrip("/") / "empty").mkdir()

    listing = at_orm.list(f"{orm.root_url}/{folder}")
    assert inspect.isgenerator(listing)
    entries = list(listing)
    assert sorted(entry.path for entry in entries) == sorted(files)
    for entry in entries:
        info = os.stat(orm.data / entry.path.lstrip("/"))
        assert (entry.size, entry.mtime) == (info.st_size, int(info.st_mtime))

    folders = list(at_orm.folders(folder))
    expected = [folder, *(f"{folder}/{p}" for p in ("2024", "2024/01", "2024/01/01", "2024/01/02",
                                                      "2024/01/02/sub", "empty"))]
    assert [found.path for found in folders] == expected
    for found in folders:
        assert found.mtime == int(os.stat(orm.data / found.path.lstrip("/")).st_mtime)

    assert [entry.path for entry in at_orm.files(f"{folder}/2024/01/01")] == sorted(
        path for path in files if "/01/01/" in path)
    assert at_orm.files(f"{folder}/2024") == []
    assert at_orm.files(f"{folder}/absent") == []
    assert list(at_orm.folders(f"{folder}/absent")) == []
    with pytest.raises(FileNotFoundError):
        next(at_orm.list(f"{folder}/absent"))


def test_a_new_file_appears_and_moves_its_folder_mtime(at_orm, orm, folder, write_on_disk):
    write_on_disk(orm, f"{folder}/night/first.root", b"1")
    before = {found.path: found.mtime for found in at_orm.folders(folder)}
    time.sleep(1.1)  # XRootD gives mtimes in whole seconds
    at_orm_new = f"{orm.root_url}/{folder}/night/second.root"
    with at_orm.open_read(f"{folder}/night/first.root") as stream:
        assert stream.read() == b"1"
    write_on_disk(orm, f"{folder}/night/second.root", b"22")
    after = {found.path: found.mtime for found in at_orm.folders(folder)}
    assert after[f"{folder}/night"] > before[f"{folder}/night"]
    assert after[folder] == before[folder]
    assert [entry.path for entry in at_orm.files(f"{folder}/night")] == [
        f"{folder}/night/first.root", f"{folder}/night/second.root"]
    assert at_orm.stat(at_orm_new).size == 2


def test_stat(at_orm, orm, folder, write_on_disk):
    path = write_on_disk(orm, f"{folder}/{NAME}", b"x" * 5)
    assert at_orm.stat(f"{orm.root_url}/{folder}/{NAME}") == Entry(f"{folder}/{NAME}", 5, int(path.stat().st_mtime))
    with pytest.raises(FileNotFoundError):
        at_orm.stat(f"{folder}/absent")
    with pytest.raises(IsADirectoryError):
        at_orm.stat(folder)


def test_the_checksum_is_the_servers_and_reads_no_byte_here(at_orm, orm, folder, write_on_disk, monkeypatch):
    data = os.urandom(9 * 1024 * 1024 + 3)
    write_on_disk(orm, f"{folder}/payload", data)
    assert XRootDStorage.storage_side_checksum is True
    monkeypatch.setattr(at_orm, "open_read", no_streaming)

    proven = at_orm.checksum_detail(f"{folder}/payload")

    assert proven.values == {ADLER32: adler32(data)}
    assert proven.storage_side and proven.by_storage == {ADLER32} and proven.bytes_read == 0
    assert at_orm.checksum(f"{orm.root_url}/{folder}/payload") == {ADLER32: adler32(data)}
    with pytest.raises(FileNotFoundError):
        at_orm.checksum(f"{folder}/absent")


def test_a_checksum_the_server_does_not_give_is_streamed(at_orm, orm, plain, folder, write_on_disk):
    data = os.urandom(3 * 1024 * 1024 + 7)
    write_on_disk(plain, f"{folder}/payload", data)
    write_on_disk(orm, f"{folder}/payload", data)

    without = XRootDStorage(plain.root_url).checksum_detail(f"{folder}/payload")
    assert without.values == {ADLER32: adler32(data)}
    assert not without.storage_side and without.streamed == {ADLER32} and without.bytes_read == len(data)
    assert "no checksum" in without.notes[0]

    # orm answers adler32 only: md5 is computed here, adler32 still comes from the server.
    mixed = at_orm.checksum_detail(f"{folder}/payload", (ADLER32, MD5))
    assert mixed.values[ADLER32] == adler32(data)
    assert mixed.by_storage == {ADLER32} and mixed.streamed == {MD5}
    assert len(mixed.values[MD5]) == 32


def test_open_read_supports_readinto_and_seek(at_orm, orm, folder, write_on_disk):
    data = os.urandom(100_000)
    write_on_disk(orm, f"{folder}/payload", data)
    with at_orm.open_read(f"{folder}/payload") as stream:
        buffer = bytearray(30_000)
        assert stream.readinto(buffer) == 30_000 and bytes(buffer) == data[:30_000]
        stream.seek(99_990)
        assert stream.read() == data[99_990:]
        assert stream.readinto(buffer) == 0
    with pytest.raises(FileNotFoundError):
        at_orm.open_read(f"{folder}/absent")


def test_third_party_copy_checked_at_the_destination(at_orm, at_pic, orm, pic, folder, write_on_disk, monkeypatch):
    data = os.urandom(5 * 1024 * 1024 + 1)
    write_on_disk(orm, f"{folder}/{NAME}", data)
    monkeypatch.setattr(at_orm, "open_read", no_streaming)  # server to server: no byte through here
    seen = []

    result = at_pic.copy(f"{orm.root_url}/{folder}/{NAME}", f"{pic.root_url}/{folder}/copy/{NAME}",
                         progress=seen.append, source_storage=at_orm)

    assert result.size == len(data) and result.checksums == {ADLER32: adler32(data)}
    assert (pic.data / folder.lstrip("/") / "copy" / NAME).read_bytes() == data
    proven = at_pic.checksum_detail(f"{folder}/copy/{NAME}")
    assert proven.values == {ADLER32: adler32(data)} and proven.storage_side
    assert seen and seen[-1] == len(data)


def test_a_destination_refusing_third_party_copy_gets_a_streamed_one(at_orm, orm, plain, folder, write_on_disk):
    data = os.urandom(2 * 1024 * 1024 + 5)
    write_on_disk(orm, f"{folder}/{NAME}", data)
    at_plain = XRootDStorage(plain.root_url)

    result = at_plain.copy(f"{folder}/{NAME}", f"{folder}/copy/{NAME}", source_storage=at_orm)

    assert result.checksums == {ADLER32: adler32(data)}
    assert (plain.data / folder.lstrip("/") / "copy" / NAME).read_bytes() == data


@pytest.mark.parametrize("tpc", [True, False], ids=["third-party", "streamed"])
def test_a_source_rotten_after_its_checksum_is_caught_by_the_copy(
    orm, pic, folder, write_on_disk, rot_on_disk, tpc
):
    at_orm, at_pic = XRootDStorage(orm.root_url), XRootDStorage(pic.root_url, tpc=tpc)
    data = os.urandom(3 * 1024 * 1024)
    path = write_on_disk(orm, f"{folder}/{NAME}", data)
    assert at_orm.checksum(f"{folder}/{NAME}") == {ADLER32: adler32(data)}  # the server keeps it
    rot_on_disk(path)

    with pytest.raises(ChecksumMismatch, match="checksum mismatch"):
        at_pic.copy(f"{folder}/{NAME}", f"{folder}/copy/{NAME}", source_storage=at_orm)

    assert not (pic.data / folder.lstrip("/") / "copy" / NAME).exists()


def test_a_copy_corrupted_afterwards_no_longer_has_the_sources_checksum(at_orm, at_pic, orm, pic, folder,
                                                                        write_on_disk):
    data = os.urandom(1024 * 1024)
    write_on_disk(orm, f"{folder}/{NAME}", data)
    result = at_pic.copy(f"{folder}/{NAME}", f"{folder}/{NAME}", source_storage=at_orm)
    copy = pic.data / folder.lstrip("/") / NAME
    time.sleep(1.1)
    with open(copy, "r+b") as handle:  # changed on disk: a new mtime, so the server computes afresh
        handle.seek(10)
        handle.write(b"\0\0\0\0")
    assert at_pic.checksum(f"{folder}/{NAME}") != result.checksums


def test_a_copy_never_clobbers_an_existing_file(at_orm, at_pic, orm, pic, folder, write_on_disk):
    write_on_disk(orm, f"{folder}/{NAME}", b"new")
    existing = write_on_disk(pic, f"{folder}/{NAME}", b"someone else's")
    with pytest.raises(FileExistsError):
        at_pic.copy(f"{folder}/{NAME}", f"{folder}/{NAME}", source_storage=at_orm)
    assert existing.read_bytes() == b"someone else's"


@pytest.mark.parametrize("tpc", [True, False], ids=["third-party", "streamed"])
def test_a_failed_copy_leaves_no_file(orm, pic, folder, write_on_disk, tpc):
    at_orm, at_pic = XRootDStorage(orm.root_url), XRootDStorage(pic.root_url, tpc=tpc)
    write_on_disk(orm, f"{folder}/{NAME}", os.urandom(4 * 1024 * 1024))

    def abort(copied):
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        at_pic.copy(f"{folder}/{NAME}", f"{folder}/part", progress=abort, source_storage=at_orm)
    with pytest.raises(FileNotFoundError):
        at_pic.copy(f"{folder}/absent", f"{folder}/part", source_storage=at_orm)
    assert not (pic.data / folder.lstrip("/") / "part").exists()


def test_rename_replaces_and_remove_reports_absence(at_pic, pic, folder, write_on_disk):
    write_on_disk(pic, f"{folder}/.{NAME}.part", b"new bytes")
    write_on_disk(pic, f"{folder}/{NAME}", b"old")
    at_pic.rename(f"{folder}/.{NAME}.part", f"{pic.root_url}/{folder}/{NAME}")
    assert (pic.data / folder.lstrip("/") / NAME).read_bytes() == b"new bytes"
    assert not (pic.data / folder.lstrip("/") / f".{NAME}.part").exists()
    with pytest.raises(FileNotFoundError):
        at_pic.rename(f"{folder}/absent", f"{folder}/other")
    assert at_pic.remove(f"{folder}/{NAME}") is True
    assert at_pic.remove(f"{folder}/{NAME}") is False


def test_a_stopped_server_is_unavailable_not_a_missing_file(start_server, folder, write_on_disk):
    server = start_server("stopped")
    storage = XRootDStorage(server.root_url)
    write_on_disk(server, f"{folder}/{NAME}", b"data")
    assert storage.stat(f"{folder}/{NAME}").size == 4

    server.stop()
    for operation in (
        lambda: storage.stat(f"{folder}/{NAME}"),
        lambda: storage.checksum(f"{folder}/{NAME}"),
        lambda: storage.files(folder),
        lambda: list(storage.list(folder)),
        lambda: storage.open_read(f"{folder}/{NAME}"),
        lambda: storage.remove(f"{folder}/{NAME}"),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            operation()
        assert not isinstance(caught.value, FileNotFoundError)
        assert isinstance(caught.value, OSError)

    server.start()
    deadline = time.monotonic() + 15
    while True:  # the client tries a failed server again after a few seconds
        try:
            assert storage.stat(f"{folder}/{NAME}").size == 4
            break
        except StorageUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
