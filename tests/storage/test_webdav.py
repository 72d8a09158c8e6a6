"""What the WebDAV storage alone does, against the HTTP doors of real XRootD servers: an md5 Digest in
base64, and a MOVE into a folder not there yet.

What every storage promises is in test_contract.py.
"""

from __future__ import annotations

import hashlib
import os
import zlib

from rucio_magic_ext.checksum import ADLER32, MD5
from rucio_magic_ext.storage.webdav import WebDAVStorage

NAME = "M1_20240101_05012345.001_D_CrabNebula-W0.40+035.root"


def test_an_md5_digest_in_base64_is_the_servers(start_server, folder, write_on_disk):
    data = os.urandom(3 * 1024 * 1024 + 7)
    md5_server = start_server("md5", checksum="md5")
    write_on_disk(md5_server, f"{folder}/payload", data)

    other = WebDAVStorage(md5_server.http_url).checksum_detail(f"{folder}/payload", (ADLER32, MD5))

    assert other.values == {ADLER32: f"{zlib.adler32(data):08x}", MD5: hashlib.md5(data).hexdigest()}
    assert other.by_storage == {MD5} and other.streamed == {ADLER32}  # md5 from its base64 Digest


def test_a_rename_into_a_new_folder_makes_it(pic, folder, write_on_disk):
    write_on_disk(pic, f"{folder}/{NAME}", b"new bytes")
    at_pic = WebDAVStorage(pic.http_url)
    at_pic.rename(f"{folder}/{NAME}", f"{folder}/elsewhere/{NAME}")
    assert (pic.data / folder.lstrip("/") / "elsewhere" / NAME).read_bytes() == b"new bytes"
    assert not (pic.data / folder.lstrip("/") / NAME).exists()
    assert at_pic.remove(f"{folder}/elsewhere/{NAME}") is True
    assert at_pic.remove(f"{folder}/elsewhere/{NAME}") is False
