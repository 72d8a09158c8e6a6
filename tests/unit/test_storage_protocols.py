"""Storages built from an RSE's protocols in Rucio: the protocol's prefix is the storage's root."""

from __future__ import annotations

import pytest

from rucio_magic_ext.storage import OutsideRoot, protocol_root, storage_for_pfn

POSIX = {"scheme": "file", "hostname": "localhost", "port": 0, "prefix": "/data/pic-disk/"}
ROOT = {"scheme": "root", "hostname": "xrootd.pic.example.org", "port": 1094, "prefix": "//pnfs/pic.es/magic/"}
DAVS = {"scheme": "davs", "hostname": "webdav.pic.example.org", "port": 8443, "prefix": "/pnfs/pic.es/magic/"}


def test_the_root_is_scheme_host_port_and_prefix():
    assert protocol_root(POSIX) == "file://localhost:0/data/pic-disk"
    assert protocol_root(ROOT) == "root://xrootd.pic.example.org:1094/pnfs/pic.es/magic"
    assert protocol_root({**DAVS, "prefix": ""}) == "davs://webdav.pic.example.org:8443/"


def test_a_pfn_is_read_through_the_protocol_whose_prefix_holds_it():
    storage = storage_for_pfn("file://localhost:0/data/pic-disk/M1/RAW/x", [POSIX])
    assert storage.root == "/data/pic-disk"
    assert storage.path_of("file://localhost:0/data/pic-disk/M1/RAW/x") == "/data/pic-disk/M1/RAW/x"


@pytest.mark.parametrize(
    "pfn",
    [
        "file://localhost:0/data/orm-onsite/M1/x",  # another RSE's folder
        "file://localhost:0/data/pic-disk/../orm-onsite/x",  # climbing out
        "davs://webdav.pic.example.org:8443/pnfs/pic.es/magic/x",  # a scheme the RSE does not serve
    ],
)
def test_a_pfn_outside_every_prefix_is_read_nowhere(pfn):
    with pytest.raises(OutsideRoot):
        storage_for_pfn(pfn, [POSIX])


def test_root_pfns_are_confined_to_the_protocols_server_and_prefix():
    pytest.importorskip("XRootD.client", reason="root:// storage needs XRootD's Python client", exc_type=ImportError)
    pfn = "root://xrootd.pic.example.org:1094//pnfs/pic.es/magic/M1/RAW/2020/01/03/x"
    storage = storage_for_pfn(pfn, [POSIX, ROOT])
    assert storage.scheme == "root" and storage.root == "/pnfs/pic.es/magic"
    for outside in ("root://other.example.org:1094//pnfs/pic.es/magic/x", "root://xrootd.pic.example.org:1094//etc/x"):
        with pytest.raises(OutsideRoot):
            storage_for_pfn(outside, [POSIX, ROOT])
