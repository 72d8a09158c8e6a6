"""The posix storage against real files."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rucio_magic_ext import layout
from rucio_magic_ext.storage import OutsideRoot, get_storage, scheme_of, supported_schemes
from rucio_magic_ext.storage.posix import PosixStorage


@pytest.fixture
def storage():
    return get_storage("file")


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


def test_list_passes_over_dangling_links_and_links_out_of_the_root(tmp_path):
    """What `files` gives as Refused (see test_odd_entry_rules) is no file for `list`; the rest of what every
    storage lists is in tests/storage/test_contract.py."""
    root = tmp_path / "rse"
    (root / "night").mkdir(parents=True)
    (root / "night" / "f.root").write_bytes(b"f")
    (tmp_path / "outside.root").write_bytes(b"outside")
    os.symlink(root / "missing", root / "night" / "dangling")
    os.symlink(tmp_path / "outside.root", root / "night" / "out")
    os.symlink(root / "night" / "f.root", root / "night" / "inside")
    storage = get_storage("file", root=str(root))
    assert [entry.path for entry in storage.list(str(root))] == [f"{root}/night/f.root", f"{root}/night/inside"]


# --- a storage with a root refuses every location outside it -------------------------------------------

def snapshot(folder) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what a refused operation must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def rse(tmp_path):
    """An RSE's storage rooted at tmp_path/rse, with a file inside and a file next to (outside) the root."""
    root = tmp_path / "rse"
    (root / "M1").mkdir(parents=True)
    (root / "M1" / "inside.root").write_bytes(b"inside")
    (tmp_path / "outside.root").write_bytes(b"outside")
    (tmp_path / "rse-sibling").mkdir()
    (tmp_path / "rse-sibling" / "f").write_bytes(b"sibling")
    return root, get_storage(f"file://localhost{root}/", root=f"file://localhost{root}/")


@pytest.mark.parametrize("given_as", ["native", "url", "url with port", "trailing slash", "double slashes"])
def test_the_root_may_be_a_url_or_a_native_path(tmp_path, given_as):
    root = str(tmp_path / "rse")
    spelled = {
        "native": root,
        "url": f"file://localhost{root}",
        "url with port": f"file://localhost:0{root}/",
        "trailing slash": root + "/",
        "double slashes": root.replace("/", "//") + "//",
    }[given_as]
    storage = get_storage("file", root=spelled)
    assert storage.root == root
    assert storage.path_of(f"file://localhost{root}//M1/./a") == f"{root}/M1/a"
    assert storage.path_of(root) == root


def test_a_root_must_be_absolute_and_without_dot_dot(tmp_path):
    for root in ("data/pic", f"{tmp_path}/rse/../elsewhere", "root://host//data"):
        with pytest.raises(ValueError):
            PosixStorage(root=root)


@pytest.mark.parametrize(
    ("location", "says"),
    [
        ("{root}/../outside.root", "'..'"),
        ("file://localhost{root}/M1/../../outside.root", "'..'"),
        ("{root}/M1/..", "'..'"),
        ("{root}/ab/cd/../../../x", "'..'"),
        ("/etc/passwd", "not below it"),
        ("file://localhost/etc/passwd", "not below it"),
        ("{root}-sibling/f", "not below it"),
        ("{parent}", "not below it"),
    ],
)
def test_a_location_outside_the_root_is_refused_naming_location_and_root(rse, location, says):
    root, storage = rse
    location = location.format(root=root, parent=root.parent)
    with pytest.raises(OutsideRoot) as caught:
        storage.path_of(location)
    assert isinstance(caught.value, ValueError)
    assert caught.value.location == location and caught.value.root == str(root)
    assert location in str(caught.value) and str(root) in str(caught.value) and says in str(caught.value)


def test_a_hashed_path_of_a_dot_dot_name_is_refused(rse):
    """The review's case: `hash` layout of a non-MAGIC DID whose name climbs out of its folders."""
    root, storage = rse
    path = layout.hashed_path("user.jdoe", "../../../../outside.root")
    assert "/../" in path
    with pytest.raises(OutsideRoot):
        storage.path_of(f"file://localhost{root}/{path}")


