"""Conventions every floor of the package shares: Rucio's times and logger, DIDs, bounded ``IN`` lists."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import TypeVar

from rucio.common.types import LoggerFunction

__all__ = ["CHUNK", "DID", "LoggerFunction", "RefusedToStart", "chunks", "utcnow"]

#: A DID as the project passes it around: (external scope, name).
DID = tuple[str, str]

CHUNK = 500  # bound on the size of one IN (...) list

T = TypeVar("T")


def utcnow() -> datetime:
    """Naive UTC, as Rucio stores its own times."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RefusedToStart(RuntimeError):
    """A daemon's settings would make it unsafe to run: the message says which, and what to change."""
