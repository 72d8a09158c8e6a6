"""From a URL scheme to the storage implementation that serves it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from rucio_magic_ext.storage.base import OutsideRoot, Storage
from rucio_magic_ext.storage.credentials import OPEN, Credentials
from rucio_magic_ext.storage.posix import PosixStorage

#: Makes a storage confined to `root` (a URL or native path), or not confined when `root` is None, presenting
#: `credentials` where the server asks for them.
StorageFactory = Callable[..., Storage]


def _posix(root: str | None = None, credentials: Credentials = OPEN) -> Storage:
    return PosixStorage(root=root)  # a local folder asks for none


def _xrootd(root: str | None = None, credentials: Credentials = OPEN) -> Storage:
    from rucio_magic_ext.storage.xroot import XRootDStorage  # needs XRootD's client (extra "xrootd")

    return XRootDStorage(root=root, credentials=credentials)


def _webdav(root: str | None = None, credentials: Credentials = OPEN) -> Storage:
    from rucio_magic_ext.storage.webdav import WebDAVStorage

    return WebDAVStorage(root=root, credentials=credentials)


_FACTORIES: dict[str, StorageFactory] = {
    PosixStorage.scheme: _posix,
    **dict.fromkeys(("root", "roots"), _xrootd),
    **dict.fromkeys(("davs", "https", "http"), _webdav),
}


def register_storage(scheme: str, factory: StorageFactory) -> None:
    """Serve `scheme` with `factory`, called as `factory(root=root, credentials=credentials)`."""
    _FACTORIES[scheme] = factory


def supported_schemes() -> frozenset[str]:
    return frozenset(_FACTORIES)


def scheme_of(url_or_scheme: str) -> str:
    """The scheme of a URL; a bare absolute path is a local file, a bare word is a scheme."""
    if "://" in url_or_scheme:
        return urlsplit(url_or_scheme).scheme
    if url_or_scheme.startswith("/"):
        return PosixStorage.scheme
    return url_or_scheme


def get_storage(url_or_scheme: str, root: str | None = None, credentials: Credentials = OPEN) -> Storage:
    """The storage for a URL (`file://host/path`, `root://...`), a local path, or a scheme name; with `root`
    (the RSE protocol's prefix) it refuses, with OutsideRoot, every location that is not at or under it."""
    scheme = scheme_of(url_or_scheme)
    try:
        factory = _FACTORIES[scheme]
    except KeyError:
        raise ValueError(f"no storage implementation for scheme {scheme!r}") from None
    return factory(root=root, credentials=credentials)


def protocol_root(protocol: Mapping[str, Any]) -> str:
    """The root of an RSE protocol's storage as a URL (`scheme://hostname:port/prefix`), from Rucio's protocol
    attributes: every PFN the protocol builds starts with it, so a storage confined to it reads and writes
    nothing that the RSE's admin did not put under the prefix."""
    prefix = "/" + str(protocol.get("prefix") or "").strip("/")
    return f"{protocol['scheme']}://{protocol['hostname']}:{protocol['port']}{prefix}"


def storage_for_pfn(pfn: str, protocols: Iterable[Mapping[str, Any]], credentials: Credentials = OPEN) -> Storage:
    """The storage of `pfn`, confined to the root of the first of an RSE's `protocols` whose prefix holds it;
    OutsideRoot when none does: such a PFN was not built by the RSE's protocols, and nothing is read there."""
    scheme = scheme_of(pfn)
    roots = [protocol_root(protocol) for protocol in protocols if protocol.get("scheme") == scheme]
    for root in roots:
        storage = get_storage(pfn, root=root, credentials=credentials)
        try:
            storage.path_of(pfn)
        except OutsideRoot:
            continue
        return storage
    raise OutsideRoot(pfn, ", ".join(roots) or f"(no {scheme}:// protocol)", "no protocol prefix of its RSE holds it")
