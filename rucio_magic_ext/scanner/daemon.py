"""``rucio-magic-scanner``: the scanner as a Rucio daemon.

Instances and threads share the work through Rucio's heartbeats: each takes the files whose ledger id,
and the folders and carriers whose name, fall to its worker number, so two scanners never handle the
same file; every ledger move is conditional besides, so a race loses cleanly instead of doubling work.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from rucio_magic_ext import daemons


def build_context(args: argparse.Namespace | None = None, logger: Any = logging.log) -> Any:
    """Settings, ledger, catalogue, storage and policy of this deployment, from rucio.cfg."""
    from rucio_magic_ext.carrier import preflight
    from rucio_magic_ext.ledger import Ledger
    from rucio_magic_ext.replication import load_policy
    from rucio_magic_ext.scanner.catalogue import Catalogue
    from rucio_magic_ext.scanner.config import load_config
    from rucio_magic_ext.scanner.context import Context
    from rucio_magic_ext.storage import credentials, get_storage

    config = load_config()
    ledger = Ledger.from_config()
    ledger.upgrade()
    catalogue = Catalogue(config.rse, config.account, logger)
    # The RSE's read protocol in Rucio (scheme, host, port, prefix) says where its storage is; the storage is
    # confined to the protocol's prefix, so the scanner lists and reads nothing the admin did not put under it.
    root_url = catalogue.storage_root()
    storage = get_storage(root_url, root=root_url, credentials=credentials.for_rse(config.rse))
    root = storage.path_of(root_url).rstrip("/") or "/"
    policy = load_policy(config.replication_policy)
    preflight.check(config.rse, config.account, policy)
    return Context(config, ledger, catalogue, storage, policy, root, logger=logger)


def _cycle(context: Any) -> dict[str, int]:
    from rucio_magic_ext.scanner.cycle import run_cycle

    return run_cycle(context)


SPEC = daemons.DaemonSpec(
    name="magic-scanner",
    description=(
        "Watch the observatory's RSE ([magic-scanner] rse in rucio.cfg) and bring every new MAGIC file into Rucio: "
        "discover it, wait until it is complete, checksum it, register it where it was written with its metadata, "
        "attach it to its run dataset, night and top containers, put the replication policy's rules on them and "
        "pin it at the source in a carrier batch until its copies are verified. Every step is recorded in the "
        "ledger. Several instances share the work through Rucio's heartbeats."
    ),
    epilog="Configuration: the [magic-scanner] section of rucio.cfg (see rucio_magic_ext/scanner/config.py).",
    build=build_context,
    cycle=_cycle,
)


def scanner(once: bool = False, sleep_time: int = 60, partition_wait_time: int = 10) -> None:
    """One scanner loop in this thread (what ``--run-once`` and each of ``--threads`` run)."""
    daemons.loop(SPEC, argparse.Namespace(), once, sleep_time, partition_wait_time)


def main(argv: list[str] | None = None) -> None:
    daemons.main(SPEC, sys.argv[1:] if argv is None else argv)
