"""A gammapy data store of selected DL3 runs: the files downloaded (or found where the storage is mounted) and
the GADF index tables written beside them. Downloads go through Rucio's ``DownloadClient`` (adler32 checked) into
``DIR/<scope>/<name>``; without a download the index points at the paths of the replicas' PFNs at one RSE.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from astropy.io import fits

from rucio_magic_ext.dl3.index import IndexedFile, hdu_index, obs_index

HDU_INDEX = "hdu-index.fits.gz"
OBS_INDEX = "obs-index.fits.gz"
LOCAL_SCHEMES = ("file", "")
Rows = Sequence[Mapping[str, Any]]  # metadata of DL3 files with scope and name, as selection.find gives them


class NotMounted(LookupError):
    """A selected file has no replica whose path the index could use: the message names the files."""


def download(client: Any, rows: Rows, directory: Path, rse: str | None = None) -> list[IndexedFile]:
    """Download the rows' files into ``directory`` (checksums verified by Rucio) and place them for the index."""
    from rucio.client.downloadclient import DownloadClient

    where = {"rse": rse} if rse else {}
    items = [{"did": f"{row['scope']}:{row['name']}", "base_dir": str(directory), **where} for row in rows]
    done = DownloadClient(client=client).download_dids(items) if items else []
    paths = {str(item["did"]): Path(item["dest_file_paths"][0]) for item in done}
    placed = []
    for row in rows:
        path = paths[f"{row['scope']}:{row['name']}"]
        placed.append(IndexedFile(row, os.path.relpath(path.parent, directory), path.name))
    return placed


def mounted(client: Any, rows: Rows, rse: str | None = None) -> list[IndexedFile]:
    """Place the rows' files at their replicas' paths: at ``rse``, or the first replica with a local PFN."""
    dids = [{"scope": row["scope"], "name": row["name"]} for row in rows]
    chosen = {}
    for replica in client.list_replicas(dids, rse_expression=rse):
        if (pfn := replica_path(replica["pfns"], rse)) is not None:
            chosen[replica["name"]] = pfn
    missing = [row["name"] for row in rows if row["name"] not in chosen]
    if missing:
        where = f"at {rse}" if rse else "with a file:// PFN"
        raise NotMounted(f"no replica {where} for: {', '.join(missing)}")
    return [IndexedFile(row, str(chosen[row["name"]].parent), chosen[row["name"]].name) for row in rows]


def replica_path(pfns: Mapping[str, Mapping[str, Any]], rse: str | None = None) -> Path | None:
    """The path part of the PFN to use: at ``rse`` (a local one first), else the first local PFN of any RSE."""
    ordered = sorted(pfns.items(), key=lambda item: (item[1].get("priority", 0), item[1].get("rse", "")))
    at_rse = [pfn for pfn, info in ordered if rse is None or info.get("rse") == rse]
    local = [pfn for pfn in at_rse if urlparse(pfn).scheme in LOCAL_SCHEMES]
    found = (local or ([] if rse is None else at_rse))[:1]
    return Path("/" + urlparse(found[0]).path.lstrip("/")) if found else None


def write_index(files: Sequence[IndexedFile], directory: Path) -> tuple[Path, Path]:
    """Write ``hdu-index.fits.gz`` and ``obs-index.fits.gz`` into ``directory``, replacing older ones."""
    written = directory / HDU_INDEX, directory / OBS_INDEX
    for path, table in zip(written, (hdu_index(files), obs_index(files))):
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, overwrite=True)
    return written


def fetch(
    client: Any, rows: Rows, directory: Path, *, no_download: bool = False, rse: str | None = None
) -> list[IndexedFile]:
    """Make ``directory`` a gammapy data store of ``rows`` (from ``selection.find``); the files as indexed."""
    directory.mkdir(parents=True, exist_ok=True)
    placed = mounted(client, rows, rse) if no_download else download(client, rows, directory, rse)
    if placed:
        write_index(placed, directory)
    return placed
