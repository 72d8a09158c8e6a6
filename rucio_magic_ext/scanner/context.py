"""What every stage of a scanner cycle works with: settings, ledger, catalogue, storage, its share of work."""

from __future__ import annotations

import logging
import posixpath
import zlib
from dataclasses import dataclass, field
from typing import Any

from rucio_magic_ext.carrier.life import Carriers
from rucio_magic_ext.common import LoggerFunction
from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.ledger.models import LedgerFile
from rucio_magic_ext.ledger.paths import from_text
from rucio_magic_ext.replication import ReplicationPolicy
from rucio_magic_ext.scanner.catalogue import Catalogue
from rucio_magic_ext.scanner.config import ScannerConfig
from rucio_magic_ext.storage import AccessRefused, Storage, StorageUnavailable


@dataclass
class Context:
    config: ScannerConfig
    ledger: Ledger
    catalogue: Catalogue
    storage: Storage
    policy: ReplicationPolicy
    root: str  # native path of the RSE's prefix on the storage
    worker: int = 0
    workers: int = 1
    logger: LoggerFunction = logging.log
    carriers: Carriers = field(init=False)
    census_taken: float | None = None  # time.monotonic() of the last census
    outages: dict[str, str] = field(default_factory=dict)  # service -> why, while it does not answer

    def __post_init__(self) -> None:
        # The logger changes with each cycle's heartbeat: the carriers log through whichever is current.
        self.carriers = Carriers(
            self.ledger, self.rse, self.config.account, self.policy, lambda *args, **kw: self.logger(*args, **kw)
        )

    @property
    def rse(self) -> str:
        return self.config.rse

    def native(self, path: str) -> str:
        """Native path of a ledger path (relative to the RSE's prefix; bytes not UTF-8 escaped, ledger/paths.py)."""
        return posixpath.join(self.root, from_text(path))

    def storage_present(self) -> bool:
        """Whether the RSE's root is there and lists: an unmounted or renamed-away storage is an outage, not
        a reason to think its files are gone."""
        try:
            first = next(iter(self.storage.folders(self.root)), None)
        except AccessRefused:
            raise  # the storage is there and refuses this process: its reason is the credential's
        except OSError:
            return False
        return first is not None and first.mtime == first.mtime  # a NaN mtime: the root cannot even be stat'ed

    def require_root(self) -> None:
        """A file not found says nothing of the file while the root is gone with it: that is an outage."""
        if not self.storage_present():
            raise StorageUnavailable(f"the storage root {self.root} is not there")

    def folder_present(self, path: str) -> bool:
        """Whether the folder of a ledger path is there (and the storage's root with it)."""
        folder = posixpath.dirname(self.native(path))
        try:
            first = next(iter(self.storage.folders(folder)), None)
        except AccessRefused:
            raise
        except OSError:
            return False
        return first is not None and first.mtime == first.mtime

    def relative(self, native: str) -> str:
        return posixpath.relpath(native, self.root) if native != self.root else ""

    def due(self, state: FileState, **options: Any) -> list[LedgerFile]:
        """This worker's share of the files waiting in ``state``, one batch."""
        return self.ledger.due(self.rse, [state], self.config.batch_size, self.worker, self.workers, **options)

    def mine(self, key: str) -> bool:
        """Whether a folder or carrier falls to this worker: a stable hash, the same in every process."""
        return self.workers <= 1 or zlib.crc32(key.encode()) % self.workers == self.worker
