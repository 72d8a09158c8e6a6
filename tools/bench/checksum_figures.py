"""Checksum: tools/bench/checksum.py (adler32 against a plain sequential read of the same file) as figures.

The scanner reads each file once to checksum it; the target is that this pass runs at 80 % of the speed
of just reading the file, so the checksum never is what holds a night back.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

from tools.bench import checksum
from tools.bench.report import Figure, Target

TARGET_RATIO = 0.8


def run(size: str, folder: Path) -> list[Figure]:
    folder.mkdir(parents=True, exist_ok=True)
    print(f"checksum: {size} file, page cache dropped before each pass", file=sys.stderr)
    with tempfile.NamedTemporaryFile(suffix=".json", dir=folder) as result, contextlib.redirect_stdout(io.StringIO()):
        checksum.main([size, "--dir", str(folder), "--json", result.name])
        data = json.loads(Path(result.name).read_text())
    speeds = data["mb_per_s"]
    gib, buffer_kib = data["size_bytes"] / (1 << 30), data["buffer_bytes"] >> 10
    detail = f"{gib:.2f} GiB, best of {data['repeat']}, {buffer_kib} KiB reads"
    return [
        Figure(
            "checksum.adler32",
            speeds["adler32"],
            "MB/s",
            baseline=speeds["read"],
            baseline_name="plain read",
            target=Target(TARGET_RATIO, ">=", on_ratio=True),
            detail=detail,
            extra=data,
        ),
        Figure(
            "checksum.adler32+md5",
            speeds["adler32+md5"],
            "MB/s",
            baseline=speeds["read"],
            baseline_name="plain read",
            detail="when [magic-scanner] checksums = adler32, md5",
        ),
    ]
