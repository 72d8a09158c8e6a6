"""The life of one file from the observatory to its verified copies, as states and the moves between them.

Pure: the ledger stores these, the scanner and the carrier hook move files along them.
"""

from __future__ import annotations

from enum import Enum


class FileState(str, Enum):
    SEEN = "SEEN"  # listed on the source storage
    STABLE = "STABLE"  # size and mtime unchanged for the settle time
    CHECKSUMMED = "CHECKSUMMED"
    REGISTERED = "REGISTERED"  # replica on the source RSE, metadata set
    PROTECTED = "PROTECTED"  # attached, permanent and carrier rules in place
    REPLICATED = "REPLICATED"  # every destination lock OK
    VERIFIED = "VERIFIED"  # destination bytes read back and equal
    RELEASED = "RELEASED"  # source carrier rule removed: the reaper may delete the source copy
    DELETED = "DELETED"  # source copy gone
    REJECTED = "REJECTED"  # not a MAGIC name: left on storage, untouched
    QUARANTINED = "QUARANTINED"  # empty, shrinking or corrupt: left on storage for a person


DEAD_ENDS = frozenset({FileState.REJECTED, FileState.QUARANTINED})
FLOW = tuple(state for state in FileState if state not in DEAD_ENDS)  # from SEEN to DELETED, as declared above

# Where a file may go from each state. A failed verification sends a file back to PROTECTED, so that the
# re-transfer is awaited; a file that changes on storage before registration starts again from SEEN.
MOVES: dict[FileState, frozenset[FileState]] = {
    state: frozenset({FLOW[index + 1], *DEAD_ENDS}) for index, state in enumerate(FLOW[:-1])
}
MOVES[FileState.SEEN] |= {FileState.SEEN}
MOVES[FileState.STABLE] |= {FileState.SEEN}
MOVES[FileState.CHECKSUMMED] |= {FileState.SEEN}
MOVES[FileState.REPLICATED] |= {FileState.PROTECTED}
MOVES[FileState.VERIFIED] |= {FileState.PROTECTED}
MOVES[FileState.QUARANTINED] = frozenset({FileState.SEEN})  # an operator may put a file back in the flow
MOVES[FileState.REJECTED] = frozenset({FileState.SEEN})
MOVES[FileState.DELETED] = frozenset()

# Files in these states exist only at the source: losing the observatory disk would lose them.
UNSAFE = frozenset(FLOW[: FLOW.index(FileState.VERIFIED)])


class IllegalMove(ValueError):
    """A state change the flow does not allow: a bug, or two writers disagreeing."""


def check_move(current: FileState, target: FileState) -> None:
    if target not in MOVES[current]:
        raise IllegalMove(f"a file cannot go from {current.value} to {target.value}")


def timestamp_column(state: FileState) -> str:
    """The ledger column that keeps when a file last entered ``state``."""
    return f"{state.value.lower()}_at"


class CarrierState(str, Enum):
    OPEN = "OPEN"  # taking files
    CLOSING = "CLOSING"  # full or old: its dataset is being closed and its rules created
    PROTECTING = "PROTECTING"  # rules in place: waiting for the destination copies
    RELEASING = "RELEASING"  # every copy verified: the source rule is being removed
    GONE = "GONE"  # rules and dataset removed; the ledger remembers it
