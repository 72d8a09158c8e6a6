"""Putting a planned night on disk, at once or trickled in like a running DAQ.

A trickled file appears under its final name, grows in a few writes and is then closed, so whatever
watches the folder sees what it sees on site: files still being written, then files that stop changing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.make_night import dl3
from tools.make_night.content import CHUNK, gzip_bytes, random_bytes
from tools.make_night.dl3 import DEFAULT_DL3_TEMPLATE
from tools.make_night.plan import Content, PlannedFile

# Called after every write with the file, the bytes written so far and whether it is closed.
Observer = Callable[[PlannedFile, int, bool], None]


@dataclass(frozen=True, slots=True)
class Written:
    files: int
    bytes: int
    seconds: float


def body(planned: PlannedFile, dl3_template: Path = DEFAULT_DL3_TEMPLATE) -> Iterator[bytes | memoryview]:
    """The bytes of a planned file, in chunks. ``dl3_template`` is the file that DL3_TEMPLATE files copy."""
    if planned.content is Content.DL3:
        if planned.observation is None:
            raise ValueError(f"{planned.path}: a DL3 file needs the observation of its run")
        yield dl3.render(planned.record, planned.observation)
    elif planned.content is Content.GZIP:
        mtime = int(planned.closed_at.timestamp())
        yield from gzip_bytes(planned.content_seed, planned.size, planned.name[: -len(".gz")], mtime)
    elif planned.content is Content.DL3_TEMPLATE:
        with dl3_template.open("rb") as template:
            while chunk := template.read(CHUNK):
                yield chunk
    else:
        yield from random_bytes(planned.content_seed, planned.size)


def _pieces(chunks: Iterable[bytes | memoryview], size: int, pieces: int) -> Iterator[list[bytes | memoryview]]:
    """Regroup chunks into ``pieces`` writes of about equal size (chunks are cut where needed)."""
    bounds = [size * index // pieces for index in range(1, pieces + 1)]
    current: list[bytes | memoryview] = []
    done = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            if not bounds:
                raise RuntimeError(f"the body is longer than the planned {size} bytes")
            room = bounds[0] - done
            part, view = view[:room], view[room:]
            current.append(part)
            done += len(part)
            if done == bounds[0]:
                yield current
                current = []
                bounds.pop(0)
                while bounds and bounds[0] == done:
                    bounds.pop(0)
    if current:
        yield current


def write_file(
    planned: PlannedFile,
    root: Path,
    spread: float = 0.0,
    pieces: int = 1,
    observe: Observer | None = None,
    dl3_template: Path = DEFAULT_DL3_TEMPLATE,
) -> int:
    """Write one file under its final name in ``pieces`` flushed writes spread over ``spread`` seconds."""
    target = root / planned.path
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    written = 0
    with target.open("wb") as handle:
        groups = _pieces(body(planned, dl3_template), planned.size, max(1, pieces))
        for index, group in enumerate(groups, start=1):
            for part in group:
                handle.write(part)
                written += len(part)
            handle.flush()
            if observe:
                observe(planned, written, False)
            if spread and index < pieces:
                time.sleep(max(0.0, start + spread * index / pieces - time.monotonic()))
    if written != planned.size:
        raise RuntimeError(f"{target}: wrote {written} bytes, planned {planned.size}")
    if observe:
        observe(planned, written, True)
    return written


def write_night(
    plan: list[PlannedFile],
    root: str | os.PathLike[str],
    trickle: float | None = None,
    pieces: int = 4,
    stamp_times: bool = False,
    observe: Observer | None = None,
    dl3_template: Path = DEFAULT_DL3_TEMPLATE,
) -> Written:
    """Write the plan below ``root`` in plan order.

    With ``trickle`` (seconds between files) each file grows in ``pieces`` writes over most of that
    interval. ``stamp_times`` sets each file's mtime to the time it would have been closed on site.
    """
    root = Path(root)
    started = time.monotonic()
    total = 0
    for index, planned in enumerate(plan):
        due = started + (trickle or 0) * index
        time.sleep(max(0.0, due - time.monotonic()))
        spread = 0.8 * trickle if trickle else 0.0
        total += write_file(planned, root, spread, pieces if trickle else 1, observe, dl3_template)
        if stamp_times:
            stamp = planned.closed_at.timestamp()
            os.utime(root / planned.path, (stamp, stamp))
    return Written(len(plan), total, time.monotonic() - started)
