"""``rucio-magic dl3 find`` and ``dl3 fetch``: DL3 runs chosen by what their headers say, listed or made into a
gammapy data store. Client-side: the Rucio client reads rucio.cfg (``RUCIO_CONFIG``) as Rucio's own commands do."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tabulate import tabulate

from rucio_magic_ext.dl3.selection import Selection

COLUMNS = (
    ("OBS_ID", "obs_id"),
    ("source", "source"),
    ("night", "night"),
    ("tstart", "tstart"),
    ("livetime", "livetime"),
    ("zenith", "zen_pnt"),
    ("ra_pnt", "ra_pnt"),
    ("dec_pnt", "dec_pnt"),
    ("name", "name"),
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dl3`` and its ``find`` and ``fetch`` on ``rucio-magic``'s subcommands."""
    dl3 = subparsers.add_parser("dl3", help="find DL3 runs by their headers, and fetch them as a gammapy data store")
    actions = dl3.add_subparsers(dest="dl3_command", required=True)
    find = actions.add_parser(
        "find",
        help="list the DL3 runs a selection matches",
        description="Rucio's server selects on the files' metadata (scope magic_dl3). Times are UTC.",
    )
    _selection_flags(find)
    find.add_argument("--json", action="store_true", help="print every run's whole metadata as JSON, for scripts")
    find.set_defaults(handler=run_find)
    fetch = actions.add_parser(
        "fetch",
        help="download the selected runs into DIR and write hdu-index.fits.gz and obs-index.fits.gz there",
        description="DIR then opens with gammapy's DataStore.from_dir(DIR). Downloads are checked against the "
        "catalogue's adler32 and land in DIR/magic_dl3/.",
    )
    _selection_flags(fetch)
    fetch.add_argument("directory", type=Path, metavar="DIR", help="the data store's directory (made if missing)")
    fetch.add_argument(
        "--no-download",
        action="store_true",
        help="download nothing: the index points at the replicas' own paths (a site that mounts the storage)",
    )
    fetch.add_argument(
        "--rse",
        help="download from this RSE expression; with --no-download, the RSE whose paths the index uses "
        "(default: the first replica with a file:// PFN)",
    )
    fetch.set_defaults(handler=run_fetch)


def _selection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="the source as in the file names (Rucio's * wildcard allowed)")
    parser.add_argument("--night", type=date.fromisoformat, help="the night, YYYY-MM-DD, as in the file names")
    parser.add_argument("--start", type=_utc, help="runs that start at or after this ISO time")
    parser.add_argument("--end", type=_utc, help="runs that stop at or before this ISO time")
    parser.add_argument("--zenith-min", type=float, metavar="DEG", help="pointing zenith angle at least DEG")
    parser.add_argument("--zenith-max", type=float, metavar="DEG", help="pointing zenith angle at most DEG")
    parser.add_argument("--min-livetime", type=float, metavar="SECONDS", help="livetime at least SECONDS")
    parser.add_argument("--telescope", help="the headers' TELESCOP, e.g. MAGIC")


def _utc(text: str) -> datetime:
    """An ISO time; one without a zone is UTC."""
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def selection_of(args: argparse.Namespace) -> Selection:
    """The selection flags, named as the fields of ``Selection``."""
    return Selection(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Selection)})


def render(rows: Sequence[Mapping[str, Any]]) -> str:
    """The runs as a table, with a count under it."""
    table = [[_shown(row.get(key)) for _, key in COLUMNS] for row in rows]
    return f"{tabulate(table, headers=[title for title, _ in COLUMNS])}\n{len(rows)} run(s)"


def _shown(value: Any) -> Any:
    return round(value, 2) if isinstance(value, float) else value


def run_find(args: argparse.Namespace) -> int:
    from rucio.client import Client

    from rucio_magic_ext.dl3.selection import find

    rows = find(Client(), selection_of(args))
    print(json.dumps(rows, indent=2, default=str) if args.json else render(rows))
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from rucio.client import Client

    from rucio_magic_ext.dl3.fetch import NotMounted, fetch
    from rucio_magic_ext.dl3.selection import find

    client = Client()
    rows = find(client, selection_of(args))
    if not rows:
        print("rucio-magic dl3 fetch: no DL3 run matches the selection", file=sys.stderr)
        return 1
    try:
        placed = fetch(client, rows, args.directory, no_download=args.no_download, rse=args.rse)
    except NotMounted as error:
        print(f"rucio-magic dl3 fetch: {error}", file=sys.stderr)
        return 1
    print(render(rows))
    where = "at their replicas" if args.no_download else "downloaded"
    print(f"{len(placed)} file(s) {where}; gammapy: DataStore.from_dir({str(args.directory)!r})")
    return 0
