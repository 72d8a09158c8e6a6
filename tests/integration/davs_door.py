"""Rucio's webdav protocol for a davs door, for the tests' RSEs only.

Rucio's webdav protocol joins the protocol's scheme into its URLs, and ``requests`` has no adapter for davs://;
sites name ``rucio.rse.protocols.gfal.Default`` for davs, which needs gfal2, absent here. ``Davs`` is Rucio's
webdav protocol with https:// URLs (what davs:// means) and nothing else changed.
"""

from __future__ import annotations

import re

from rucio.rse.protocols import webdav


class Davs(webdav.Default):
    def path2pfn(self, path: str) -> str:
        return re.sub(r"^davs://", "https://", super().path2pfn(re.sub(r"^davs://", "https://", path)))
