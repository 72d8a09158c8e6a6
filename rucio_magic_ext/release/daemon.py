"""``rucio-magic-carrier``: the source-deletion hook as a Rucio daemon (``hook.py`` says what it checks)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rucio_magic_ext import daemons


def _build(args: argparse.Namespace) -> Any:
    from rucio_magic_ext.release.hook import Hook

    return Hook.from_config(dry_run=getattr(args, "dry_run", False))


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=False,
        help="verify and report what would be released, and why, without releasing anything",
    )


SPEC = daemons.DaemonSpec(
    name="magic-carrier",
    description=(
        "Free the observatory disk only once the copies are safe: for each carrier batch, check every file's "
        "policy rules (locks OK, replicas AVAILABLE, no rule STUCK or SUSPENDED); once all are in place, read "
        "each copy back at its storage and compare its size and adler32 with the source's, and only then remove "
        "the carrier's source rule (the reaper deletes the source copies) and its dataset. "
        "A copy that fails is declared bad and transferred again; its source copy is kept. Every decision goes "
        "to the ledger."
    ),
    epilog="Configuration: the [magic-carrier] section of rucio.cfg (see rucio_magic_ext/release/config.py).",
    build=_build,
    cycle=lambda hook: hook.run_cycle(),
    options=_options,
)


def carrier(once: bool = False, sleep_time: int = 60, partition_wait_time: int = 10, dry_run: bool = False) -> None:
    daemons.loop(SPEC, argparse.Namespace(dry_run=dry_run), once, sleep_time, partition_wait_time)


def main(argv: list[str] | None = None) -> None:
    daemons.main(SPEC, sys.argv[1:] if argv is None else argv)
