"""Every metric the project emits, named in one place (Rucio's MetricManager: Prometheus or statsd).

Names follow Rucio's convention: ``{label}`` parts of a name become Prometheus labels, and statsd
paths with the values filled in. With the prefix, ``flow.files.{rse}.{state}`` is the Prometheus
counter ``magic_flow_files_total{rse=..., state=...}`` and the statsd counter
``magic.flow.files.ORM-ONSITE.REGISTERED``.

Counters and the histogram are emitted where things happen (every committed ledger move, every
stage); the gauges are a census of the ledger and of Rucio, taken by the scanner every
``census_seconds``, so they are right even after a restart.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from rucio.core.monitor import MetricManager

PREFIX = "magic"
METRICS = MetricManager(prefix=PREFIX)


@dataclass(frozen=True)
class Metric:
    name: str  # Rucio-style, with ``{label}`` parts
    kind: str  # counter, gauge or histogram
    documentation: str

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(field for _, field, _, _ in string.Formatter().parse(self.name) if field)

    @property
    def prometheus(self) -> str:
        """The Prometheus name, derived as Rucio's MetricManager derives it (without ``_total``)."""
        parts = string.Formatter().parse(f"{PREFIX}.{self.name}")
        return "".join(literal.rstrip(".").replace(".", "_") for literal, *_ in parts)

    @property
    def series(self) -> tuple[str, ...]:
        """The names a scrape shows."""
        if self.kind == "counter":
            return (f"{self.prometheus}_total",)
        if self.kind == "histogram":
            return tuple(f"{self.prometheus}_{suffix}" for suffix in ("bucket", "sum", "count"))
        return (self.prometheus,)


def _define(name: str, kind: str, documentation: str) -> Metric:
    metric = Metric(name, kind, documentation)
    DEFINED.append(metric)
    return metric


DEFINED: list[Metric] = []

# -- the flow: every committed ledger move (ledger/store.py) -----------------------------------------------
FLOW_FILES = _define("flow.files.{rse}.{state}", "counter", "files that entered a state (SEEN ... DELETED)")
FLOW_BYTES = _define("flow.bytes.{rse}.{state}", "counter", "bytes of the files that entered a state")
FLOW_FAILURES = _define("flow.failures.{actor}", "counter", "files a stage failed on and will retry")
SEEN_TO_VERIFIED = _define(
    "flow.seen_to_verified.{rse}", "histogram", "seconds from a file's appearance to its verified replication"
)
SEEN_TO_VERIFIED_BUCKETS = (60, 300, 900, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)

# -- the scanner's stages (scanner/cycle.py) ---------------------------------------------------------------
STAGE_FILES = _define("scanner.files.{stage}", "counter", "files (nights, for the nights stage) a stage moved on")
STAGE_ERRORS = _define("scanner.errors.{stage}", "counter", "scanner stages that failed as a whole")
STAGE_DURATION = _define("scanner.duration.{stage}", "histogram", "seconds a scanner stage took")
ODD_ENTRIES = _define(
    "scanner.odd.{kind}",
    "counter",
    "entries refused, held or failing one by one, per kind (not_utf8, name_too_long, name_characters, not_regular, "
    "symlink, future_mtime, unreadable, vanished, folder_unreadable, folder_missing)",
)
OUTAGES = _define(
    "scanner.outages.{service}", "counter", "cycles stopped because a whole service did not answer (storage, database)"
)

# -- guarded storage (storage/credentials.py, census.py) ----------------------------------------------------
OUTAGE_SECONDS = _define(
    "source.outage_seconds.{rse}.{service}",
    "gauge",
    "seconds a service of a source RSE (its storage, credentials) has not answered the scanner; 0 once it answers",
)
STORAGE_REFUSED = _define(
    "storage.refused.{rse}.{mechanism}",
    "counter",
    "operations a storage refused this process (no credential found, an expired one, one without the right, a TLS "
    "peer not trusted): the work waits, no file is marked",
)
CREDENTIAL_LEFT = _define(
    "credentials.seconds_left.{rse}.{mechanism}",
    "gauge",
    "seconds the credential presented to an RSE's storage has left (0 when none is found or it has ended; absent for "
    "an open storage and for a token that tells no end)",
)

# -- the source-deletion hook (release/hook.py) ------------------------------------------------------------
CARRIERS_RELEASED = _define("carrier.released", "counter", "carriers whose source rule was removed")
FILES_RELEASED = _define("carrier.files_released", "counter", "files released for deletion at the source")
CARRIER_HELD = _define("carrier.held", "counter", "carrier checks that found a copy not yet safe")
CARRIER_ERRORS = _define("carrier.errors", "counter", "carrier checks that failed")
VERIFICATION_FAILURES = _define(
    "carrier.verification_failures", "counter", "destination copies whose bytes differed from the source"
)
COPIES_UNREADABLE = _define(
    "carrier.copies_unreadable", "counter", "destination copies that could not be read back: held, not declared bad"
)
SOURCE_RULE_LOST = _define(
    "carrier.source_rule_lost", "counter", "carriers found without their source rule: source copies unprotected"
)
SOURCE_CHANGED = _define(
    "carrier.source_changed.{kind}",
    "counter",
    "source files found, just before release, with other bytes than registered (changed) or none (gone): held for a "
    "person, never deleted",
)