def test_every_operation_refuses_outside_the_root_and_touches_nothing(rse, tmp_path):
    root, storage = rse
    before = snapshot(tmp_path)
    escape = f"file://localhost{root}/M1/../../outside.root"
    inside = f"file://localhost{root}/M1/inside.root"
    refused = [
        lambda: storage.stat(escape),
        lambda: storage.checksum(escape),
        lambda: storage.open_read(escape),
        lambda: storage.remove(escape),
        lambda: storage.remove(str(tmp_path / "outside.root")),
        lambda: storage.rename(inside, escape),
        lambda: storage.rename(escape, f"{root}/M1/stolen.root"),
        lambda: storage.copy(inside, f"file://localhost{root}/../outside-copy.root"),
        lambda: storage.copy(inside, str(tmp_path / "outside-copy.root")),
        lambda: storage.copy(escape, f"{root}/M1/stolen.root"),
        lambda: next(storage.list(str(tmp_path))),
        lambda: next(storage.folders(f"{root}/..")),
        lambda: storage.files(str(tmp_path)),
    ]
    for operation in refused:
        with pytest.raises(OutsideRoot):
            operation()
    assert snapshot(tmp_path) == before


def test_inside_the_root_everything_still_works(rse):
    root, storage = rse
    inside = f"file://localhost{root}/M1/inside.root"
    temporary = f"file://localhost{root}/M1/2020/.copy.root.part"
    assert storage.copy(inside, temporary).size == 6
    storage.rename(temporary, f"{root}/M1/2020/copy.root")
    assert (root / "M1" / "2020" / "copy.root").read_bytes() == b"inside"
    listed = sorted(entry.path for entry in storage.list(str(root)))
    assert listed == [f"{root}/M1/2020/copy.root", f"{root}/M1/inside.root"]
    assert storage.remove(f"{root}/M1/2020/copy.root")


def test_a_copy_reads_its_source_through_the_source_storage_and_its_root(tmp_path):
    origin_root, target_root = tmp_path / "orm", tmp_path / "pic"
    (origin_root / "night").mkdir(parents=True)
    (origin_root / "night" / "f.root").write_bytes(b"payload")
    (tmp_path / "secret").write_bytes(b"not for copying")
    origin = get_storage("file", root=str(origin_root))
    target = get_storage("file", root=str(target_root))

    # The target alone refuses a source outside its own root; with the origin's storage it reads it.
    with pytest.raises(OutsideRoot):
        target.copy(f"{origin_root}/night/f.root", f"{target_root}/night/f.root")
    target.copy(f"{origin_root}/night/f.root", f"{target_root}/night/f.root", source_storage=origin)
    assert (target_root / "night" / "f.root").read_bytes() == b"payload"

    with pytest.raises(OutsideRoot):
        target.copy(f"{origin_root}/../secret", f"{target_root}/secret", source_storage=origin)
    assert not (target_root / "secret").exists()


def test_without_a_root_nothing_is_confined(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "f").write_bytes(b"x")
    storage = get_storage(f"file://localhost{tmp_path}")
    assert storage.root is None
    assert storage.path_of(f"{tmp_path}/a/../f") == f"{tmp_path}/f"
    assert storage.stat(f"file://localhost{tmp_path}/a/../f").size == 1


def test_a_dot_dot_past_a_symlinked_folder_is_refused_not_resolved_on_the_string(tmp_path):
    """`link/..` is the parent of the link's target for the kernel, `root` for the string: refuse it."""
    root = tmp_path / "rse"
    root.mkdir()
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere" / "deep", root / "link")
    storage = get_storage("file", root=str(root))
    with pytest.raises(OutsideRoot):
        storage.copy(__file__, f"{root}/link/../escaped")
    assert not (tmp_path / "elsewhere" / "escaped").exists() and not (root / "escaped").exists()


@pytest.mark.parametrize("mark", ["?", "#"])
def test_a_file_url_with_query_or_fragment_marks_is_refused(storage, mark):
    """Rucio joins prefix and path as they are; urlsplit would cut the name at '?' or '#'."""
    with pytest.raises(ValueError, match="no meaning"):
        storage.path_of(f"file://localhost/data/a{mark}b/../../etc/x")


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "...", "..a", "a.."]), max_size=8))
def test_any_location_is_either_refused_or_at_or_below_the_root(segments):
    storage = PosixStorage(root="/data/pic")
    location = "/data/pic/" + "/".join(segments)
    try:
        path = storage.path_of(location)
    except OutsideRoot:
        assert ".." in segments
        return
    assert path == "/data/pic" or path.startswith("/data/pic/")
    assert path == os.path.normpath(location)
