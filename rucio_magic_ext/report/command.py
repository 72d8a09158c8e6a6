"""``rucio-magic report``: the flow over a time range, from the ledger, as a timeline plot and a per-night table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rucio_magic_ext.report.plot import PlotUnavailable

DEFAULT_SINCE = "7d"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``report`` on ``rucio-magic``'s subcommands."""
    report = subparsers.add_parser(
        "report",
        help="the flow over a time range: a timeline plot (PNG) and a per-night table of counts, bytes, latencies",
        description="Reads the ledger configured in rucio.cfg, or the one --ledger-url names. Times are UTC.",
    )
    report.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        help="start: an ISO date or date-time (2020-01-04, 2020-01-04T06:30), or a duration back from now "
        "(90m, 12h, 7d, 2w); default: %(default)s",
    )
    report.add_argument("--until", help="end, in the same forms (default: now)")
    report.add_argument("--rse", help="one source RSE only (default: every source RSE in the ledger)")
    report.add_argument("--plot", type=Path, metavar="FILE.png", help="write the timeline plot here")
    report.add_argument(
        "--table",
        type=Path,
        metavar="FILE",
        help="write the per-night table here, as CSV (.csv) or Markdown (.md); default: Markdown on stdout",
    )
    report.add_argument("--ledger-url", help="read this ledger database instead of the configured one")
    report.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check every input before reading the ledger, so a typo costs no query; exit 2 on bad input."""
    from sqlalchemy.exc import DBAPIError

    from rucio_magic_ext.common import utcnow
    from rucio_magic_ext.ledger import Ledger
    from rucio_magic_ext.report import write
    from rucio_magic_ext.report.query import load_rows
    from rucio_magic_ext.report.window import parse_window

    try:
        since, until = parse_window(args.since, args.until, utcnow())
        if args.table:
            write.check_table_path(args.table)
        if args.plot:
            write.check_plot_path(args.plot)
    except ValueError as error:
        print(f"rucio-magic report: {error}", file=sys.stderr)
        return 2
    ledger = Ledger.from_url(args.ledger_url) if args.ledger_url else Ledger.from_config()
    try:
        rows = load_rows(ledger, since, until, args.rse)
    except DBAPIError as error:
        print(f"rucio-magic report: cannot read the ledger: {error.orig}", file=sys.stderr)
        return 1
    if args.plot:
        try:
            print(f"plot: {write.write_plot(rows, args.plot, since, until, args.rse or '')}")
        except PlotUnavailable as error:
            print(f"rucio-magic report: {error}", file=sys.stderr)
            return 1
    if args.table:
        print(f"table: {write.write_table(rows, args.table)}")
    else:
        print(write.render_table(rows), end="")
    return 0
