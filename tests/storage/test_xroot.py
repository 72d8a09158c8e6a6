"""What the root:// storage alone does, against real XRootD servers: a server to know for native paths, and
third-party copies refused.

What every storage promises is in test_contract.py.
"""

from __future__ import annotations

import os
import zlib

import pytest

pytest.importorskip(
    "XRootD.client", reason="root:// storage needs XRootD's Python client: pip install xrootd", exc_type=ImportError
)

from rucio_magic_ext.checksum import ADLER32
from rucio_magic_ext.storage.xroot import XRootDStorage

NAME = "M1_20240101_05012345.001_D_CrabNebula-W0.40+035.root"


def test_native_paths_need_a_known_server():
    storage = XRootDStorage()
    with pytest.raises(ValueError, match="no server known"):
        storage.stat("/data/x")
    assert storage.path_of("root://h:1//data/./a//b") == "/data/a/b"
    assert storage.path_of("/data/a") == "/data/a"  # the first URL named the server


def test_a_destination_refusing_third_party_copy_gets_a_streamed_one(orm, plain, folder, write_on_disk):
    data = os.urandom(2 * 1024 * 1024 + 5)
    write_on_disk(orm, f"{folder}/{NAME}", data)
    at_plain = XRootDStorage(plain.root_url)

    result = at_plain.copy(f"{folder}/{NAME}", f"{folder}/copy/{NAME}", source_storage=XRootDStorage(orm.root_url))

    assert result.checksums == {ADLER32: f"{zlib.adler32(data):08x}"} and result.method == "streamed"
    assert (plain.data / folder.lstrip("/") / "copy" / NAME).read_bytes() == data
