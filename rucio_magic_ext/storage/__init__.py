"""Storage access on an RSE: list, stat, checksum and copy, one module per URL scheme."""

from rucio_magic_ext.storage.base import CopyResult, Entry, Folder, OutsideRoot, Storage
from rucio_magic_ext.storage.registry import get_storage, register_storage, scheme_of, supported_schemes

__all__ = [
    "CopyResult",
    "Entry",
    "Folder",
    "OutsideRoot",
    "Storage",
    "get_storage",
    "register_storage",
    "scheme_of",
    "supported_schemes",
]
