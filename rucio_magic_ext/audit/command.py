"""``rucio-magic audit RSE``: every byte of an RSE accounted for by its storage, Rucio and the ledger. Exit 0
when nothing is out of place, 1 when something is (or acting was refused), 2 on an error (a storage that does not
list, a database that does not answer: nothing is concluded from a view that could not be read).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from rucio_magic_ext.audit.classes import DEFAULT_MIN_AGE

DEFAULT_MAX_FRACTION = 0.05
_DURATION = re.compile(r"(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhdw]?)", re.ASCII)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Settings:
    """What the audit takes from the scanner's section of rucio.cfg."""

    source_rse: str
    account: str
    replication_policy: Path
    roots: tuple[str, ...] = ("",)


def duration(text: str) -> timedelta:
    """``90``, ``90s``, ``30m``, ``12h``, ``1d``, ``2w``."""
    found = _DURATION.fullmatch(text.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 30m, 12h, 1d)")
    return timedelta(seconds=float(found["amount"]) * _UNITS[found["unit"]])


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a fraction is between 0 and 1, not {text}")
    return value


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    handler: Callable[[argparse.Namespace], int],
) -> None:
    """Register ``audit`` on ``rucio-magic``'s subcommands; ``handler`` reads the settings and calls ``run``."""
    audit = subparsers.add_parser(
        "audit",
        help="compare an RSE's storage, Rucio's replicas and the ledger: dark, lost, ledger-only files and more",
        description="Runs server-side: reads the RSE's storage through its read protocol, Rucio's database and the "
        "ledger configured in rucio.cfg. Exit 0 when nothing is out of place, 1 when something is, 2 on error.",
    )
    audit.add_argument("rse", help="the RSE: the observatory's (the scanner's) or a destination")
    audit.add_argument(
        "--night",
        type=date.fromisoformat,
        help="only the files (by their path at the RSE) and collections of a night, YYYY-MM-DD",
    )
    audit.add_argument("--checksums", action="store_true", help="also compare adler32 (reads the files' data)")
    audit.add_argument("--output", type=Path, metavar="DIR", help="write a list per class and the stats file here")
    audit.add_argument(
        "--fix",
        action="store_true",
        help="act: declare lost copies bad, hand dark files to the "
        "scanner, record files gone, close orphan carriers whose files are all proven, make missing policy rules "
        "again",
    )
    audit.add_argument("--dry-run", action="store_true", help="with --fix: say what would be done, do nothing")
    audit.add_argument(
        "--max-fraction",
        type=fraction,
        default=DEFAULT_MAX_FRACTION,
        help="refuse to act when more of the files than this are out of place (default %(default)s)",
    )
    audit.add_argument(
        "--min-age",
        type=duration,
        default=DEFAULT_MIN_AGE,
        help="dark files younger than this are the scanner's business (default 1d)",
    )
    audit.add_argument(
        "--replica-dump",
        type=Path,
        metavar="FILE",
        help="read Rucio's replicas from a replica dump (tab-separated, as Rucio's dumps) instead of its database",
    )
    audit.add_argument("--show", type=int, default=10, metavar="N", help="findings shown per class (default 10)")
    audit.set_defaults(handler=handler)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return _run(args, settings)
    except Exception as error:
        logging.getLogger(__name__).debug("audit failed", exc_info=True)
        print(f"rucio-magic audit: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from rucio_magic_ext.audit import output, views
    from rucio_magic_ext.audit.classes import classify
    from rucio_magic_ext.audit.fix import Fixer
    from rucio_magic_ext.common import utcnow
    from rucio_magic_ext.ledger import Ledger
    from rucio_magic_ext.replication import load_policy

    if args.dry_run and not args.fix:
        print("rucio-magic audit: --dry-run goes with --fix", file=sys.stderr)
        return 2
    policy = load_policy(settings.replication_policy)
    ledger = Ledger.from_config()
    where = views.place(args.rse)
    taken_at = utcnow()
    dump = views.open_dump(args.replica_dump) if args.replica_dump else None
    try:
        seen = views.read(
            args.rse, settings.source_rse, ledger, policy.rules, args.night, settings.roots, dump, where,
            account=settings.account,
        )
        checksum = views.checksum_reader(where) if args.checksums else None
        findings = classify(seen, taken_at, args.min_age, checksum)
    finally:
        if dump is not None:
            dump.close()
    print(output.summary(findings, taken_at, args.show))
    actions: list[str] = []
    refused = False
    if args.fix and not findings.clean:
        if findings.fraction > args.max_fraction:
            refused = True
            print(
                f"\nnot acting: {findings.fraction:.2%} of the files are out of place, more than --max-fraction "
                f"{args.max_fraction:.2%}: the listing or the records are more likely wrong than the files",
                file=sys.stderr,
            )
        else:
            fixer = Fixer(ledger, args.rse, findings.source, settings.account, args.dry_run, policy=policy.rules)
            outcome = fixer.fix(findings)
            actions = outcome.done
            _print_actions(outcome.done, outcome.left, args.dry_run)
    if args.output:
        for path in output.write_lists(findings, args.output, taken_at, actions):
            logging.getLogger(__name__).debug("wrote %s", path)
        print(f"\nlists written to {args.output}")
    return 0 if findings.clean and not refused else 1


def _print_actions(done: Sequence[str], left: Sequence[str], dry_run: bool) -> None:
    title = "would do (dry run)" if dry_run else "done"
    print(f"\n{title} ({len(done)}):")
    print("\n".join(f"  {line}" for line in done) or "  nothing")
    if left:
        print(f"\nleft for a person ({len(left)}):")
        print("\n".join(f"  {line}" for line in left))
