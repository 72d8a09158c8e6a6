"""The WebDAV storage against the HTTP doors of real XRootD servers: PROPFIND, Want-Digest, ranged GET, PUT."""

from __future__ import annotations

import inspect
import os
import time
import zlib

import pytest

from rucio_magic_ext.checksum import ADLER32, MD5
from rucio_magic_ext.storage import Entry, OutsideRoot
from rucio_magic_ext.storage.webdav import WebDAVStorage, split_dav_url
from rucio_magic_ext.storage.xroot import ChecksumMismatch, StorageUnavailable

NAME = "M1_20240101_05012345.001_D_CrabNebula-W0.40+035.root"


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


def no_streaming(*args, **kwargs):
    raise AssertionError("the file was read through the client")


@pytest.fixture
def at_orm(orm) -> WebDAVStorage:
    return WebDAVStorage(orm.http_url)


@pytest.fixture
def at_pic(pic) -> WebDAVStorage:
    return WebDAVStorage(pic.http_url)


def test_urls_give_transport_endpoint_and_path():
    assert split_dav_url("davs://door.pic.es/pnfs/magic/x") == ("https://door.pic.es:443", "/pnfs/magic/x")
    assert split_dav_url("https://door:8443//pnfs/x") == ("https://door:8443", "/pnfs/x")
    assert split_dav_url("http://h:1/a%20b+c") == ("http://h:1", "/a b+c")
    with pytest.raises(ValueError):
        split_dav_url("root://h//x")
    with pytest.raises(ValueError):
        split_dav_url("https://h/x?y")


def test_a_root_confines_every_location():
    storage = WebDAVStorage(root="davs://door.pic.es:2880/pnfs/magic")
    assert storage.root == "/pnfs/magic"
    assert storage.url_of("/pnfs/magic/M1/a b") == "https://door.pic.es:2880/pnfs/magic/M1/a%20b"
    assert storage.path_of("https://door.pic.es:2880/pnfs/magic/x") == "/pnfs/magic/x"
    for outside in ("/pnfs/other/x", "/pnfs/magic/../x", "davs://elsewhere:2880/pnfs/magic/x", "davs://door.pic.es/x"):
        with pytest.raises(OutsideRoot):
            storage.path_of(outside)
    native = WebDAVStorage(root="/pnfs/magic")
    assert native.path_of("davs://door:2880/pnfs/magic/x") == "/pnfs/magic/x"
    for outside in ("https://door:2881/pnfs/magic/x", "/pnfs/x"):
        with pytest.raises(OutsideRoot):
            native.path_of(outside)


def test_list_folders_and_files_with_sizes_and_mtimes(at_orm, orm, folder, write_on_disk):
    files = {
        f"{folder}/2024/01/01/{NAME}": b"a" * 10,
        f"{folder}/2024/01/01/with space+plus.root": b"b" * 20,
        f"{folder}/2024/01/02/sub/deep.raw": b"c" * 5,
        f"{folder}/top.txt": b"",
    }
    for path, data in files.items():
        write_on_disk(orm, path, data)
    (orm.data / folder.lstrip("/") / "empty").mkdir()

    listing = at_orm.list(f"{orm.http_url}{folder}")
    assert inspect.isgenerator(listing)
    entries = list(listing)
    assert sorted(entry.path for entry in entries) == sorted(files)
    for entry in entries:
        info = os.stat(orm.data / entry.path.lstrip("/"))
        assert (entry.size, entry.mtime) == (info.st_size, int(info.st_mtime))

    folders = list(at_orm.folders(f"{orm.http_url}{folder}"))
    expected = [folder, *(f"{folder}/{p}" for p in ("2024", "2024/01", "2024/01/01", "2024/01/02",
                                                      "2024/01/02/sub", "empty"))]
    assert [found.path for found in folders] == expected
    for found in folders:
        assert found.mtime == int(os.stat(orm.data / found.path.lstrip("/")).st_mtime)

    assert [entry.path for entry in at_orm.files(f"{folder}/2024/01/01")] == sorted(
        path for path in files if "/01/01/" in path)
    assert at_orm.files(f"{folder}/absent") == []
    assert list(at_orm.folders(f"{folder}/absent")) == []
    with pytest.raises(FileNotFoundError):
        next(at_orm.list(f"{folder}/absent"))


