"""Checksum speed against plain sequential read speed, on the same file in the same run.

    python tools/bench/checksum.py [SIZE] [--dir DIR] [--repeat N] [--json FILE]

SIZE accepts suffixes K, M, G (default 2G). The file is written once, fsynced, and before each
measurement its pages are dropped from the page cache (posix_fadvise DONTNEED), so every figure
is a read from storage. Each figure is the best of --repeat runs, the runs interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


def _checksum_module():
    try:
        from rucio_magic_ext import checksum
    except ImportError:  # run from a checkout without the package installed
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from rucio_magic_ext import checksum
    return checksum


def write_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20) * 16
    with open(path, "wb", buffering=0) as stream:
        left = size
        while left > 0:
            left -= stream.write(memoryview(block)[: min(left, len(block))])
        os.fsync(stream.fileno())


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def plain_read(path: Path, buffer_size: int) -> None:
    buffer = bytearray(buffer_size)
    with open(path, "rb", buffering=0) as stream:
        while stream.readinto(buffer):
            pass


def timed(path: Path, size: int, run) -> float:
    drop_cache(path)
    start = time.perf_counter()
    run()
    return size / (time.perf_counter() - start) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", nargs="?", default="2G", type=parse_size)
    parser.add_argument("--dir", default=None, help="where to write the test file (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", dest="json_file", default=None)
    args = parser.parse_args(argv)
    checksum = _checksum_module()
    buffer_size = checksum.DEFAULT_BUFFER_SIZE

    with tempfile.TemporaryDirectory(prefix="magic-bench-", dir=args.dir) as tmp:
        path = Path(tmp) / "payload.bin"
        write_file(path, args.size)
        runs = {
            "read": lambda: plain_read(path, buffer_size),
            "adler32": lambda: checksum.checksum_file(path, (checksum.ADLER32,)),
            "adler32+md5": lambda: checksum.checksum_file(path, (checksum.ADLER32, checksum.MD5)),
        }
        best = dict.fromkeys(runs, 0.0)
        for _ in range(args.repeat):
            for name, run in runs.items():
                best[name] = max(best[name], timed(path, args.size, run))

    result = {
        "size_bytes": args.size,
        "buffer_bytes": buffer_size,
        "repeat": args.repeat,
        "mb_per_s": best,
        "ratio_to_read": {name: best[name] / best["read"] for name in best},
    }
    for name, speed in best.items():
        print(f"{name:<12} {speed:9.1f} MB/s  ratio {speed / best['read']:.2f}")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
