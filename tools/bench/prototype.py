"""The baseline of the registration benchmark: PIC's 2020 prototype, one REST call per file per step.

    RUCIO_CONFIG=<stack>/rucio.cfg python tools/bench/prototype.py ROOT PATHS.json

For each file, through the Rucio python client and the stack's REST server, as the prototype did: its
adler32 (read here), a look for the file in Rucio (``get_did``), ``add_replicas`` for this one file with its
PFN, ``set_metadata`` key by key (run_number, datatype, telescope, night), and ``attach_dids`` to its run
dataset, the dataset made first when this is its first file. No rule, no container: the prototype left
those to a person. Prints files, seconds and REST calls as JSON.
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

RSE = "ORM-ONSITE"
METADATA_KEYS = ("run_number", "datatype", "telescope", "night")


def adler32(path: Path) -> str:
    value = 1
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            value = zlib.adler32(block, value)
    return f"{value:08x}"


class Prototype:
    """The 2020 loop: every step of every file is its own call to the server."""

    def __init__(self, client: Any, root: Path) -> None:
        from rucio.rse import rsemanager

        self.client = client
        self.root = root
        self.rse_info = rsemanager.get_rse_info(RSE)
        self.datasets: set[tuple[str, str]] = set()
        self.calls = 1

    def pfn(self, scope: str, name: str, path: str) -> str:
        from rucio.rse import rsemanager

        (pfn,) = rsemanager.lfns2pfns(self.rse_info, [{"scope": scope, "name": name, "path": path}]).values()
        return pfn

    def register(self, path: str) -> None:
        from rucio.common.exception import DataIdentifierNotFound

        from rucio_magic_ext import layout
        from rucio_magic_ext.metadata import file_metadata
        from rucio_magic_ext.naming import parse

        name = path.rsplit("/", 1)[-1]
        record = parse(name)
        folder = layout.observatory_folder("/" + path)
        night = folder.night if folder else None
        placed = layout.placement(record, night)
        scope = placed.scope
        local = self.root / path
        size, checksum = local.stat().st_size, adler32(local)
        try:
            self.call(self.client.get_did, scope, name)
            return  # already known: the prototype skipped it
        except DataIdentifierNotFound:
            pass
        replica = {"scope": scope, "name": name, "bytes": size, "adler32": checksum, "pfn": self.pfn(scope, name, path)}
        self.call(self.client.add_replicas, RSE, [replica])
        metadata = file_metadata(record, night)
        for key in METADATA_KEYS:
            if key in metadata:
                self.call(self.client.set_metadata, scope, name, key, metadata[key])
        self.ensure_dataset(scope, placed.dataset)
        self.call(self.client.attach_dids, scope, placed.dataset, [{"scope": scope, "name": name}])

    def ensure_dataset(self, scope: str, dataset: str) -> None:
        from rucio.common.exception import DataIdentifierNotFound

        if (scope, dataset) in self.datasets:
            return
        try:
            self.call(self.client.get_did, scope, dataset)
        except DataIdentifierNotFound:
            self.call(self.client.add_dataset, scope, dataset)
        self.datasets.add((scope, dataset))

    def call(self, function: Any, *args: Any) -> Any:
        self.calls += 1
        return function(*args)


def main(argv: list[str] | None = None) -> int:
    root, paths_file = (argv if argv is not None else sys.argv[1:])[:2]
    paths = json.loads(Path(paths_file).read_text())
    from rucio.client import Client

    client = Client()
    client.whoami()  # log in before the clock starts, as a running prototype would be
    prototype = Prototype(client, Path(root))
    started = time.perf_counter()
    for path in paths:
        prototype.register(path)
    seconds = time.perf_counter() - started
    print(json.dumps({"files": len(paths), "seconds": seconds, "rest_calls": prototype.calls}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