def test_a_new_file_appears_and_moves_its_folder_mtime(at_orm, orm, folder, write_on_disk):
    write_on_disk(orm, f"{folder}/night/first.root", b"1")
    before = {found.path: found.mtime for found in at_orm.folders(folder)}
    time.sleep(1.1)  # HTTP dates have whole seconds
    write_on_disk(orm, f"{folder}/night/second.root", b"22")
    after = {found.path: found.mtime for found in at_orm.folders(folder)}
    assert after[f"{folder}/night"] > before[f"{folder}/night"]
    assert [entry.path for entry in at_orm.files(f"{folder}/night")] == [
        f"{folder}/night/first.root", f"{folder}/night/second.root"]


def test_stat(at_orm, orm, folder, write_on_disk):
    path = write_on_disk(orm, f"{folder}/{NAME}", b"x" * 5)
    assert at_orm.stat(f"{orm.http_url}{folder}/{NAME}") == Entry(f"{folder}/{NAME}", 5, int(path.stat().st_mtime))
    with pytest.raises(FileNotFoundError):
        at_orm.stat(f"{folder}/absent")
    with pytest.raises(IsADirectoryError):
        at_orm.stat(folder)


def test_the_checksum_is_the_servers_digest_and_reads_no_byte_here(at_orm, orm, folder, write_on_disk, monkeypatch):
    data = os.urandom(9 * 1024 * 1024 + 3)
    write_on_disk(orm, f"{folder}/payload", data)
    assert WebDAVStorage.storage_side_checksum is True
    monkeypatch.setattr(at_orm, "open_read", no_streaming)

    proven = at_orm.checksum_detail(f"{folder}/payload")

    assert proven.values == {ADLER32: adler32(data)}
    assert proven.storage_side and proven.by_storage == {ADLER32} and proven.bytes_read == 0
    with pytest.raises(FileNotFoundError):
        at_orm.checksum(f"{folder}/absent")


def test_a_checksum_the_server_does_not_give_is_streamed(at_orm, orm, plain, start_server, folder, write_on_disk):
    data = os.urandom(3 * 1024 * 1024 + 7)
    md5_server = start_server("md5", checksum="md5")
    for server in (plain, orm, md5_server):
        write_on_disk(server, f"{folder}/payload", data)

    without = WebDAVStorage(plain.http_url).checksum_detail(f"{folder}/payload")
    assert without.values == {ADLER32: adler32(data)}
    assert not without.storage_side and without.streamed == {ADLER32} and without.bytes_read == len(data)

    other = WebDAVStorage(md5_server.http_url).checksum_detail(f"{folder}/payload", (ADLER32, MD5))
    assert other.values[ADLER32] == adler32(data)
    assert other.by_storage == {MD5} and other.streamed == {ADLER32}  # md5 from its base64 Digest

    mixed = WebDAVStorage(orm.http_url).checksum_detail(f"{folder}/payload", (ADLER32, MD5))
    assert mixed.by_storage == {ADLER32} and mixed.streamed == {MD5}
    assert mixed.values[MD5] == other.values[MD5]


def test_open_read_reads_ranges(at_orm, orm, folder, write_on_disk):
    data = os.urandom(100_000)
    write_on_disk(orm, f"{folder}/payload", data)
    with at_orm.open_read(f"{folder}/payload") as stream:
        buffer = bytearray(30_000)
        assert stream.readinto(buffer) == 30_000 and bytes(buffer) == data[:30_000]
        stream.seek(99_990)
        assert stream.read() == data[99_990:]
        assert stream.readinto(buffer) == 0
    with at_orm.open_read(f"{folder}/payload") as stream:
        assert stream.read() == data
    with pytest.raises(FileNotFoundError):
        at_orm.open_read(f"{folder}/absent")