# -- the census (census.py): gauges ------------------------------------------------------------------------
SOURCE_FILES = _define("source.files.{rse}.{state}", "gauge", "files of a source RSE per ledger state")
SOURCE_BYTES = _define("source.bytes.{rse}.{state}", "gauge", "bytes of a source RSE per ledger state")
HELD_FILES = _define(
    "source.held.{rse}", "gauge", "files of a source RSE waiting on a retry after an error (not yet set aside)"
)
FOLDERS_FAILING = _define("source.folders_failing.{rse}", "gauge", "folders of a source RSE whose listing failed")
RISK_FILES = _define("risk.files.{rse}", "gauge", "files that exist only at the source")
RISK_BYTES = _define("risk.bytes.{rse}", "gauge", "bytes that exist only at the source")
RISK_OLDEST = _define("risk.oldest_seconds.{rse}", "gauge", "age of the oldest file not yet safe off-site")
CARRIERS = _define("carriers.{rse}.{state}", "gauge", "carrier batches per state (GONE ones not counted)")
RULES = _define("rules.{kind}.{state}", "gauge", "Rucio rules on MAGIC DIDs per DID type and state")
LOCKS = _define("locks.{state}", "gauge", "files under the policy's rules per lock state (OK, REPLICATING, STUCK)")
REPLICAS_FILES = _define("replicas.files.{rse}", "gauge", "available replicas of MAGIC files per RSE")
REPLICAS_BYTES = _define("replicas.bytes.{rse}", "gauge", "bytes of available replicas of MAGIC files per RSE")
AUDIT_FILES = _define(
    "audit.files.{rse}.{class}",
    "gauge",
    "what the last audit of a source RSE found per class (dark, lost, ledger-only, size, orphan-carrier, "
    "empty-collection, unexplained-rule, missing-rule, foreign-rule, foreign-collection, shared-path, new): counted "
    "from listings and records, no file's data read",
)
AUDIT_TAKEN = _define("audit.taken_seconds.{rse}", "gauge", "seconds since the last audit of a source RSE was taken")


def _counter(metric: Metric, amount: float, **labels: str) -> None:
    if amount:
        METRICS.counter(metric.name, documentation=metric.documentation).labels(**labels).inc(amount)


def _gauge(metric: Metric, value: float, **labels: str) -> None:
    METRICS.gauge(metric.name, documentation=metric.documentation).labels(**labels).set(value)


def flow_moved(rse: str, state: str, files: int, size: int) -> None:
    _counter(FLOW_FILES, files, rse=rse, state=state)
    _counter(FLOW_BYTES, size, rse=rse, state=state)


def flow_failed(actor: str, files: int) -> None:
    _counter(FLOW_FAILURES, files, actor=actor)


def seen_to_verified(rse: str, seconds: Iterable[float]) -> None:
    timer = METRICS.timer(
        SEEN_TO_VERIFIED.name, documentation=SEEN_TO_VERIFIED.documentation, buckets=SEEN_TO_VERIFIED_BUCKETS
    ).labels(rse=rse)
    for value in seconds:
        timer.observe(value)


def stage_files(stage: str, count: int) -> None:
    _counter(STAGE_FILES, count, stage=stage)


def stage_error(stage: str) -> None:
    _counter(STAGE_ERRORS, 1, stage=stage)


def odd_entry(kind: str, count: int = 1) -> None:
    _counter(ODD_ENTRIES, count, kind=kind)


def storage_refused(rse: str, mechanism: str) -> None:
    _counter(STORAGE_REFUSED, 1, rse=rse, mechanism=mechanism)


def outage(service: str) -> None:
    _counter(OUTAGES, 1, service=service)


def stage_timer(stage: str) -> Any:
    """A context manager timing the stage."""
    return METRICS.timer(STAGE_DURATION.name, documentation=STAGE_DURATION.documentation).labels(stage=stage)


def carrier_released(files: int) -> None:
    _counter(CARRIERS_RELEASED, 1)
    _counter(FILES_RELEASED, files)


def carrier_held() -> None:
    _counter(CARRIER_HELD, 1)


def carrier_error() -> None:
    _counter(CARRIER_ERRORS, 1)


def copy_unreadable() -> None:
    _counter(COPIES_UNREADABLE, 1)


def carrier_source_rule_lost() -> None:
    _counter(SOURCE_RULE_LOST, 1)


def verification_failure() -> None:
    _counter(VERIFICATION_FAILURES, 1)


def carrier_source_changed(kind: str) -> None:
    _counter(SOURCE_CHANGED, 1, kind=kind)


_PUBLISHED: dict[str, set[tuple[str, ...]]] = {}
#: A gauge's label values: a tuple of any fixed length (Mapping's keys are invariant, so one type per call).
_Labels = TypeVar("_Labels", bound=tuple[str, ...])


def gauges(metric: Metric, values: Mapping[_Labels, float]) -> None:
    """Set a gauge for every label combination, in the order of ``metric.labels``; a combination published
    before and absent now drops to 0, so that a state emptied out does not keep its last count."""
    published = _PUBLISHED.setdefault(metric.name, set())
    for key in published - set(values):
        _gauge(metric, 0, **dict(zip(metric.labels, key)))
    for key, value in values.items():
        _gauge(metric, value, **dict(zip(metric.labels, key)))
    published.update(values)
