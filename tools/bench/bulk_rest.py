"""The second baseline of the registration benchmark: the best peer pattern, bulk REST calls as Rubin registers.

    RUCIO_CONFIG=<stack>/rucio.cfg python tools/bench/bulk_rest.py ROOT PATHS.json

The same work as the scanner's registration, through the Rucio python client and the stack's REST server,
each step one call for the whole batch (as Rubin's ``rucio-register`` does for replicas and attachments):
every file's adler32 (read here), ``add_replicas`` of all files with their PFNs, ``set_dids_metadata_bulk``
with the scanner's metadata of each file, the missing run datasets and night containers made by one
``add_dids`` (the top containers looked up first: they outlive nights), ``attach_dids_to_dids`` of
file < run dataset < night container < top container in one call, and the policy's rules on the run
datasets: one ``add_replication_rule`` call per policy entry, one rule per dataset. No carrier: nothing holds
the source copies, so it does less than the scanner. Prints files, seconds and REST calls as JSON.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from tools.bench.prototype import RSE, adler32

CALL_CHUNK = 1000  # files per call: the most the REST server takes (its schemas' maxItems)


@dataclass(frozen=True)
class Placed:
    """A file as the scanner would place it: DID, PFN path, collections and metadata."""

    scope: str
    name: str
    path: str
    dataset: str
    containers: tuple[str, ...]  # innermost first
    metadata: dict[str, Any]
    rules: tuple[Any, ...]  # the policy's entries (RuleSpec) the file needs


def place(path: str, policy: Any) -> Placed:
    """Where the scanner puts the file at ``path``, and the metadata and rules it gives it."""
    from rucio_magic_ext import layout
    from rucio_magic_ext.metadata import file_metadata
    from rucio_magic_ext.naming import parse

    name = path.rsplit("/", 1)[-1]
    record = parse(name)
    folder = layout.observatory_folder("/" + path)
    night: date | None = folder.night if folder else None
    placed = layout.placement(record, night)
    rules = tuple(policy.rules_for(record.level, record.telescope))
    return Placed(placed.scope, name, path, placed.dataset, placed.containers, file_metadata(record, night), rules)


def collections(files: Iterable[Placed]) -> tuple[dict[tuple[str, str], str], set[tuple[str, str]]]:
    """(scope, name) -> DATASET or CONTAINER of every collection the files need, and which are top containers."""
    kinds: dict[tuple[str, str], str] = {}
    tops: set[tuple[str, str]] = set()
    for file in files:
        kinds[(file.scope, file.dataset)] = "DATASET"
        for container in file.containers:
            kinds[(file.scope, container)] = "CONTAINER"
        if file.containers:
            tops.add((file.scope, file.containers[-1]))
    return kinds, tops


def attachments(files: Iterable[Placed]) -> list[dict[str, Any]]:
    """file < run dataset < night container < top container, each parent once with all its children."""
    children: dict[tuple[str, str], dict[tuple[str, str], None]] = {}
    for file in files:
        chain = [file.name, file.dataset, *file.containers]
        for child, parent in zip(chain, chain[1:]):
            children.setdefault((file.scope, parent), {})[(file.scope, child)] = None
    return [
        {"scope": scope, "name": name, "dids": [{"scope": s, "name": n} for s, n in kids]}
        for (scope, name), kids in children.items()
    ]


def rule_calls(files: Iterable[Placed]) -> list[tuple[Any, list[dict[str, str]]]]:
    """(policy entry, its run datasets): one rule-creation call each, one rule per dataset."""
    wanted: dict[str, tuple[Any, dict[tuple[str, str], None]]] = {}
    for file in files:
        for spec in file.rules:
            wanted.setdefault(spec.name, (spec, {}))[1][(file.scope, file.dataset)] = None
    return [(spec, [{"scope": s, "name": n} for s, n in dids]) for spec, dids in wanted.values()]


class BulkRest:
    """Rubin's pattern: every step one REST call over the whole batch."""

    def __init__(self, client: Any, root: Path, policy: Any) -> None:
        from rucio.rse import rsemanager

        self.client = client
        self.root = root
        self.policy = policy
        self.rse_info = rsemanager.get_rse_info(RSE)
        self.calls = 1  # the login
        self.steps: dict[str, float] = {}  # seconds per step, for a look at where the time goes

    def register(self, paths: Sequence[str]) -> None:
        from rucio.rse import rsemanager

        clock = time.perf_counter()
        files = [place(path, self.policy) for path in paths]
        lfns = [{"scope": f.scope, "name": f.name, "path": f.path} for f in files]
        pfns = rsemanager.lfns2pfns(self.rse_info, lfns)
        replicas = []
        for file in files:
            local = self.root / file.path
            replica = {"scope": file.scope, "name": file.name, "bytes": local.stat().st_size, "adler32": adler32(local)}
            replicas.append({**replica, "pfn": pfns[f"{file.scope}:{file.name}"]})
        clock = self._step("checksums", clock)
        for chunk in _chunks(replicas):
            self.call(self.client.add_replicas, RSE, chunk)
        clock = self._step("add_replicas", clock)
        metadata = [{"scope": f.scope, "name": f.name, "meta": f.metadata} for f in files]
        for chunk in _chunks(metadata):
            self.call(self.client.set_dids_metadata_bulk, chunk)
        clock = self._step("set_dids_metadata_bulk", clock)
        self.ensure_collections(files)
        clock = self._step("add_dids", clock)
        for chunk in _chunks(attachments(files)):
            self.call(self.client.attach_dids_to_dids, chunk, True)
        clock = self._step("attach_dids_to_dids", clock)
        self.add_rules(files)
        self._step("add_replication_rule", clock)

    def _step(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.steps[name] = now - since
        return now

    def add_rules(self, files: Sequence[Placed]) -> None:
        """The policy's rules on the run datasets: one call per policy entry (and per thousand datasets)."""
        for spec, all_dids in rule_calls(files):
            for dids in _chunks(all_dids):
                self._add_rule(spec, dids)

    def _add_rule(self, spec: Any, dids: list[dict[str, str]]) -> None:
        """One rule per dataset of ``dids``, in one call."""
        self.call(
            self.client.add_replication_rule,
            dids,
            spec.copies,
            spec.rse_expression,
            lifetime=spec.lifetime,
            grouping=spec.grouping,
            source_replica_expression=spec.source,
            activity=spec.activity,
            comment=spec.rule_comment,
        )

    def ensure_collections(self, files: Sequence[Placed]) -> None:
        """The top containers looked up one by one (a few, made by earlier nights), the rest made in one call."""
        from rucio.common.exception import DataIdentifierAlreadyExists, DataIdentifierNotFound

        kinds, tops = collections(files)
        missing = [did for did in kinds if did not in tops]
        for did in sorted(tops):
            try:
                self.call(self.client.get_did, *did)
            except DataIdentifierNotFound:
                missing.append(did)
        wanted = [{"scope": s, "name": n, "type": kinds[(s, n)]} for s, n in missing]
        for chunk in _chunks(wanted):
            try:
                self.call(self.client.add_dids, chunk)
            except DataIdentifierAlreadyExists:  # a run cut short: one by one, those there kept
                for did in chunk:
                    with contextlib.suppress(DataIdentifierAlreadyExists):
                        self.call(self.client.add_dids, [did])

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return function(*args, **kwargs)


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), CALL_CHUNK):
        yield items[start : start + CALL_CHUNK]


def main(argv: list[str] | None = None) -> int:
    root, paths_file = (argv if argv is not None else sys.argv[1:])[:2]
    paths = json.loads(Path(paths_file).read_text())
    from rucio.client import Client

    from rucio_magic_ext.replication import load_policy
    from rucio_magic_ext.scanner.config import load_config

    client = Client()
    client.whoami()  # logged in before the clock starts, as a running service would be
    runner = BulkRest(client, Path(root), load_policy(load_config().replication_policy))
    started = time.perf_counter()
    runner.register(paths)
    seconds = time.perf_counter() - started
    print(json.dumps({"files": len(paths), "seconds": seconds, "rest_calls": runner.calls, "steps": runner.steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
