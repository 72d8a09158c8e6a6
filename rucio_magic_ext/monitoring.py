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
