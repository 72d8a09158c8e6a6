"""Discover: list the observatory storage folder by folder and record every new file as SEEN.

A folder whose mtime has not moved since its last listing holds no new name, so only changed folders
are listed file by file: a cycle costs what is new, not what is known. A name that is not MAGIC's, or
that contradicts its folder, is recorded as REJECTED with the parser's reason and left on storage.

Whatever the storage holds, one entry or folder never stops the others. A name Rucio would refuse (bytes
that are not UTF-8, longer than Rucio's 250 characters, characters outside its pattern) is REJECTED with the
exact reason before anything is registered; an entry that is not a regular file (FIFO, socket, device, a
link out of the root) is REJECTED unopened. A folder that cannot be listed keeps its error in the ledger and
is tried again with backoff, while the folders after it are listed; only an outage of the whole storage or
database stops the stage.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import posixpath
import re
from datetime import datetime

from rucio_magic_ext import layout, monitoring
from rucio_magic_ext.common import utcnow
from rucio_magic_ext.daemons import outage_of
from rucio_magic_ext.ledger import FileState, Seen
from rucio_magic_ext.ledger.paths import bad_bytes, to_text
from rucio_magic_ext.ledger.store import FolderMark
from rucio_magic_ext.naming import MagicNameError, parse
from rucio_magic_ext.scanner.context import Context
from rucio_magic_ext.storage import Entry, Refused

ACTOR = "scanner.discover"
MAX_NAME = 250  # Rucio's limit on a DID name
RUCIO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_+]*", re.ASCII)  # the policy package's pattern, in a file name


def wanted(name: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in include) and not any(fnmatch.fnmatchcase(name, p) for p in exclude)


def refusal(path: str) -> tuple[str, str] | None:
    """(kind, reason) when Rucio could not take the file's name as it is, before the grammar is asked.

    ``path`` as the storage gave it: bytes that are not UTF-8 still there (as surrogates), not yet escaped.
    """
    name = posixpath.basename(path)
    if bad := bad_bytes(name):
        shown = ", ".join(f"0x{byte:02x} at byte {position}" for position, byte in bad[:8])
        return "not_utf8", f"file name is not UTF-8 ({shown}); Rucio takes UTF-8 names only"
    if bad := bad_bytes(posixpath.dirname(path)):
        shown = ", ".join(f"0x{byte:02x} at byte {position}" for position, byte in bad[:8])
        return "not_utf8", f"folder path is not UTF-8 ({shown}); Rucio takes UTF-8 paths only"
    if len(name) > MAX_NAME:
        return "name_too_long", f"name is {len(name)} characters long; Rucio takes at most {MAX_NAME}"
    return None


def describe(path: str, size: int, mtime: float) -> tuple[Seen, str | None]:
    """What the name and folder of a file say, or why the file is refused. ``path`` is ledger text."""
    name = posixpath.basename(path)
    try:
        record = parse(name)
        folder = layout.observatory_folder("/" + path)
        if folder is not None:
            layout.check_folder(record, folder)
        night = record.night or (folder.night if folder else None)
        placed = layout.placement(record, night)
    except MagicNameError as error:
        return Seen(path, size, mtime, name=name if len(name) <= MAX_NAME else None), f"{error.part}: {error.reason}"
    if not RUCIO_NAME.fullmatch(name):
        odd = sorted({char for char in name if not RUCIO_NAME.fullmatch("a" + char)})
        return Seen(path, size, mtime), f"characters Rucio refuses in a name: {''.join(odd)!r}"
    return Seen(path, size, mtime, placed.scope, name, night, record.level.value), None


def discover(context: Context) -> int:
    """Record the files that appeared since the last cycle; returns how many."""
    folders = context.ledger.folder_marks(context.rse)
    now = utcnow()
    added = 0
    for root in context.config.roots:
        for folder in context.storage.folders(context.native(root)):
            relative = to_text(context.relative(folder.path))
            known = folders.get(relative)
            if not context.mine(relative) or not _due(known, folder.mtime, now):
                continue
            try:
                if math.isnan(folder.mtime):
                    raise OSError(f"cannot stat the folder {folder.path}")
                added += _list_folder(context, folder.path)
            except Exception as error:
                if outage_of(error):
                    raise  # the whole storage or database: the cycle stops, no folder is blamed
                _folder_failed(context, relative, error)
                continue
            context.ledger.save_folders(context.rse, {relative: folder.mtime})  # after: a crash lists it again
            if known is not None and known.last_error:
                context.logger(logging.INFO, "folder %s lists again (it failed: %s)", relative, known.last_error)
    if added:
        context.logger(logging.INFO, "discover: %d new file(s) at %s", added, context.rse)
    return added


def _due(known: FolderMark | None, mtime: float, now: datetime) -> bool:
    """A folder is listed when its mtime moved, or when it failed before and its retry time has come."""
    if known is None:
        return True
    if known.last_error:
        return known.retry_after is None or known.retry_after <= now
    return known.mtime != mtime


def _list_folder(context: Context, folder: str) -> int:
    entries = [
        entry
        for entry in context.storage.files(folder)
        if wanted(posixpath.basename(entry.path), context.config.include, context.config.exclude)
    ]
    raw = [context.relative(entry.path) for entry in entries]
    paths = [to_text(path) for path in raw]
    known = context.ledger.known_paths(context.rse, paths)
    described: list[tuple[Seen, str | None]] = []
    kinds: dict[str, str] = {}
    for original, path, entry in zip(raw, paths, entries):
        if path in known:
            continue
        seen, why = _describe_entry(original, path, entry)
        if why is not None:
            kinds[path] = _kind(entry, why)
        described.append((seen, why))
    added = _add(context, [seen for seen, _ in described])
    _reject(context, {seen.path: why for seen, why in described if why}, kinds)
    return added


def _describe_entry(original: str, path: str, entry: Entry) -> tuple[Seen, str | None]:
    refused = refusal(original)
    if isinstance(entry, Refused):  # the storage refused it: not a regular file, a link out of the root
        name = posixpath.basename(path) if refused is None else None
        return Seen(path, entry.size, entry.mtime, name=name), entry.reason
    if refused is not None:
        return Seen(path, entry.size, entry.mtime), refused[1]
    return describe(path, entry.size, entry.mtime)


def _kind(entry: Entry, why: str) -> str:
    if isinstance(entry, Refused):
        return "symlink" if entry.link else "not_regular"
    if "not UTF-8" in why:
        return "not_utf8"
    if "long" in why and str(MAX_NAME) in why:
        return "name_too_long"
    if "characters Rucio refuses" in why:
        return "name_characters"
    return "not_magic"


def _add(context: Context, seen: list[Seen]) -> int:
    """All at once; should that fail for one row, one by one, so that one entry never holds back its folder."""
    try:
        return context.ledger.add_seen(context.rse, seen, ACTOR)
    except Exception as error:
        if outage_of(error) or len(seen) <= 1:
            raise
    added, failed = 0, []
    for one in seen:
        try:
            added += context.ledger.add_seen(context.rse, [one], ACTOR)
        except Exception as error:
            if outage_of(error):
                raise
            failed.append(f"{one.path}: {str(error).splitlines()[0][:200]}")
    if failed:
        raise RuntimeError(f"{len(failed)} entr{'y' if len(failed) == 1 else 'ies'} could not be recorded: {failed[0]}")
    return added


def _folder_failed(context: Context, relative: str, error: BaseException) -> None:
    why = f"{type(error).__name__}: {error}" if not isinstance(error, OSError) else str(error)
    retry = context.ledger.folder_failed(context.rse, relative, why, context.config.retry)
    monitoring.odd_entry("folder_unreadable")
    context.logger(logging.WARNING, "folder %s cannot be listed, next try %s: %s", relative, f"{retry:%H:%M:%S}", why)


def _reject(context: Context, reasons: dict[str, str], kinds: dict[str, str]) -> None:
    if not reasons:
        return
    rows = context.ledger.known(context.rse, list(reasons))
    for path, row in rows.items():
        if row.state is FileState.SEEN:
            context.ledger.set_aside([row], FileState.REJECTED, ACTOR, reasons[path])
            monitoring.odd_entry(kinds.get(path, "not_magic"))
            context.logger(logging.WARNING, "rejected %s: %s (left on storage)", path, reasons[path])
