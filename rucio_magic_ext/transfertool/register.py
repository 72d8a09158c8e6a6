"""Make the Rucio conveyor daemons know the `magic` transfertool.

Rucio 41 keeps its transfertools in a fixed dict, `rucio.core.transfer.TRANSFERTOOL_CLASSES_BY_NAME`, with no
plugin hook (the poller even falls back to FTS3 for names it does not know). For the preparer, submitter and
poller this module offers an entry point that adds the tool to the dict and then runs the stock daemon script
unchanged: options, signal handling and logging stay Rucio's own.

    rucio-magic-conveyor-submitter --run-once      (same options as rucio-conveyor-submitter)
    python -m rucio_magic_ext.transfertool.register submitter --run-once

In-process (tests, tools): call `register()` before calling the daemons' functions.
"""

from __future__ import annotations

import importlib.metadata
import runpy
import shutil
import sys
from pathlib import Path

#: The stock daemon scripts that consult the transfertool dict.
DAEMONS = {
    "preparer": "rucio-conveyor-preparer",
    "submitter": "rucio-conveyor-submitter",
    "poller": "rucio-conveyor-poller",
}


def register() -> None:
    """Add the magic transfertool to Rucio's transfertools, under its external name `magic`."""
    from rucio.core.transfer import TRANSFERTOOL_CLASSES_BY_NAME

    from rucio_magic_ext.transfertool.tool import MagicCopyTransfertool

    TRANSFERTOOL_CLASSES_BY_NAME.setdefault(MagicCopyTransfertool.external_name, MagicCopyTransfertool)


def stock_script(name: str) -> Path:
    """Where the rucio distribution installed the daemon script `name`."""
    try:
        files = importlib.metadata.distribution("rucio").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == name and file.parent.name == "bin":
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError(f"the rucio daemon script {name} is not installed")


def run_stock_daemon(name: str, argv: list[str] | None = None) -> None:
    """Run a stock Rucio daemon script as its own console script would, with the tool registered."""
    register()
    script = stock_script(name)
    sys.argv = [name, *(sys.argv[1:] if argv is None else argv)]
    runpy.run_path(str(script), run_name="__main__")


def preparer() -> None:
    run_stock_daemon(DAEMONS["preparer"])


def submitter() -> None:
    run_stock_daemon(DAEMONS["submitter"])


def poller() -> None:
    run_stock_daemon(DAEMONS["poller"])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in DAEMONS:
        sys.exit(f"usage: python -m {__spec__.name if __spec__ else __name__} {{{','.join(DAEMONS)}}} [daemon options]")
    run_stock_daemon(DAEMONS[argv[0]], argv[1:])


if __name__ == "__main__":
    main()
