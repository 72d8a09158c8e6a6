"""Rucio's cache of site settings kept for one registration transaction: read through, kept only inside the block,
only in its thread; writes and deletes still reach Rucio's cache."""

from __future__ import annotations

import threading

from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE

from rucio_magic_ext import rucio_internals
from rucio_magic_ext.rucio_internals import _Kept, site_settings_kept


def _region(backend: str = "dogpile.cache.null") -> object:
    region = make_region().configure(backend)
    region.wrap(_Kept())
    return region


def _keeping(region) -> None:  # type: ignore[no-untyped-def]
    region.backend.local.kept = {}


def test_without_memcached_a_value_is_kept_only_inside_the_block() -> None:
    region = _region()
    region.set("rse_attributes_x_staging_required", None)
    assert region.get("rse_attributes_x_staging_required") is NO_VALUE  # Rucio caches nothing
    _keeping(region)
    region.set("rse_attributes_x_staging_required", None)
    assert region.get("rse_attributes_x_staging_required") is None
    region.backend.local.kept = None
    assert region.get("rse_attributes_x_staging_required") is NO_VALUE


def test_reads_go_through_and_are_kept_until_the_block_ends() -> None:
    region = _region("dogpile.cache.memory")
    region.set("key", "first")
    _keeping(region)
    assert region.get("key") == "first"
    region.backend.proxied.set("key", region.backend.proxied.get("key")._replace(payload="changed"))
    assert region.get("key") == "first"  # read once per block
    region.backend.local.kept = None
    assert region.get("key") == "changed"


def test_writes_and_deletes_reach_rucios_cache() -> None:
    region = _region("dogpile.cache.memory")
    _keeping(region)
    region.set("key", "value")
    region.backend.local.kept = None
    assert region.get("key") == "value"
    _keeping(region)
    assert region.get("key") == "value"
    region.delete("key")
    assert region.get("key") is NO_VALUE
    region.backend.local.kept = None
    assert region.get("key") is NO_VALUE


def test_another_thread_is_not_kept() -> None:
    region = _region()
    _keeping(region)
    region.set("key", "mine")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(region.get("key")))
    thread.start()
    thread.join()
    assert region.get("key") == "mine" and seen == [NO_VALUE]


def test_the_block_keeps_rucios_site_settings_and_restores_them() -> None:
    from rucio.core import rse

    proxies = rucio_internals._kept_backends()
    assert isinstance(rse.REGION.backend, _Kept) and len(proxies) == len(rucio_internals.SITE_REGIONS)
    assert rucio_internals._kept_backends() == proxies  # put in front once
    with site_settings_kept():
        rse.REGION.set("magic-test-key", "kept")
        assert rse.REGION.get("magic-test-key") == "kept"
        with site_settings_kept():  # nested: the same keeping
            assert rse.REGION.get("magic-test-key") == "kept"
        assert rse.REGION.get("magic-test-key") == "kept"
    assert all(proxy._kept() is None for proxy in proxies)
    rse.REGION.delete("magic-test-key")
