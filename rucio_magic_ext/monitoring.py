"""Every metric the project emits, named in one place (Rucio's MetricManager: Prometheus or statsd).

Names follow Rucio's convention: ``{label}`` parts of a name become Prometheus labels, and statsd
paths with the values filled in.
"""

from __future__ import annotations

from rucio.core.monitor import MetricManager

METRICS = MetricManager(prefix="magic")

# Files that a stage moved on, and that it set aside or failed, per stage (discover, settle, ...).
STAGE_FILES = "scanner.files.{stage}"
STAGE_ERRORS = "scanner.errors.{stage}"
STAGE_DURATION = "scanner.duration.{stage}"


def stage_files(stage: str, count: int) -> None:
    if count:
        METRICS.counter(STAGE_FILES).labels(stage=stage).inc(count)


def stage_error(stage: str) -> None:
    METRICS.counter(STAGE_ERRORS).labels(stage=stage).inc()


def stage_timer(stage: str):  # type: ignore[no-untyped-def]
    return METRICS.timer(STAGE_DURATION).labels(stage=stage)


# The source-deletion hook.
CARRIERS_RELEASED = "carrier.released"
FILES_RELEASED = "carrier.files_released"
CARRIER_HELD = "carrier.held"
CARRIER_ERRORS = "carrier.errors"
VERIFICATION_FAILURES = "carrier.verification_failures"
DELETED_AT_SOURCE = "files.deleted_at_source"
DELETED_AT_SOURCE_BYTES = "bytes.deleted_at_source"


def carrier_released(files: int) -> None:
    METRICS.counter(CARRIERS_RELEASED).inc()
    METRICS.counter(FILES_RELEASED).inc(files)


def carrier_held() -> None:
    METRICS.counter(CARRIER_HELD).inc()


def carrier_error() -> None:
    METRICS.counter(CARRIER_ERRORS).inc()


def verification_failure() -> None:
    METRICS.counter(VERIFICATION_FAILURES).inc()


def deleted_at_source(files: int, size: int) -> None:
    if files:
        METRICS.counter(DELETED_AT_SOURCE).inc(files)
        METRICS.counter(DELETED_AT_SOURCE_BYTES).inc(size)
