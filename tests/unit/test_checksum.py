"""Streaming checksums: same values as zlib/hashlib and as Rucio, whatever the block boundaries."""

import hashlib
import io
import os
import threading
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rucio_magic_ext.checksum import (
    ADLER32,
    MD5,
    StreamingChecksum,
    checksum_file,
    checksum_stream,
    format_adler32,
    read_blocks,
)


def test_adler32_is_eight_lowercase_hex_digits_zero_padded():
    assert format_adler32(1) == "00000001"
    assert format_adler32(0x11E60398) == "11e60398"
    assert format_adler32(-1) == "ffffffff"


def test_known_vector_and_empty_input():
    assert checksum_stream(io.BytesIO(b"Wikipedia"))[1] == {ADLER32: "11e60398"}
    empty = {ADLER32: "00000001", MD5: hashlib.md5().hexdigest()}
    assert checksum_stream(io.BytesIO(b""), (ADLER32, MD5)) == (0, empty)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), buffer_size=st.integers(min_value=1, max_value=700), read_ahead=st.booleans())
def test_any_block_size_gives_the_zlib_and_hashlib_values(data, buffer_size, read_ahead):
    size, digests = checksum_stream(io.BytesIO(data), (ADLER32, MD5), buffer_size=buffer_size, read_ahead=read_ahead)
    assert size == len(data)
    assert digests == {ADLER32: f"{zlib.adler32(data):08x}", MD5: hashlib.md5(data).hexdigest()}


def test_incremental_updates_equal_one_update():
    data = os.urandom(100_000)
    digest = StreamingChecksum((ADLER32, MD5))
    for start in range(0, len(data), 777):
        digest.update(memoryview(data)[start:start + 777])
    assert digest.size == len(data)
    assert digest.hexdigests() == checksum_stream(io.BytesIO(data), (ADLER32, MD5))[1]


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="sha1"):
        StreamingChecksum(("sha1",))


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 1024 * 1024 + 17])
def test_checksum_file_matches_rucio_and_zlib(tmp_path, size):
    from rucio.common.checksum import adler32 as rucio_adler32
    from rucio.common.checksum import md5 as rucio_md5

    path = tmp_path / "payload"
    data = os.urandom(size)
    path.write_bytes(data)
    digests = checksum_file(path, (ADLER32, MD5), buffer_size=1024 * 1024)
    assert digests[ADLER32] == f"{zlib.adler32(data):08x}" == rucio_adler32(str(path))
    assert digests[MD5] == hashlib.md5(data).hexdigest() == rucio_md5(str(path))


class FailingStream(io.RawIOBase):
    """Gives some bytes, then fails like a storage going away."""

    def __init__(self):
        self.calls = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        self.calls += 1
        if self.calls > 2:
            raise OSError("I/O error")
        buffer[:4] = b"abcd"
        return 4


def test_read_errors_reach_the_caller():
    with pytest.raises(OSError, match="I/O error"):
        checksum_stream(FailingStream(), buffer_size=16)


def test_abandoning_the_blocks_stops_the_reader_thread():
    before = threading.active_count()
    blocks = read_blocks(io.BytesIO(os.urandom(10_000)), buffer_size=100)
    next(blocks)
    assert threading.active_count() == before + 1
    blocks.close()
    assert threading.active_count() == before
