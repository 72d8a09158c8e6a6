"""Discover: list the observatory storage folder by folder and record every new file as SEEN.

A folder whose mtime has not moved since its last listing holds no new name, so only changed folders
are listed file by file: a cycle costs what is new, not what is known. A name that is not MAGIC's, or
that contradicts its folder, is recorded as REJECTED with the parser's reason and left on storage.
"""

from __future__ import annotations

import fnmatch
import logging
import posixpath

from rucio_magic_ext import layout
from rucio_magic_ext.ledger import FileState, Seen
from rucio_magic_ext.naming import MagicNameError, parse
from rucio_magic_ext.scanner.context import Context

ACTOR = "scanner.discover"


def wanted(name: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in include) and not any(fnmatch.fnmatchcase(name, p) for p in exclude)


def describe(path: str, size: int, mtime: float) -> tuple[Seen, str | None]:
    """What the name and folder of a file say, or why the file is refused."""
    name = posixpath.basename(path)
    try:
        record = parse(name)
        folder = layout.observatory_folder("/" + path)
        if folder is not None:
            layout.check_folder(record, folder)
        night = record.night or (folder.night if folder else None)
        placed = layout.placement(record, night)
    except MagicNameError as error:
        return Seen(path, size, mtime, name=name), f"{error.part}: {error.reason}"
    return Seen(path, size, mtime, placed.scope, name, night, record.level.value), None


def discover(context: Context) -> int:
    """Record the files that appeared since the last cycle; returns how many."""
    known_folders = context.ledger.folder_mtimes(context.rse)
    added = 0
    for root in context.config.roots:
        for folder in context.storage.folders(context.native(root)):
            relative = context.relative(folder.path)
            if not context.mine(relative) or known_folders.get(relative) == folder.mtime:
                continue
            entries = [
                entry
                for entry in context.storage.files(folder.path)
                if wanted(posixpath.basename(entry.path), context.config.include, context.config.exclude)
            ]
            paths = [context.relative(entry.path) for entry in entries]
            known = context.ledger.known(context.rse, paths)
            described = [describe(path, e.size, e.mtime) for path, e in zip(paths, entries) if path not in known]
            added += context.ledger.add_seen(context.rse, [seen for seen, _ in described], ACTOR)
            _reject(context, {seen.path: why for seen, why in described if why})
            context.ledger.save_folders(context.rse, {relative: folder.mtime})  # after: a crash lists it again
    if added:
        context.logger(logging.INFO, "discover: %d new file(s) at %s", added, context.rse)
    return added


def _reject(context: Context, reasons: dict[str, str]) -> None:
    if not reasons:
        return
    rows = context.ledger.known(context.rse, list(reasons))
    for path, row in rows.items():
        if row.state is FileState.SEEN:
            context.ledger.set_aside([row], FileState.REJECTED, ACTOR, reasons[path])
            context.logger(logging.WARNING, "rejected %s: %s (left on storage)", path, reasons[path])
