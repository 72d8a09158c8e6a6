"""The posix storage against real files."""

import inspect
import os
import zlib

import pytest

from rucio_magic_ext.checksum import ADLER32, MD5
from rucio_magic_ext.storage import Entry, get_storage, scheme_of, supported_schemes
from rucio_magic_ext.storage.posix import PosixStorage


@pytest.fixture
def storage():
    return get_storage("file")


@pytest.fixture
def tree(tmp_path):
    files = {
        "20240101/M1_20240101_05012345.001_D_CrabNebula-W0.40+035.root": b"a" * 10,
        "20240101/M2_20240101_05012345.001_D_CrabNebula-W0.40+035.root": b"b" * 20,
        "20240102/sub/deep.raw": b"c" * 5,
        "top.txt": b"",
    }
    for name, data in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "empty_dir").mkdir()
    os.symlink(tmp_path / "missing", tmp_path / "20240101" / "dangling")
    return tmp_path, files


def test_registry_serves_posix_for_file_urls_and_paths():
    assert "file" in supported_schemes()
    assert isinstance(get_storage("file://localhost/data/x"), PosixStorage)
    assert isinstance(get_storage("/data/x"), PosixStorage)
    assert scheme_of("root://host:1094//data/x") == "root"
    with pytest.raises(ValueError, match="no storage implementation"):
        get_storage("gsiftp://host/data/x")


@pytest.mark.parametrize(
    "location", ["file://localhost/data/a/b", "file:///data/a/b", "file://h:0/data//a/b", "/data/a/b"]
)
def test_urls_and_paths_give_the_native_path(storage, location):
    assert storage.path_of(location) == "/data/a/b"


def test_relative_and_foreign_locations_are_refused(storage):
    with pytest.raises(ValueError):
        storage.path_of("data/a")
    with pytest.raises(ValueError):
        storage.path_of("root://host//data/a")


def test_list_walks_the_tree_lazily_with_sizes_and_mtimes(storage, tree):
    root, files = tree
    listing = storage.list(f"file://localhost{root}")
    assert inspect.isgenerator(listing)
    entries = list(listing)
    assert sorted(e.path for e in entries) == sorted(str(root / name) for name in files)
    for entry in entries:
        info = os.stat(entry.path)
        assert (entry.size, entry.mtime) == (info.st_size, info.st_mtime)


def test_list_of_a_missing_prefix_fails(storage, tmp_path):
    with pytest.raises(FileNotFoundError):
        next(storage.list(str(tmp_path / "nope")))


def test_stat(storage, tree):
    root, _ = tree
    path = root / "20240102/sub/deep.raw"
    assert storage.stat(f"file://localhost{path}") == Entry(str(path), 5, os.stat(path).st_mtime)
    with pytest.raises(FileNotFoundError):
        storage.stat(str(root / "absent"))


def test_checksum_equals_zlib_over_the_file(storage, tmp_path):
    path = tmp_path / "payload"
    data = os.urandom(9 * 1024 * 1024 + 3)
    path.write_bytes(data)
    assert storage.checksum(str(path)) == {ADLER32: f"{zlib.adler32(data):08x}"}
    assert set(storage.checksum(str(path), (ADLER32, MD5))) == {ADLER32, MD5}


def test_open_read(storage, tree):
    root, files = tree
    name = "20240101/M1_20240101_05012345.001_D_CrabNebula-W0.40+035.root"
    with storage.open_read(str(root / name)) as stream:
        assert stream.read() == files[name]


def test_copy_to_temporary_then_rename(storage, tmp_path):
    source = tmp_path / "src" / "file.root"
    source.parent.mkdir()
    data = os.urandom(3 * 1024 * 1024 + 11)
    source.write_bytes(data)
    temporary = tmp_path / "dst" / "night" / ".file.root.job.part"
    final = temporary.with_name("file.root")

    result = storage.copy(f"file://localhost{source}", f"file://localhost{temporary}", (ADLER32, MD5))

    assert result.size == len(data)
    assert result.checksums[ADLER32] == f"{zlib.adler32(data):08x}"
    assert temporary.read_bytes() == data and not final.exists()
    storage.rename(str(temporary), str(final))
    assert final.read_bytes() == data and not temporary.exists()
    assert storage.remove(str(final)) is True
    assert storage.remove(str(final)) is False


def test_a_failed_copy_leaves_no_file(storage, tmp_path):
    source = tmp_path / "file.root"
    source.write_bytes(os.urandom(4 * 1024 * 1024))
    temporary = tmp_path / "dst" / ".file.root.part"

    def abort(copied):
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        storage.copy(str(source), str(temporary), progress=abort)
    assert not temporary.exists()

    with pytest.raises(FileNotFoundError):
        storage.copy(str(tmp_path / "absent"), str(temporary))
    assert not temporary.exists()


def test_copy_never_clobbers_an_existing_file(storage, tmp_path):
    source = tmp_path / "file.root"
    source.write_bytes(b"new")
    existing = tmp_path / ".file.root.part"
    existing.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        storage.copy(str(source), str(existing))
    assert existing.read_bytes() == b"someone else's"