def test_a_copy_between_the_servers_is_checked_at_the_destination(at_orm, at_pic, orm, pic, folder, write_on_disk):
    data = os.urandom(5 * 1024 * 1024 + 1)
    write_on_disk(orm, f"{folder}/{NAME}", data)
    seen = []

    result = at_pic.copy(f"{orm.http_url}{folder}/{NAME}", f"{pic.http_url}{folder}/a/b/{NAME}",
                         progress=seen.append, source_storage=at_orm)

    assert result.size == len(data) and result.checksums == {ADLER32: adler32(data)}
    assert (pic.data / folder.lstrip("/") / "a" / "b" / NAME).read_bytes() == data
    assert at_pic.checksum_detail(f"{folder}/a/b/{NAME}").storage_side
    assert seen[-1] == len(data)


def test_an_empty_file_is_copied(at_orm, at_pic, orm, pic, folder, write_on_disk):
    write_on_disk(orm, f"{folder}/empty", b"")
    assert at_pic.copy(f"{folder}/empty", f"{folder}/empty", source_storage=at_orm).checksums == {ADLER32: adler32(b"")}
    assert (pic.data / folder.lstrip("/") / "empty").read_bytes() == b""


def test_a_source_rotten_after_its_checksum_is_caught_by_the_copy(at_orm, at_pic, orm, pic, folder, write_on_disk,
                                                                    rot_on_disk):
    data = os.urandom(3 * 1024 * 1024)
    path = write_on_disk(orm, f"{folder}/{NAME}", data)
    assert at_orm.checksum(f"{folder}/{NAME}") == {ADLER32: adler32(data)}  # the server keeps it
    rot_on_disk(path)

    with pytest.raises(ChecksumMismatch, match="SOURCE"):
        at_pic.copy(f"{folder}/{NAME}", f"{folder}/copy/{NAME}", source_storage=at_orm)

    assert not (pic.data / folder.lstrip("/") / "copy" / NAME).exists()


def test_a_copy_never_clobbers_an_existing_file(at_orm, at_pic, orm, pic, folder, write_on_disk):
    write_on_disk(orm, f"{folder}/{NAME}", b"new")
    existing = write_on_disk(pic, f"{folder}/{NAME}", b"someone else's")
    with pytest.raises(FileExistsError):
        at_pic.copy(f"{folder}/{NAME}", f"{folder}/{NAME}", source_storage=at_orm)
    assert existing.read_bytes() == b"someone else's"


def test_a_failed_copy_leaves_no_file(at_orm, at_pic, orm, pic, folder, write_on_disk):
    write_on_disk(orm, f"{folder}/{NAME}", os.urandom(20 * 1024 * 1024))

    def abort(copied):
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        at_pic.copy(f"{folder}/{NAME}", f"{folder}/part", progress=abort, source_storage=at_orm)
    with pytest.raises(FileNotFoundError):
        at_pic.copy(f"{folder}/absent", f"{folder}/part", source_storage=at_orm)
    assert not (pic.data / folder.lstrip("/") / "part").exists()
    with pytest.raises(FileNotFoundError):
        at_pic.stat(f"{folder}/part")


def test_rename_replaces_and_remove_reports_absence(at_pic, pic, folder, write_on_disk):
    write_on_disk(pic, f"{folder}/.{NAME}.part", b"new bytes")
    write_on_disk(pic, f"{folder}/{NAME}", b"old")
    at_pic.rename(f"{folder}/.{NAME}.part", f"{pic.http_url}{folder}/{NAME}")
    assert (pic.data / folder.lstrip("/") / NAME).read_bytes() == b"new bytes"
    assert not (pic.data / folder.lstrip("/") / f".{NAME}.part").exists()
    at_pic.rename(f"{folder}/{NAME}", f"{folder}/elsewhere/{NAME}")
    assert (pic.data / folder.lstrip("/") / "elsewhere" / NAME).read_bytes() == b"new bytes"
    with pytest.raises(FileNotFoundError):
        at_pic.rename(f"{folder}/absent", f"{folder}/other")
    assert at_pic.remove(f"{folder}/elsewhere/{NAME}") is True
    assert at_pic.remove(f"{folder}/elsewhere/{NAME}") is False


def test_a_stopped_server_is_unavailable_not_a_missing_file(start_server, folder, write_on_disk):
    server = start_server("stopped-http")
    storage = WebDAVStorage(server.http_url)
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

    server.start()
    assert storage.stat(f"{folder}/{NAME}").size == 4
