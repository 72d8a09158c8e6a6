"""Deterministic file bodies: pseudo-random bytes, and gzip streams of an exact size.

Pure generators (no I/O). Bytes come from a per-file pool drawn once from ``random.Random`` and then
sliced at random offsets, so that a 1 GB file costs one small draw and memory copies: writing stays
I/O bound. A slice of 512 KiB out of a 2 MiB pool keeps every file distinct and incompressible.

Raw files are real gzip streams made of stored (uncompressed) deflate blocks, which is what gzip emits
for incompressible data anyway; stored blocks make the total size exact, CRC32 and ISIZE included.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable, Iterator

CHUNK = 1 << 19
POOL = 2 << 20
_STORED_MAX = 65535  # bytes in one stored deflate block
_STORED_HEADER = 5  # BFINAL/BTYPE byte, LEN, NLEN
_TRAILER = 8  # CRC32, ISIZE
_BLOCKS_PER_WRITE = 16


def _taker(content_seed: int, size: int) -> Callable[[int], memoryview]:
    """A ``take(n)`` handing out ``size`` bytes in total, deterministic for the seed."""
    rng = random.Random(content_seed)
    if size <= POOL:
        whole = memoryview(rng.randbytes(size))
        cursor = 0

        def take_sequential(count: int) -> memoryview:
            nonlocal cursor
            cursor += count
            return whole[cursor - count : cursor]

        return take_sequential
    pool = memoryview(rng.randbytes(POOL))

    def take_sliced(count: int) -> memoryview:
        offset = rng.randrange(POOL - count + 1)
        return pool[offset : offset + count]

    return take_sliced


def random_bytes(content_seed: int, size: int) -> Iterator[memoryview]:
    take = _taker(content_seed, size)
    left = size
    while left:
        count = min(CHUNK, left)
        yield take(count)
        left -= count


def gzip_header(inner_name: str, mtime: int) -> bytes:
    """A gzip member header naming the uncompressed file, as ``gzip`` writes it."""
    flags = 0x08  # FNAME
    return b"\x1f\x8b\x08" + bytes([flags]) + struct.pack("<I", mtime) + b"\x00\x03" + inner_name.encode() + b"\x00"


def gzip_minimum(inner_name: str) -> int:
    """The smallest gzip stream for that name: header, one empty stored block, trailer."""
    return len(gzip_header(inner_name, 0)) + _STORED_HEADER + _TRAILER


def _stored_blocks(body: int) -> tuple[int, int]:
    """(payload bytes, block count) filling ``body`` bytes of deflate data exactly."""
    blocks = max(1, -(-body // (_STORED_MAX + _STORED_HEADER)))
    return body - _STORED_HEADER * blocks, blocks


def gzip_bytes(content_seed: int, size: int, inner_name: str, mtime: int = 0) -> Iterator[bytes]:
    """A valid gzip stream of exactly ``size`` bytes whose payload is pseudo-random."""
    header = gzip_header(inner_name, mtime)
    if size < gzip_minimum(inner_name):
        raise ValueError(f"a gzip stream for {inner_name!r} needs at least {gzip_minimum(inner_name)} bytes")
    payload, blocks = _stored_blocks(size - len(header) - _TRAILER)
    take = _taker(content_seed, payload)
    base, longer = divmod(payload, blocks)
    crc = 0
    yield header
    for first in range(0, blocks, _BLOCKS_PER_WRITE):
        parts: list[bytes | memoryview] = []
        for block in range(first, min(first + _BLOCKS_PER_WRITE, blocks)):
            count = base + (1 if block < longer else 0)
            data = take(count)
            crc = zlib.crc32(data, crc)
            final = 1 if block == blocks - 1 else 0
            parts += [struct.pack("<BHH", final, count, count ^ 0xFFFF), data]
        yield b"".join(parts)
    yield struct.pack("<II", crc, payload & 0xFFFFFFFF)
