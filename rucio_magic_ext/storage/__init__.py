"""Storage access on an RSE: list, stat, checksum and copy, one module per URL scheme."""

from rucio_magic_ext.storage.base import (
    AccessRefused,
    ChecksumMismatch,
    CopyResult,
    Entry,
    Folder,
    OutsideRoot,
    ProvenChecksums,
    Refused,
    Storage,
    StorageUnavailable,
)
from rucio_magic_ext.storage.registry import (
    get_storage,
    protocol_root,
    register_storage,
    scheme_of,
    storage_for_pfn,
    supported_schemes,
)

__all__ = [
    "AccessRefused",
    "ChecksumMismatch",
    "CopyResult",
    "Entry",
    "Folder",
    "OutsideRoot",
    "ProvenChecksums",
    "Refused",
    "Storage",
    "StorageUnavailable",
    "get_storage",
    "protocol_root",
    "register_storage",
    "scheme_of",
    "storage_for_pfn",
    "supported_schemes",
]
