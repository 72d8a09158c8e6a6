"""A storage path as ledger text and back, losslessly, whatever bytes the file name holds.

PostgreSQL refuses text that is not valid UTF-8, and a name may hold any byte but '/' and NUL (``os.scandir``
gives such bytes as lone surrogates). Each byte that is not UTF-8 is written ``\\xNN`` and a backslash ``\\\\``;
every other path (all MAGIC paths) is its own text, and two different paths never share one text.
"""

from __future__ import annotations

import os
import re

_ESCAPED = re.compile(r"\\(\\|x[0-9a-f]{2})")


def to_text(path: str) -> str:
    """The ledger text of a path as the storage gave it (possibly with surrogate-escaped bytes)."""
    if "\\" not in path and _is_utf8(path):
        return path
    raw = os.fsencode(path)
    text = raw.decode("utf-8", "surrogateescape").replace("\\", "\\\\")
    return "".join(f"\\x{ord(char) - 0xDC00:02x}" if 0xDC80 <= ord(char) <= 0xDCFF else char for char in text)


def from_text(text: str) -> str:
    """The path a ledger text stands for, as the storage takes it (bytes not UTF-8 as lone surrogates)."""
    if "\\" not in text:
        return text
    return _ESCAPED.sub(lambda m: "\\" if m[1] == "\\" else chr(0xDC00 + int(m[1][1:], 16)), text)


def bad_bytes(path: str) -> list[tuple[int, int]]:
    """(position, byte) of every byte of ``path`` (as the storage gave it, not ledger text) that is not UTF-8."""
    text = os.fsencode(path).decode("utf-8", "surrogateescape")
    found, position = [], 0
    for char in text:
        encoded = char.encode("utf-8", "surrogateescape")
        if 0xDC80 <= ord(char) <= 0xDCFF:
            found.append((position, ord(char) - 0xDC00))
        position += len(encoded)
    return found


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
