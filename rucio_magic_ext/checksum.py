"""Streaming checksums in Rucio's formats, computed in one pass over the bytes.

Files at the observatory are large (GBs), so the bytes are read once, in big blocks, into
preallocated buffers. A reader thread fills the next buffer while the caller hashes the
current one: `readinto`, `zlib.adler32` and `hashlib` all release the GIL on large buffers,
so reading and hashing overlap and the checksum runs at close to the plain read speed.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

ADLER32 = "adler32"
MD5 = "md5"
SUPPORTED_ALGORITHMS = (ADLER32, MD5)

DEFAULT_BUFFER_SIZE = 8 * 1024 * 1024
READ_AHEAD_DEPTH = 3


class ReadIntoStream(Protocol):
    """A raw binary stream, e.g. `open(path, 'rb', buffering=0)`."""

    def readinto(self, buffer: bytearray | memoryview, /) -> int | None: ...


def format_adler32(value: int) -> str:
    """Adler-32 as Rucio stores it: 8 lowercase hex digits, zero-padded."""
    return f"{value & 0xFFFFFFFF:08x}"


class StreamingChecksum:
    """Several checksums fed from the same blocks, so the bytes are read only once."""

    def __init__(self, algorithms: Iterable[str] = (ADLER32,)) -> None:
        algorithms = tuple(algorithms)
        unknown = set(algorithms) - set(SUPPORTED_ALGORITHMS)
        if unknown:
            raise ValueError(f"unsupported checksum algorithms: {sorted(unknown)}")
        self._adler: int | None = 1 if ADLER32 in algorithms else None
        self._md5 = hashlib.md5(usedforsecurity=False) if MD5 in algorithms else None
        self.size = 0

    def update(self, block: bytes | bytearray | memoryview) -> None:
        if self._adler is not None:
            self._adler = zlib.adler32(block, self._adler)
        if self._md5 is not None:
            self._md5.update(block)
        self.size += len(block)

    def hexdigests(self) -> dict[str, str]:
        digests = {}
        if self._adler is not None:
            digests[ADLER32] = format_adler32(self._adler)
        if self._md5 is not None:
            digests[MD5] = self._md5.hexdigest()
        return digests


def read_blocks(
    stream: ReadIntoStream,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    read_ahead: bool = True,
) -> Iterator[memoryview]:
    """Yield the stream's bytes block by block, reusing a few preallocated buffers.

    Each yielded view is valid only until the next iteration: consume it (hash, write) first.
    With `read_ahead` a background thread reads the next blocks while the caller works.
    """
    if not read_ahead:
        buffer = bytearray(buffer_size)
        view = memoryview(buffer)
        while True:
            count = stream.readinto(buffer)
            if not count:
                return
            yield view[:count]
    else:
        yield from _read_ahead(stream, buffer_size)


def read_file_blocks(
    stream: ReadIntoStream, size: int, buffer_size: int = DEFAULT_BUFFER_SIZE
) -> Iterator[memoryview]:
    """Blocks of a stream whose size is known: a file smaller than one block gets a buffer of its own size and
    no reader thread, so that many small files cost what their bytes cost, not three big buffers each."""
    if size < buffer_size:
        return read_blocks(stream, size + 1, read_ahead=False)  # one read, and one more that finds the end
    return read_blocks(stream, buffer_size)


_END = object()


def _read_ahead(stream: ReadIntoStream, buffer_size: int) -> Iterator[memoryview]:
    buffers = [bytearray(buffer_size) for _ in range(READ_AHEAD_DEPTH)]
    views = [memoryview(b) for b in buffers]
    free: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    full: queue.SimpleQueue[Any] = queue.SimpleQueue()  # (index, count), an error, or _END
    for index in range(READ_AHEAD_DEPTH):
        free.put(index)
    stop = threading.Event()

    def reader() -> None:
        try:
            while True:
                index = free.get()
                if index is None or stop.is_set():
                    return
                count = stream.readinto(buffers[index])
                if not count:
                    full.put(_END)
                    return
                full.put((index, count))
        except BaseException as error:  # handed over to the consuming thread
            full.put(error)

    thread = threading.Thread(target=reader, name="checksum-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = full.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            index, count = item
            yield views[index][:count]
            free.put(index)
    finally:
        stop.set()
        free.put(None)
        thread.join()


def checksum_stream(
    stream: ReadIntoStream,
    algorithms: Iterable[str] = (ADLER32,),
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    read_ahead: bool = True,
) -> tuple[int, dict[str, str]]:
    """Size and checksums of everything left in the stream."""
    digest = StreamingChecksum(algorithms)
    for block in read_blocks(stream, buffer_size, read_ahead):
        digest.update(block)
    return digest.size, digest.hexdigests()


def checksum_file(
    path: str | os.PathLike[str],
    algorithms: Iterable[str] = (ADLER32,),
    buffer_size: int = DEFAULT_BUFFER_SIZE,
) -> dict[str, str]:
    """Checksums of a local file; small files skip the reader thread and the big buffers."""
    digest = StreamingChecksum(algorithms)
    with open(path, "rb", buffering=0) as stream:
        for block in read_file_blocks(stream, os.fstat(stream.fileno()).st_size, buffer_size):
            digest.update(block)
    return digest.hexdigests()


def normalise_checksum(algorithm: str, value: str) -> str:
    """A checksum in Rucio's format: lowercase hex, adler32 zero-padded to 8 digits."""
    value = value.strip().lower()
    return value.zfill(8) if algorithm == ADLER32 else value


def wanted_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(algorithms))
    unknown = set(wanted) - set(SUPPORTED_ALGORITHMS)
    if unknown:
        raise ValueError(f"unsupported checksum algorithms: {sorted(unknown)}")
    return wanted


class Unfinished(Exception):
    """The file changed during the pass, or its gzip stream has not ended: it is still being written."""


class Corrupt(Exception):
    """The gzip stream is broken: no later write will mend it."""


@dataclass(frozen=True)
class Digest:
    size: int
    checksums: dict[str, str]


def digest_stream(stream: ReadIntoStream, algorithms: tuple[str, ...], gzip: bool, size: int) -> Digest:
    """Checksums of a stream of ``size`` bytes, checking on the way that a gzip stream is whole."""
    checksum = StreamingChecksum(algorithms)
    inflater = zlib.decompressobj(wbits=31) if gzip else None
    for block in read_file_blocks(stream, size):
        checksum.update(block)
        if inflater is not None and not inflater.eof:
            try:
                inflater.decompress(block, 1 << 20)
                while inflater.unconsumed_tail and not inflater.eof:
                    inflater.decompress(inflater.unconsumed_tail, 1 << 20)
            except zlib.error as error:
                raise Corrupt(f"gzip stream broken: {error}") from None
    if inflater is not None:
        if not inflater.eof:
            raise Unfinished("gzip stream has no end yet (trailer missing)")
        if inflater.unused_data:
            raise Corrupt(f"{len(inflater.unused_data)} bytes after the end of the gzip stream")
    return Digest(checksum.size, checksum.hexdigests())
