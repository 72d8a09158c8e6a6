"""``rucio-magic``: the MAGIC extension's command line, one subcommand per task."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

Handler = Callable[[argparse.Namespace], int]
if TYPE_CHECKING:  # subscriptable for type checkers only
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _bootstrap(args: argparse.Namespace) -> int:
    from rucio_magic_ext.site import SiteError, bootstrap, load_site

    defines = dict(item.split("=", 1) for item in args.define)
    try:
        site = load_site(args.site or ["etc/site.cfg"], defines)
    except SiteError as error:
        print(f"rucio-magic bootstrap: {error}", file=sys.stderr)
        return 2
    print(f"site: {', '.join(args.site or ['etc/site.cfg'])}")
    changes = bootstrap(site)
    print("\n".join(changes) if changes else "site already bootstrapped: nothing changed")
    return 0


def _examples(args: argparse.Namespace) -> int:
    from rucio_magic_ext.site import EXAMPLES, write_examples

    names = ("database", "host", "port", "root_identity", "root_password")
    values = {name: str(getattr(args, name)) for name in names}
    args.directory.mkdir(parents=True, exist_ok=True)
    written = write_examples(args.directory, values, trial=args.trial)
    for path in written:
        print(f"wrote {path}")
    if len(written) < len(EXAMPLES):
        print(f"{args.directory}: the files already there were kept")
    print(f"next: export RUCIO_CONFIG={args.directory.resolve() / 'rucio.cfg'}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from rucio_magic_ext.ledger import Ledger
    from rucio_magic_ext.scanner.config import load_config

    rse = args.rse or load_config().rse
    found = Ledger.from_config().history(rse, args.file)
    if not found:
        print(f"{args.file}: not in the ledger of {rse}")
        return 1
    for row, events in found:
        print(f"{row.rse}:{row.path}  {row.scope}:{row.name}")
        print(f"  {row.size} bytes, adler32 {row.adler32}, now {row.state.value}")
        for event in events:
            print(f"  {event.at:%Y-%m-%d %H:%M:%S}  {event.state.value:<11}  {event.actor:<17}  {event.detail or ''}")
    return 0


def _retry(args: argparse.Namespace) -> int:
    import getpass
    from datetime import date

    from rucio_magic_ext.ledger import FileState, Ledger
    from rucio_magic_ext.scanner.config import load_config

    if not args.paths and not args.state:
        print("rucio-magic retry: name the files (PATH ...) or a state (--state QUARANTINED)", file=sys.stderr)
        return 2
    rse = args.rse or load_config().rse
    night = date.fromisoformat(args.night) if args.night else None
    state = FileState(args.state) if args.state else None
    who = args.who or getpass.getuser()
    back = Ledger.from_config().retry(rse, who, args.why, paths=args.paths, state=state, night=night)
    for row in back:
        print(f"{row.path}: {row.state.value}")
    print(f"{len(back)} file(s) put back into the flow at {rse} by {who}: {args.why}")
    missing = [path for path in args.paths if path not in {row.path for row in back} | {row.name for row in back}]
    for path in missing:
        print(f"{path}: not set aside nor waiting in the ledger of {rse}", file=sys.stderr)
    return 1 if missing or not back else 0


def _audit(args: argparse.Namespace) -> int:
    from rucio_magic_ext.audit.command import Settings, run
    from rucio_magic_ext.scanner.config import load_config

    config = load_config()
    return run(args, Settings(config.rse, config.account, config.replication_policy, config.roots))


def _status(args: argparse.Namespace) -> int:
    import json

    from rucio_magic_ext import census, status
    from rucio_magic_ext.common import utcnow
    from rucio_magic_ext.ledger import Ledger

    ledger = Ledger.from_url(args.ledger_url) if args.ledger_url else Ledger.from_config()
    if not ledger.exists():
        empty = census.Census(taken_at=utcnow())
        if args.rse and not args.ledger_only:
            empty.credentials = census.outlooks([args.rse])
        if args.json:
            print(json.dumps(status.as_json(empty), indent=2))
            return 0
        print(f"MAGIC flow at {empty.taken_at:%Y-%m-%d %H:%M:%S} UTC\n\nno ledger yet: rucio-magic-scanner and "
              "rucio-magic-carrier make it when they first start; nothing has been seen")  # fmt: skip
        print("\n".join(status.credential_lines(empty)))
        return 0
    taken = census.take(ledger, args.rse, rucio=not args.ledger_only)
    print(json.dumps(status.as_json(taken), indent=2) if args.json else status.render(taken, _timing()))
    return 0


def _timing() -> Any:
    """The settings that say until when a file waits; None where rucio.cfg does not hold them."""
    from rucio_magic_ext.release.config import load_config as carrier_config
    from rucio_magic_ext.scanner.config import load_config as scanner_config
    from rucio_magic_ext.settings import ConfigError
    from rucio_magic_ext.status import Timing

    try:
        scanner, carrier = scanner_config(), carrier_config()
    except ConfigError:
        return None
    return Timing(scanner.settle, scanner.carrier.max_age, scanner.carrier.max_files, carrier.dwell)


def _add_bootstrap(subparsers: Subparsers) -> None:
    boot = subparsers.add_parser(
        "bootstrap",
        help="create the site's RSEs, accounts and scopes (idempotent)",
        description="Runs server-side: needs RUCIO_CONFIG with a [database] section.",
    )
    boot.add_argument(
        "--site",
        action="append",
        help="site description; repeat to add files that extend or override it, later ones winning, e.g. "
        "--site site.cfg --site site-local.cfg (default: etc/site.cfg; rucio-magic examples DIR writes one)",
    )
    boot.add_argument(
        "--define",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an entry of the site's [vars] section, e.g. storage_root=/data",
    )
    boot.set_defaults(handler=_bootstrap)


def _add_examples(subparsers: Subparsers) -> None:
    examples = subparsers.add_parser(
        "examples",
        help="write the example files (rucio.cfg, alembic.ini, site.cfg, replication policy, Grafana dashboard)",
        description="Writes the files shipped with the package into DIR for editing; a file already there is kept. "
        "rucio.cfg is complete for one host: Rucio's REST server, its daemons and the project's.",
    )
    examples.add_argument("directory", type=Path, metavar="DIR")
    examples.add_argument("--database", default="postgresql+psycopg://rucio:rucio@127.0.0.1/rucio",
                          help="SQLAlchemy URL of Rucio's database (default: %(default)s)")  # fmt: skip
    examples.add_argument("--host", default="127.0.0.1", help="the REST server's host (default: %(default)s)")
    examples.add_argument("--port", type=int, default=8080, help="the REST server's port (default: %(default)s)")
    examples.add_argument("--root-identity", default="ddmlab", help="root's userpass login (default: %(default)s)")
    examples.add_argument("--root-password", default="secret", help="root's password (default: %(default)s)")
    examples.add_argument("--trial", action="store_true", help="a trial night's timing (settle 5 s, carriers "
                          "closed after 30 s, no dwell): deleted at the source within minutes, not hours")  # fmt: skip
    examples.set_defaults(handler=_examples)


def _add_history(subparsers: Subparsers) -> None:
    history = subparsers.add_parser(
        "history",
        help="a file's story from the ledger: every state change, when, and why",
        description="Runs server-side: reads the ledger configured in rucio.cfg.",
    )
    history.add_argument("file", help="the file's path on the source RSE, or its name")
    history.add_argument("--rse", help="the source RSE (default: [magic-scanner] rse)")
    history.set_defaults(handler=_history)


def _add_retry(subparsers: Subparsers) -> None:
    retry = subparsers.add_parser(
        "retry",
        help="put files back into the flow (quarantined, rejected, or waiting on a retry), recorded with who and why",
        description="Runs server-side: changes the ledger configured in rucio.cfg. A QUARANTINED or REJECTED file "
        "goes back to SEEN and is looked at afresh; a file waiting on a retry is tried at the next cycle.",
    )
    retry.add_argument("paths", nargs="*", metavar="PATH", help="a file's path on the source RSE, or its name")
    retry.add_argument("--state", choices=["QUARANTINED", "REJECTED", "SEEN", "STABLE", "CHECKSUMMED"],
                       help="every file in this state (with --night, of that night only)")  # fmt: skip
    retry.add_argument("--night", help="the night, YYYY-MM-DD")
    retry.add_argument("--why", required=True, help="the reason, kept in each file's history")
    retry.add_argument("--who", help="who decides (default: the login name)")
    retry.add_argument("--rse", help="the source RSE (default: [magic-scanner] rse)")
    retry.set_defaults(handler=_retry)


def _add_status(subparsers: Subparsers) -> None:
    state = subparsers.add_parser(
        "status",
        help="where the flow stands: files per state and night, data at risk, carriers, rules, recent errors",
        description="Runs server-side: reads the ledger and Rucio's database configured in rucio.cfg.",
    )
    state.add_argument("--rse", help="one source RSE only (default: all the ledger knows)")
    state.add_argument("--json", action="store_true", help="print JSON, for scripts")
    state.add_argument("--ledger-only", action="store_true", help="skip Rucio's rules and replicas")
    state.add_argument("--ledger-url", help="read this ledger database instead of the configured one")
    state.set_defaults(handler=_status)


def _add_audit(subparsers: Subparsers) -> None:
    """``audit``: its handler reads the scanner's settings, which the audit's room may not import."""
    from rucio_magic_ext.audit.command import add_parser

    add_parser(subparsers, _audit)


def _from(module: str) -> Callable[[Subparsers], None]:
    """The registrar of a subcommand whose room has its own ``add_parser``, imported when the parser is built."""

    def add(subparsers: Subparsers) -> None:
        importlib.import_module(module).add_parser(subparsers)

    return add


#: Every subcommand, as the function that adds its parser and sets its handler, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_bootstrap,
    _add_examples,
    _add_history,
    _add_retry,
    _from("rucio_magic_ext.report.command"),
    _add_audit,
    _from("rucio_magic_ext.dl3.command"),
    _add_status,
    _from("rucio_magic_ext.retire.command"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rucio-magic", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
