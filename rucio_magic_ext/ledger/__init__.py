"""The ledger: what happened to every file seen at the observatory, and when."""

from rucio_magic_ext.ledger.states import FileState
from rucio_magic_ext.ledger.store import Ledger, LostRace, Seen

__all__ = ["FileState", "Ledger", "LostRace", "Seen"]
