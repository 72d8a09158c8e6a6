"""What every storage promises, against each of them: posix, and root:// and davs:// on real XRootD servers.

Real bytes on real disks: every test writes its files straight into the storage's disk (as the DAQ writes at the
observatory) and ends by reading the disk back. A promise that only servers make (a checksum kept by the server,
an answer when the server is down) is parametrised over the servers alone.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import time
import zlib

import pytest

from rucio_magic_ext.checksum import ADLER32, MD5
from rucio_magic_ext.storage import ChecksumMismatch, Entry, OutsideRoot, StorageUnavailable
from rucio_magic_ext.storage.server import ServerStorage
from rucio_magic_ext.storage.webdav import WebDAVStorage

NAME = "M1_20240101_05012345.001_D_CrabNebula-W0.40+035.root"
SERVERS = ["root", "davs"]


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


def no_streaming(*args, **kwargs):
    raise AssertionError("the file was read through the client")


def test_list_folders_and_files_with_sizes_and_mtimes(orm_place):
    files = {
        f"2024/01/01/{NAME}": b"a" * 10,
        "2024/01/01/M2_20240101_05012345.001_D_CrabNebula-W0.40+035.root": b"b" * 20,
        "2024/01/01/with space+plus.root": b"b" * 20,
        "2024/01/02/sub/deep.raw": b"c" * 5,
        "top.txt": b"",
    }
    for path, data in files.items():
        orm_place.write(path, data)
    orm_place.disk("empty").mkdir()
    storage = orm_place.storage()

    listing = storage.list(orm_place.url())
    assert inspect.isgenerator(listing)
    entries = list(listing)
    assert sorted(entry.path for entry in entries) == sorted(orm_place.path(path) for path in files)
    for entry in entries:
        relative = entry.path.removeprefix(orm_place.path() + "/")
        assert (entry.size, entry.mtime) == (len(files[relative]), orm_place.mtime(relative))

    folders = list(storage.folders(orm_place.url()))
    expected = ["", "2024", "2024/01", "2024/01/01", "2024/01/02", "2024/01/02/sub", "empty"]
    assert [found.path for found in folders] == [orm_place.path(path) for path in expected]
    for found in folders:
        assert found.mtime == orm_place.mtime(found.path.removeprefix(orm_place.path()))

    assert [entry.path for entry in storage.files(orm_place.path("2024/01/01"))] == sorted(
        orm_place.path(path) for path in files if "/01/01/" in path)
    assert storage.files(orm_place.path("2024")) == []
    assert storage.files(orm_place.path("absent")) == []
    assert list(storage.folders(orm_place.path("absent"))) == []
    with pytest.raises(FileNotFoundError):
        next(storage.list(orm_place.path("absent")))


def test_a_new_file_appears_and_moves_its_folder_mtime(orm_place):
    orm_place.write("night/first.root", b"1")
    storage = orm_place.storage()
    before = {found.path: found.mtime for found in storage.folders(orm_place.path())}
    time.sleep(1.1)  # XRootD and HTTP dates give mtimes in whole seconds
    with storage.open_read(orm_place.path("night/first.root")) as stream:
        assert stream.read() == b"1"
    orm_place.write("night/second.root", b"22")
    after = {found.path: found.mtime for found in storage.folders(orm_place.path())}
    assert after[orm_place.path("night")] > before[orm_place.path("night")]
    assert after[orm_place.path()] == before[orm_place.path()]
    assert [entry.path for entry in storage.files(orm_place.path("night"))] == [
        orm_place.path("night/first.root"), orm_place.path("night/second.root")]
    assert storage.stat(orm_place.url("night/second.root")).size == 2


def test_stat(orm_place):
    orm_place.write(NAME, b"x" * 5)
    storage = orm_place.storage()
    assert storage.stat(orm_place.url(NAME)) == Entry(orm_place.path(NAME), 5, orm_place.mtime(NAME))
    with pytest.raises(FileNotFoundError):
        storage.stat(orm_place.path("absent"))
    with pytest.raises(IsADirectoryError):
        storage.stat(orm_place.path())


def test_a_checksum_says_how_it_was_proven(orm_place, monkeypatch):
    data = os.urandom(9 * 1024 * 1024 + 3)
    orm_place.write("payload", data)
    storage = orm_place.storage()
    assert storage.storage_side_checksum is orm_place.computes_checksums
    if orm_place.computes_checksums:
        monkeypatch.setattr(storage, "open_read", no_streaming)

    proven = storage.checksum_detail(orm_place.path("payload"))

    assert proven.values == {ADLER32: adler32(data)}
    if orm_place.computes_checksums:  # the server's: no byte read here
        assert proven.storage_side and proven.by_storage == {ADLER32} and proven.bytes_read == 0
        assert proven.how(ADLER32) == f"by the {orm_place.scheme}:// server"
    else:
        assert proven.streamed == {ADLER32} and proven.bytes_read == len(data) and not proven.by_storage
        assert proven.how(ADLER32) == f"computed here from {len(data)} bytes"
    assert storage.checksum(orm_place.url("payload")) == {ADLER32: adler32(data)}
    with pytest.raises(FileNotFoundError):
        storage.checksum(orm_place.path("absent"))
    monkeypatch.undo()
    both = storage.checksum(orm_place.path("payload"), (ADLER32, MD5))
    assert both == {ADLER32: adler32(data), MD5: hashlib.md5(data).hexdigest()}


@pytest.mark.parametrize("scheme", SERVERS)
def test_a_checksum_the_server_does_not_give_is_streamed(scheme, orm_place, place):
    plain = place("plain")
    data = os.urandom(3 * 1024 * 1024 + 7)
    plain.write("payload", data)
    orm_place.write("payload", data)

    without = plain.storage().checksum_detail(plain.path("payload"))
    assert without.values == {ADLER32: adler32(data)}
    assert not without.storage_side and without.streamed == {ADLER32} and without.bytes_read == len(data)
    assert "gave no adler32" in without.notes[0]
    assert scheme != "root" or "no checksum" in without.notes[0]
    assert without.ways() == f"adler32 computed here from {len(data)} bytes"

    # orm answers adler32 only: md5 is computed here, adler32 still comes from the server.
    mixed = orm_place.storage().checksum_detail(orm_place.path("payload"), (ADLER32, MD5))
    assert mixed.values == {ADLER32: adler32(data), MD5: hashlib.md5(data).hexdigest()}
    assert mixed.by_storage == {ADLER32} and mixed.streamed == {MD5}
    assert mixed.ways() == f"adler32 by the {scheme}:// server, md5 computed here from {len(data)} bytes"


def test_open_read_supports_readinto_and_seek(orm_place):
    data = os.urandom(100_000)
    orm_place.write("payload", data)
    storage = orm_place.storage()
    with storage.open_read(orm_place.path("payload")) as stream:
        buffer = bytearray(30_000)
        assert stream.readinto(buffer) == 30_000 and bytes(buffer) == data[:30_000]
        stream.seek(99_990)
        assert stream.read() == data[99_990:]
        assert stream.readinto(buffer) == 0
    with storage.open_read(orm_place.url("payload")) as stream:
        assert stream.read() == data
    with pytest.raises(FileNotFoundError):
        storage.open_read(orm_place.path("absent"))


def test_a_copy_between_two_storages_is_checked_at_the_destination(orm_place, pic_place, monkeypatch):
    data = os.urandom(5 * 1024 * 1024 + 1)
    orm_place.write(NAME, data)
    origin, target = orm_place.storage(), pic_place.storage()
    third_party = orm_place.scheme == "root"
    if third_party:
        monkeypatch.setattr(origin, "open_read", no_streaming)  # server to server: no byte through here
    seen = []

    result = target.copy(orm_place.url(NAME), pic_place.url(f"a/b/{NAME}"), progress=seen.append,
                         source_storage=origin)

    assert result.size == len(data) and result.checksums == {ADLER32: adler32(data)}
    assert result.method == ("third-party copy" if third_party else "streamed")
    assert pic_place.disk(f"a/b/{NAME}").read_bytes() == data
    proven = target.checksum_detail(pic_place.path(f"a/b/{NAME}"))
    assert proven.values == {ADLER32: adler32(data)} and proven.storage_side is pic_place.computes_checksums
    assert seen and seen[-1] == len(data)


def test_a_copy_to_a_temporary_name_then_renamed(orm_place, pic_place):
    data = os.urandom(3 * 1024 * 1024 + 11)
    orm_place.write("src/file.root", data)
    temporary, final = pic_place.url("night/.file.root.job.part"), pic_place.url("night/file.root")
    target = pic_place.storage()

    result = target.copy(orm_place.url("src/file.root"), temporary, (ADLER32, MD5), source_storage=orm_place.storage())

    assert result.size == len(data)
    assert result.checksums == {ADLER32: adler32(data), MD5: hashlib.md5(data).hexdigest()}
    assert pic_place.disk("night/.file.root.job.part").read_bytes() == data
    assert not pic_place.disk("night/file.root").exists()
    target.rename(temporary, final)
    assert pic_place.disk("night/file.root").read_bytes() == data
    assert not pic_place.disk("night/.file.root.job.part").exists()
    assert target.remove(final) is True
    assert target.remove(final) is False
    assert not pic_place.disk("night/file.root").exists()


def test_an_empty_file_is_copied(orm_place, pic_place):
    orm_place.write("empty", b"")
    copied = pic_place.storage().copy(orm_place.path("empty"), pic_place.path("empty"),
                                      source_storage=orm_place.storage())
    assert copied.checksums == {ADLER32: adler32(b"")}
    assert pic_place.disk("empty").read_bytes() == b""


COPIES = [("file", {}), ("root", {"tpc": True}), ("root", {"tpc": False}), ("davs", {})]
COPY_IDS = ["posix", "root-third-party", "root-streamed", "davs"]


@pytest.mark.parametrize(("scheme", "options"), COPIES[1:], ids=COPY_IDS[1:])
def test_a_source_rotten_after_its_checksum_is_caught_by_the_copy(scheme, options, orm_place, pic_place, rot_on_disk):
    data = os.urandom(3 * 1024 * 1024)
    path = orm_place.write(NAME, data)
    origin = orm_place.storage()
    assert origin.checksum(orm_place.path(NAME)) == {ADLER32: adler32(data)}  # the server keeps it
    rot_on_disk(path)
    streamed = not options.get("tpc")

    with pytest.raises(ChecksumMismatch, match="SOURCE .*checksum mismatch" if streamed else "checksum mismatch"):
        pic_place.storage(**options).copy(orm_place.path(NAME), pic_place.path(f"copy/{NAME}"), source_storage=origin)

    assert not pic_place.disk(f"copy/{NAME}").exists()


def test_a_copy_corrupted_afterwards_no_longer_has_the_sources_checksum(orm_place, pic_place):
    orm_place.write(NAME, os.urandom(1024 * 1024))
    target = pic_place.storage()
    result = target.copy(orm_place.path(NAME), pic_place.path(NAME), source_storage=orm_place.storage())
    time.sleep(1.1)
    with open(pic_place.disk(NAME), "r+b") as handle:  # changed on disk: a new mtime, so a server computes afresh
        handle.seek(10)
        handle.write(b"\0\0\0\0")
    assert target.checksum(pic_place.path(NAME)) != result.checksums


def test_a_copy_never_clobbers_an_existing_file(orm_place, pic_place):
    orm_place.write(NAME, b"new")
    existing = pic_place.write(NAME, b"someone else's")
    with pytest.raises(FileExistsError):
        pic_place.storage().copy(orm_place.path(NAME), pic_place.path(NAME), source_storage=orm_place.storage())
    assert existing.read_bytes() == b"someone else's"


@pytest.mark.parametrize(("scheme", "options"), COPIES, ids=COPY_IDS)
def test_a_failed_copy_leaves_no_file(scheme, options, orm_place, pic_place):
    orm_place.write(NAME, os.urandom(20 * 1024 * 1024))
    origin, target = orm_place.storage(), pic_place.storage(**options)

    def abort(copied):
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        target.copy(orm_place.path(NAME), pic_place.path("part"), progress=abort, source_storage=origin)
    with pytest.raises(FileNotFoundError):
        target.copy(orm_place.path("absent"), pic_place.path("part"), source_storage=origin)
    assert not pic_place.disk("part").exists()
    with pytest.raises(FileNotFoundError):
        target.stat(pic_place.path("part"))


def test_rename_replaces_and_remove_reports_absence(pic_place):
    pic_place.write(f".{NAME}.part", b"new bytes")
    pic_place.write(NAME, b"old")
    storage = pic_place.storage()
    storage.rename(pic_place.path(f".{NAME}.part"), pic_place.url(NAME))
    assert pic_place.disk(NAME).read_bytes() == b"new bytes"
    assert not pic_place.disk(f".{NAME}.part").exists()
    with pytest.raises(FileNotFoundError):
        storage.rename(pic_place.path("absent"), pic_place.path("other"))
    assert storage.remove(pic_place.path(NAME)) is True
    assert storage.remove(pic_place.path(NAME)) is False
    assert not pic_place.disk(NAME).exists()


# -- what servers alone promise -----------------------------------------------------------------------------

CONFINED = {  # a root as a URL, then (given, native path, URL) inside it, then locations outside it
    "root": ("root://h:1094//data/orm", [("/data/orm/M1/x", "/data/orm/M1/x", "root://h:1094//data/orm/M1/x"),
                                         ("root://h:1094//data/orm/./a//b", "/data/orm/a/b", "root://h:1094//data/orm/a/b")],
             ["/data/pic/x", "/data/orm/../pic/x", "root://h:1094//etc/passwd", "root://other:1094//data/orm/x"]),
    "davs": ("davs://door.pic.es:2880/pnfs/magic",
             [("/pnfs/magic/M1/a b", "/pnfs/magic/M1/a b", "https://door.pic.es:2880/pnfs/magic/M1/a%20b"),
              ("https://door.pic.es:2880/pnfs/magic/x", "/pnfs/magic/x", "https://door.pic.es:2880/pnfs/magic/x")],
             ["/pnfs/other/x", "/pnfs/magic/../x", "davs://elsewhere:2880/pnfs/magic/x", "davs://door.pic.es/x"]),
}
CONFINED_NATIVE = {  # a root as a native path: on the server of the first URL named, (given, path), outside
    "root": ("/data/orm", ("root://h:1094//data/orm/x", "/data/orm/x"),
             ["root://other:1094//data/orm/x", "/data/pic/x"]),
    "davs": ("/pnfs/magic", ("davs://door:2880/pnfs/magic/x", "/pnfs/magic/x"),
             ["https://door:2881/pnfs/magic/x", "/pnfs/x"]),
}


def server_storage(scheme: str) -> type[ServerStorage]:
    if scheme == "davs":
        return WebDAVStorage
    pytest.importorskip("XRootD.client", reason="root:// needs XRootD's Python client", exc_type=ImportError)
    from rucio_magic_ext.storage.xroot import XRootDStorage

    return XRootDStorage


URLS = {  # URLs with the server and absolute path each names, then URLs refused
    "root": ([("root://host//data/orm/x", ("root://host:1094", "/data/orm/x")),
              ("root://host:2094/data/x", ("root://host:2094", "/data/x"))],
             ["davs://host//data/x", "root://host//data/x?cks.type=md5"]),
    "davs": ([("davs://door.pic.es/pnfs/magic/x", ("https://door.pic.es:443", "/pnfs/magic/x")),
              ("https://door:8443//pnfs/x", ("https://door:8443", "/pnfs/x")),
              ("http://h:1/a%20b+c", ("http://h:1", "/a b+c"))],
             ["root://h//x", "https://h/x?y"]),
}


@pytest.mark.parametrize("scheme", SERVERS)
def test_a_url_gives_its_server_and_absolute_path(scheme):
    named, refused = URLS[scheme]
    for url, parts in named:
        assert server_storage(scheme).split_url(url) == parts
    for url in refused:
        with pytest.raises(ValueError):
            server_storage(scheme).split_url(url)


@pytest.mark.parametrize("scheme", SERVERS)
def test_a_root_confines_every_location_to_its_server_and_path(scheme):
    root, inside, outside = CONFINED[scheme]
    storage = server_storage(scheme)(root=root)
    assert storage.root == CONFINED_NATIVE[scheme][0]
    for given, path, url in inside:
        assert (storage.path_of(given), storage.url_of(given)) == (path, url)
    for location in outside:
        with pytest.raises(OutsideRoot):
            storage.path_of(location)

    root, (given, path), outside = CONFINED_NATIVE[scheme]  # as get_storage(url, root=native path) makes it
    native = server_storage(scheme)(root=root)
    assert native.path_of(given) == path
    for location in outside:
        with pytest.raises(OutsideRoot):
            native.path_of(location)


@pytest.mark.parametrize("scheme", SERVERS)
def test_a_stopped_server_is_unavailable_not_a_missing_file(scheme, place, start_server):
    stopped = place("stopped", start_server(f"stopped-{scheme}"))
    storage = stopped.storage()
    stopped.write(NAME, b"data")
    assert storage.stat(stopped.path(NAME)).size == 4

    stopped.server.stop()
    for operation in (
        lambda: storage.stat(stopped.path(NAME)),
        lambda: storage.checksum(stopped.path(NAME)),
        lambda: storage.files(stopped.path()),
        lambda: list(storage.list(stopped.path())),
        lambda: list(storage.folders(stopped.path())),
        lambda: storage.open_read(stopped.path(NAME)),
        lambda: storage.remove(stopped.path(NAME)),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            operation()
        assert not isinstance(caught.value, FileNotFoundError)
        assert isinstance(caught.value, OSError)

    stopped.server.start()
    deadline = time.monotonic() + 15
    while True:  # the XRootD client tries a failed server again after a few seconds
        try:
            assert storage.stat(stopped.path(NAME)).size == 4
            break
        except StorageUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
